"""Burst: what 1,000 endpoint events cost (syncs, POSTs to Lua, reloads), through real nginx.

    MemorySource --1,000 EndpointSlice MODIFIED--> Store -> updateChannel -> NginxController
        -> syncQueue -> sync worker -> POST /configuration/backends -> nginx -> EchoPods

Two shapes of burst: all events at once (a rollout seen after a watch reconnect) and paced at
``--rate`` events/s (a rollout as it happens).  The final endpoint set is checked by sending
requests through nginx and seeing exactly the expected pods answer.

    python -m benchmarks.burst [--events 1000] [--pods 10] [--rate 1000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ingressd.app.runtime import Ingressd, Options
from ingressd.logs import configure
from ingressd.store.sources.memory import MemorySource
from tests.support.backends import EchoPods
from tests.support.objects import (
    endpoint,
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    service_port,
)


@dataclass
class BurstResult:
    shape: str
    events: int
    syncs: int
    dynamic_posts: int
    reloads: int
    skipped_tasks: int
    seconds_to_applied: float
    final_set_served: bool


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _slice(addresses: list[str], port: int, ready_mask: int, version: int) -> dict[str, Any]:
    obj = endpoint_slice(
        "web",
        endpoints=[
            endpoint(a, ready=bool(ready_mask >> i & 1) or i == 0) for i, a in enumerate(addresses)
        ],
        port=port,
        port_name="http",
    )
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


async def _served(http_port: int, requests: int) -> set[str]:
    seen: set[str] = set()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(requests):
            async with s.get(
                f"http://127.0.0.1:{http_port}/", headers={"Host": "web.test"}
            ) as resp:
                if resp.status == 200:
                    seen.add(resp.headers["X-Pod"])
    return seen


async def run_burst(*, events: int, pods: int, rate: float | None, root: Path) -> BurstResult:
    addresses = [f"127.0.200.{i + 1}" for i in range(pods)]
    pod_port = _free_port()
    echo = EchoPods({a: f"web-{i}" for i, a in enumerate(addresses)}, pod_port)
    await echo.start()
    source = MemorySource(
        [
            service("web", ports=[service_port(80, "http", target_port=pod_port)]),
            _slice(addresses, pod_port, (1 << pods) - 1, 1),
            ingress("web", rules=[rule("web.test", path("/", "web"))]),
        ]
    )
    options = Options(
        work_dir=root / f"work-{rate}",
        http_port=_free_port(),
        https_port=_free_port(),
        status_port=_free_port(),
        status_address="127.0.0.1",
        worker_processes="2",
        allow_loopback_endpoints=True,  # the pods are on 127.0.200.x
    )
    controller = Ingressd(options, source=source)
    await controller.start()
    try:
        await controller.wait_until_synced()
        await asyncio.sleep(0.3)
        syncs0 = controller.queue.syncs
        posts0 = controller.metrics.value("ingressd_dynamic_updates_total", {"result": "success"})
        reloads0 = controller.metrics.value("nginx_ingress_controller_success")
        skipped0 = controller.queue.skipped
        t0 = time.monotonic()
        mask = 0
        for i in range(events):
            mask = (i * 2654435761) % (1 << pods)  # a different ready set each time
            source.modify(_slice(addresses, pod_port, mask, i + 2))
            if rate:
                await asyncio.sleep(1 / rate)
        # Applied = the worker is idle and nothing is queued.
        while controller.channel.qsize() or not controller.queue.idle or controller.worker.busy:
            await asyncio.sleep(0.001)
        elapsed = time.monotonic() - t0
        expected = {f"web-{i}" for i in range(pods) if mask >> i & 1 or i == 0}
        served = await _served(options.http_port, 20 * pods)
        return BurstResult(
            shape=f"paced at {rate:.0f}/s" if rate else "all at once",
            events=events,
            syncs=controller.queue.syncs - syncs0,
            dynamic_posts=int(
                controller.metrics.value("ingressd_dynamic_updates_total", {"result": "success"})
                - posts0
            ),
            reloads=int(controller.metrics.value("nginx_ingress_controller_success") - reloads0),
            skipped_tasks=controller.queue.skipped - skipped0,
            seconds_to_applied=round(elapsed, 3),
            final_set_served=served == expected,
        )
    finally:
        await controller.stop()
        await echo.stop()


async def main_async(args: argparse.Namespace) -> list[BurstResult]:
    root = Path(tempfile.mkdtemp(prefix="ingressd-bench-", dir="/tmp"))
    os.chmod(root, 0o755)
    try:
        results = [
            await run_burst(events=args.events, pods=args.pods, rate=None, root=root),
            await run_burst(events=args.events, pods=args.pods, rate=args.rate, root=root),
        ]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure(level="warning")
    results = asyncio.run(main_async(args))
    machine = f"{platform.node()} {platform.machine()} {os.cpu_count()} cores"
    print(f"burst of {args.events} endpoint events, {args.pods} pods, on {machine}")
    for r in results:
        print(
            f"  {r.shape:>16}: {r.syncs} syncs, {r.dynamic_posts} POSTs, {r.reloads} reloads, "
            f"{r.skipped_tasks} tasks coalesced, applied {r.seconds_to_applied}s after the "
            f"first event, final set served: {r.final_set_served}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
