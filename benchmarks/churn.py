"""Endpoint churn and lost requests: dynamic updates against ``--reload-always``, real nginx.

    MemorySource --EndpointSlice MODIFIED at --rate/s--> Store -> ... -> sync worker
        dynamic mode:  POST /configuration/backends (no reload)
        reload-always: full reload per sync (the way controllers without a dynamic path work)
    probes: for every --probe-every-th change, requests to that Service's host until nginx
            answers from the new pod: event-to-served latency as a client sees it
    wrk:    constant load on one churned host during the churn, then during 20 reloads forced
            by Ingress changes: non-2xx answers and socket errors (target 0), p99 vs quiet p99

The pods are one plain nginx listening on every loopback address (``listen PORT``), answering
with the address it was reached at, so a probe knows which endpoint served it.

    python -m benchmarks.churn [--services 1000] [--endpoints 10] [--changes 10000]
                               [--rate 1000] [--probe-every 100] [--reloads 20]
                               [--modes both|dynamic|reload-always]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import PodNginx, WrkResult, free_port, machine, run_wrk, temp_root
from ingressd.app.runtime import DEFAULT_MIN_SYNC_INTERVAL, Ingressd, Options
from ingressd.logs import configure
from ingressd.store.sources.memory import MemorySource
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port


def address(service_index: int, generation: int) -> str:
    return f"127.{10 + service_index // 250}.{service_index % 250}.{generation % 250 + 1}"


@dataclass
class ChurnResult:
    mode: str
    services: int
    endpoints_per_service: int
    changes: int
    rate: float
    seconds: float
    reloads: int
    dynamic_posts: int
    syncs: int
    probes: int
    probes_timed_out: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    wrk_quiet: WrkResult | None = None
    wrk_churn: WrkResult | None = None
    wrk_reloads: WrkResult | None = None
    forced_reloads: int = 0
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def _slice(i: int, generations: range, port: int, version: int) -> dict[str, Any]:
    obj = endpoint_slice(
        f"svc{i}", endpoints=[address(i, g) for g in generations], port=port, port_name="http"
    )
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


async def _probe(
    session: aiohttp.ClientSession,
    url: str,
    host: str,
    wanted: frozenset[str],
    since: float,
    timeout: float,
    fanout: int,
) -> float | None:
    """Milliseconds from ``since`` until ``host`` is answered by a pod in ``wanted`` (the one
    added, or one added after it: a later change applied implies this one was); None on timeout.

    Each try is ``fanout`` requests at once: the balancer spreads requests over all the
    Service's endpoints (round robin in each nginx worker), so one request at a time would
    measure how long it takes to come round to the new pod, not when nginx started to route
    to it.  ``fanout`` = 2 x endpoints covers every endpoint in at least one worker.
    """
    deadline = since + timeout

    async def one() -> str | None:
        try:
            async with session.get(url, headers={"Host": host}) as resp:
                return (await resp.text()).strip()
        except aiohttp.ClientError:
            return None

    while time.monotonic() < deadline:
        bodies = await asyncio.gather(*(one() for _ in range(fanout)))
        if not wanted.isdisjoint(bodies):
            return (time.monotonic() - since) * 1000
        # The probes share the controller's event loop: spinning here would starve the very
        # sync being measured. 2 ms between tries bounds the error of each figure to ~2 ms.
        await asyncio.sleep(0.002)
    return None


_READ_TIMEOUT = "nginx.ingress.kubernetes.io/proxy-read-timeout"


async def run(
    *,
    reload_always: bool,
    services: int,
    endpoints: int,
    changes: int,
    rate: float,
    probe_every: int,
    forced_reloads: int,
    wrk_seconds: int,
    root: Path,
    min_sync_interval: float = DEFAULT_MIN_SYNC_INTERVAL,
) -> ChurnResult:
    pod_port = free_port()
    pods = PodNginx(
        [address(0, 0)], pod_port, root / ("r" if reload_always else "d"), wildcard=True
    )
    pods.start()
    objects: list[dict[str, Any]] = []
    for i in range(services):
        objects.append(service(f"svc{i}", ports=[service_port(80, "http", target_port=pod_port)]))
        objects.append(_slice(i, range(endpoints), pod_port, 1))
        objects.append(ingress(f"ing{i}", rules=[rule(f"h{i}.test", path("/", f"svc{i}"))]))
    source = MemorySource(objects)
    options = Options(
        work_dir=root / ("work-reload" if reload_always else "work-dynamic"),
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        status_address="127.0.0.1",
        worker_processes="2",
        allow_loopback_endpoints=True,  # the pods are on 127.x addresses
        reload_always=reload_always,
        min_sync_interval=min_sync_interval,
    )
    controller = Ingressd(options, source=source)
    url = f"http://127.0.0.1:{options.http_port}/"
    await controller.start()
    metrics = controller.metrics
    try:
        await controller.wait_until_synced(timeout=120)
        wrk_quiet = await run_wrk(url, host="h0.test", seconds=wrk_seconds)
        reloads0 = metrics.value("nginx_ingress_controller_success")
        posts0 = metrics.value("ingressd_dynamic_updates_total", {"result": "success"})
        syncs0 = controller.queue.syncs
        # Every change made before the clock starts: the loop below sends, it does not build.
        generation = [endpoints] * services  # next generation per service
        planned: list[tuple[int, int, dict[str, Any]]] = []
        for n in range(changes):
            i = n % services
            g = generation[i]
            generation[i] = g + 1
            planned.append((i, g, _slice(i, range(g + 1 - endpoints, g + 1), pod_port, n + 2)))
        # They stand for the API server's side, not the controller's heap: out of the cyclic
        # GC's sight (10,000 slices are ~400,000 objects, a 300 ms full collection otherwise).
        gc.freeze()
        latencies: list[float] = []
        timeouts = 0
        probes: list[asyncio.Task[float | None]] = []
        wrk_task = asyncio.create_task(
            run_wrk(url, host="h0.test", seconds=max(1, round(changes / rate)))
        )
        session = aiohttp.ClientSession()
        start = time.monotonic()
        sent = 0
        while sent < changes:
            due = min(changes, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                i, g, obj = planned[sent]
                source.modify(obj)
                if sent % probe_every == 0:
                    probes.append(
                        asyncio.create_task(
                            _probe(
                                session,
                                url,
                                f"h{i}.test",
                                frozenset(address(i, h) for h in range(g, g + endpoints)),
                                time.monotonic(),
                                10.0,
                                2 * endpoints,
                            )
                        )
                    )
                sent += 1
            await asyncio.sleep(0.001)
        for result in await asyncio.gather(*probes):
            if result is None:
                timeouts += 1
            else:
                latencies.append(result)
        while controller.channel.qsize() or not controller.queue.idle or controller.worker.busy:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - start
        wrk_churn = await wrk_task
        reloads = int(metrics.value("nginx_ingress_controller_success") - reloads0)
        posts = int(metrics.value("ingressd_dynamic_updates_total", {"result": "success"}) - posts0)
        syncs = controller.queue.syncs - syncs0

        # 20 reloads forced by Ingress changes under load: each gives ing1 a read timeout no
        # location had, a settings class nginx.conf lacks, so both routing modes reload.
        wrk_reload_task = asyncio.create_task(
            run_wrk(url, host="h0.test", seconds=max(wrk_seconds, forced_reloads))
        )
        await asyncio.sleep(0.5)
        before = metrics.value("nginx_ingress_controller_success")
        for n in range(forced_reloads):
            source.modify(
                ingress(
                    "ing1",
                    rules=[rule("h1.test", path("/", "svc1"))],
                    annotations={_READ_TIMEOUT: str(100 + n)},
                )
            )
            async with asyncio.timeout(120):
                while metrics.value("nginx_ingress_controller_success") < before + n + 1:
                    await asyncio.sleep(0.01)
        wrk_reloads = await wrk_reload_task
        await session.close()
        latencies.sort()
        return ChurnResult(
            mode="reload-always" if reload_always else "dynamic",
            services=services,
            endpoints_per_service=endpoints,
            changes=changes,
            rate=rate,
            seconds=round(elapsed, 2),
            reloads=reloads,
            dynamic_posts=posts,
            syncs=syncs,
            probes=len(probes),
            probes_timed_out=timeouts,
            latency_p50_ms=round(statistics.median(latencies), 1) if latencies else float("nan"),
            latency_p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
            if latencies
            else float("nan"),
            latency_max_ms=round(latencies[-1], 1) if latencies else float("nan"),
            wrk_quiet=wrk_quiet,
            wrk_churn=wrk_churn,
            wrk_reloads=wrk_reloads,
            forced_reloads=forced_reloads,
            latencies_ms=latencies,
        )
    finally:
        await controller.stop()
        pods.stop()


def describe(r: ChurnResult) -> str:
    lines = [
        f"{r.mode}: {r.changes} endpoint changes at {r.rate:.0f}/s over {r.services} services x "
        f"{r.endpoints_per_service} endpoints, applied in {r.seconds}s",
        f"  reloads {r.reloads}, POSTs to Lua {r.dynamic_posts}, syncs {r.syncs}",
        f"  event-to-served latency ({r.probes} probes, {r.probes_timed_out} timed out): "
        f"p50 {r.latency_p50_ms} ms, p99 {r.latency_p99_ms} ms, max {r.latency_max_ms} ms",
    ]
    for label, w in (
        ("quiet", r.wrk_quiet),
        ("during churn", r.wrk_churn),
        (f"during {r.forced_reloads} reloads", r.wrk_reloads),
    ):
        if w is not None:
            lines.append(
                f"  wrk {label}: {w.requests} requests, {w.requests_per_second:.0f}/s, "
                f"p99 {w.latency_p99_ms:.2f} ms, non-2xx {w.non_2xx}, socket errors "
                f"{w.socket_errors}"
            )
    if r.wrk_quiet and r.wrk_churn and r.wrk_quiet.latency_p99_ms:
        lines.append(
            f"  p99 during churn / quiet p99 = "
            f"{r.wrk_churn.latency_p99_ms / r.wrk_quiet.latency_p99_ms:.2f}"
        )
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[ChurnResult]:
    root = temp_root("ingressd-churn-")
    results = []
    try:
        for reload_always in {"both": (False, True), "dynamic": (False,), "reload-always": (True,)}[
            args.modes
        ]:
            results.append(
                await run(
                    reload_always=reload_always,
                    services=args.services,
                    endpoints=args.endpoints,
                    changes=args.changes,
                    rate=args.rate,
                    probe_every=args.probe_every,
                    forced_reloads=args.reloads,
                    wrk_seconds=args.wrk_seconds,
                    root=root,
                    min_sync_interval=getattr(args, "min_sync_interval", DEFAULT_MIN_SYNC_INTERVAL),
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Endpoint churn: dynamic vs reload-always.")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--probe-every", type=int, default=100)
    parser.add_argument("--reloads", type=int, default=20)
    parser.add_argument("--wrk-seconds", type=int, default=3)
    parser.add_argument("--min-sync-interval", type=float, default=DEFAULT_MIN_SYNC_INTERVAL)
    parser.add_argument("--modes", choices=("both", "dynamic", "reload-always"), default="both")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure(level="warning")
    print(f"machine: {machine()}")
    results = asyncio.run(main_async(args))
    for r in results:
        print(describe(r))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
