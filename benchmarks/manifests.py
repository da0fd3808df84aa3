"""The manifests directory: a file edit to served, and the controller's idle CPU, watching
(inotify) against polling (a walk every 0.2 s, as ``--manifests`` did before).

    manifests dir --ManifestsSource (watch | poll)--> Ingressd --real nginx--> PodNginx pods
    edit:  N Services, one file each (Service, EndpointSlice, Ingress); an edit rewrites one
           file atomically (temp file + rename) with the endpoint moved to a new pod address;
           requests to that host until the new address answers: write to served, p50/p99
    idle:  filler files (Services and slices no Ingress uses) up to --files in all; the
           controller's CPU time over --idle seconds with nothing changing (getrusage of this
           process: every thread of the controller; nginx is a child process, not counted)

Each mode runs its own controller and nginx.  Loopback only, bounded in time.

    python -m benchmarks.manifests [--services 1000] [--files 10000] [--edits 50] [--idle 10]
                                   [--modes both|watch|poll]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.common import PodNginx, free_port, machine, temp_root
from ingressd.app.runtime import Ingressd, Options
from ingressd.logs import configure
from ingressd.store.sources.files import ManifestsSource
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]


@dataclass
class ManifestsResult:
    mode: str
    services: int
    edits: int
    timed_out: int
    latency_p50_ms: float
    latency_p99_ms: float
    latency_max_ms: float
    files: int
    idle_seconds: float
    idle_cpu_seconds: float
    watching: bool
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    @property
    def idle_cpu_percent(self) -> float:
        return 100 * self.idle_cpu_seconds / self.idle_seconds if self.idle_seconds else 0.0


def address(index: int, generation: int) -> str:
    return f"127.{10 + index // 250}.{index % 250}.{generation % 250 + 1}"


def _objects(index: int, generation: int, pod_port: int, *, with_ingress: bool) -> str:
    name = f"svc{index}"
    objects: list[dict[str, Any]] = [
        service(name, ports=[service_port(80, "http", target_port=pod_port)]),
        endpoint_slice(
            name, endpoints=[address(index, generation)], port=pod_port, port_name="http"
        ),
    ]
    if with_ingress:
        objects.append(ingress(f"ing{index}", rules=[rule(f"h{index}.test", path("/", name))]))
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


def _write(directory: Path, name: str, text: str) -> None:
    """As a tool writes: a hidden temporary file, renamed over the old one."""
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, directory / name)


async def _served(
    session: aiohttp.ClientSession, url: str, host: str, wanted: str, since: float, timeout: float
) -> float | None:
    """Milliseconds from ``since`` until ``host`` answers from ``wanted``; None on timeout."""
    deadline = since + timeout
    while time.monotonic() < deadline:
        try:
            async with session.get(url, headers={"Host": host}) as resp:
                if (await resp.text()).strip() == wanted:
                    return (time.monotonic() - since) * 1000
        except aiohttp.ClientError:
            pass
        # The probe shares the controller's event loop: 2 ms between tries bounds the error.
        await asyncio.sleep(0.002)
    return None


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(
    *, watch: bool, services: int, files: int, edits: int, idle: float, root: Path
) -> ManifestsResult:
    mode = "watch" if watch else "poll"
    pod_port = free_port()
    pods = PodNginx([address(0, 0)], pod_port, root / mode, wildcard=True)
    pods.start()
    directory = root / mode / "manifests"
    directory.mkdir(parents=True)
    for i in range(services):
        (directory / f"svc{i}.yaml").write_text(_objects(i, 0, pod_port, with_ingress=True))
    source = ManifestsSource(directory, watch=watch)
    options = Options(
        work_dir=root / mode / "work",
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        status_address="127.0.0.1",
        worker_processes="2",
        allow_loopback_endpoints=True,  # the pods are on 127.x addresses
    )
    controller = Ingressd(options, source=source)
    url = f"http://127.0.0.1:{options.http_port}/"
    rng = random.Random(13)
    await controller.start()
    session = aiohttp.ClientSession()
    try:
        await controller.wait_until_synced(timeout=120)
        await _quiet(controller, source)
        generation = [0] * services
        latencies: list[float] = []
        timed_out = 0
        for _ in range(edits):
            i = rng.randrange(services)
            generation[i] += 1
            text = _objects(i, generation[i], pod_port, with_ingress=True)
            # A pause of random length: edits land anywhere in a poll interval.
            await asyncio.sleep(rng.uniform(0.05, 0.25))
            since = time.monotonic()
            _write(directory, f"svc{i}.yaml", text)
            took = await _served(session, url, f"h{i}.test", address(i, generation[i]), since, 10.0)
            if took is None:
                timed_out += 1
            else:
                latencies.append(took)

        for i in range(services, services + max(0, files - services)):
            (directory / f"svc{i}.yaml").write_text(_objects(i, 0, pod_port, with_ingress=False))
        await _quiet(controller, source)
        # Files read right after they were written are read again at the next heartbeat.
        await asyncio.sleep(2 * source.heartbeat_interval + 0.5)
        cpu0, t0 = _cpu_seconds(), time.monotonic()
        await asyncio.sleep(idle)
        cpu1, t1 = _cpu_seconds(), time.monotonic()
        latencies.sort()
        return ManifestsResult(
            mode=mode,
            services=services,
            edits=edits,
            timed_out=timed_out,
            latency_p50_ms=round(statistics.median(latencies), 1) if latencies else float("nan"),
            latency_p99_ms=round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)
            if latencies
            else float("nan"),
            latency_max_ms=round(latencies[-1], 1) if latencies else float("nan"),
            files=sum(1 for _ in directory.iterdir()),
            idle_seconds=round(t1 - t0, 2),
            idle_cpu_seconds=round(cpu1 - cpu0, 3),
            watching=source.watching,
            latencies_ms=latencies,
        )
    finally:
        await session.close()
        await controller.stop()
        pods.stop()


async def _quiet(controller: Ingressd, source: ManifestsSource) -> None:
    """Until every file has been read and every sync it caused has run."""
    await asyncio.wait_for(source.rescan(), 120)
    deadline = time.monotonic() + 120
    while controller.channel.qsize() or not controller.queue.idle or controller.worker.busy:
        if time.monotonic() > deadline:
            raise TimeoutError("the pipeline did not settle")
        await asyncio.sleep(0.02)


def describe(r: ManifestsResult) -> str:
    how = "inotify (watchfiles)" if r.watching else "polling every 0.2 s"
    return (
        f"{r.mode}: {how}\n"
        f"  file edit to served, {r.services} Services ({r.edits} edits, {r.timed_out} timed "
        f"out): p50 {r.latency_p50_ms} ms, p99 {r.latency_p99_ms} ms, max {r.latency_max_ms} ms\n"
        f"  idle with {r.files} files: {r.idle_cpu_seconds:.3f} s CPU in {r.idle_seconds} s "
        f"({r.idle_cpu_percent:.2f}% of a core)"
    )


async def main_async(args: argparse.Namespace) -> list[ManifestsResult]:
    root = temp_root("ingressd-manifests-")
    results = []
    try:
        for watch in {"both": (False, True), "watch": (True,), "poll": (False,)}[args.modes]:
            results.append(
                await run(
                    watch=watch,
                    services=args.services,
                    files=args.files,
                    edits=args.edits,
                    idle=args.idle,
                    root=root,
                )
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description="Manifests directory: edit to served, idle CPU.")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--idle", type=float, default=10.0)
    parser.add_argument("--modes", choices=("both", "watch", "poll"), default="both")
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
