"""Pipeline throughput: events/s through Store -> updateChannel -> NginxController -> syncQueue.

    MemorySource --EndpointSlice MODIFIED (endpoints changed)--> Store.apply
        -> updateChannel -> NginxController -> syncQueue -> sync worker (build + diff, dry run:
           a driver that records what it would POST and serves nothing)

Every event changes a slice's endpoints (so the Store emits each one); the feeder yields to the
event loop every ``--batch`` events, as a watch stream reader would between reads.  Throughput
= events / time until the last event has been through a sync.  Target >= 50,000 events/s.

    python -m benchmarks.pipeline [--services 1000] [--events 100000] [--batch 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import machine
from ingressd.build.building import BuildOptions
from ingressd.logs import configure
from ingressd.model import Backend, BackendName, Configuration
from ingressd.nginx.applying import ReloadOutcome
from ingressd.nginx.rendering import RenderSettings
from ingressd.nginx.routes import RouteTable
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.controller import NginxController
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.queueing import SyncQueue
from ingressd.pipeline.syncing import SyncWorker
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.store import Store
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port


class RecordingDriver:
    """Dry run: counts what would be applied, serves nothing."""

    def __init__(self) -> None:
        self.dynamic = 0
        self.reloads = 0
        self.backends_posted = 0

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None:
        self.dynamic += 1
        self.backends_posted += len(backends)

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        self.reloads += 1
        return ReloadOutcome(0, 0, 0.0, 0.0, 0.0)

    async def reapply(self, config: Configuration | None) -> None:
        return None

    async def check(self, config: Configuration, settings: RenderSettings) -> None:
        return None

    @property
    def routes_held(self) -> RouteTable | None:
        return None  # the benchmark runs --routing nginx

    @property
    def rendered_classes(self) -> frozenset[str]:
        return frozenset()

    async def apply_lua(
        self,
        config: Configuration,
        table: RouteTable,
        *,
        backends: Sequence[BackendName],
        routes: Sequence[str],
        removed: Sequence[str],
        certificates: bool,
    ) -> int:
        self.dynamic += 1
        self.backends_posted += len(backends)
        return len(backends)


@dataclass
class PipelineResult:
    services: int
    events: int
    seconds: float
    events_per_second: float
    syncs: int
    dynamic_updates: int
    reloads: int
    dropped_by_channel: int


def _slice(i: int, version: int) -> dict[str, object]:
    third = version % 250 + 1
    obj = endpoint_slice(
        f"svc{i}",
        endpoints=[f"10.{i // 250}.{i % 250}.{third}", f"10.{i // 250}.{i % 250}.{third + 1}"],
        port=8080,
        port_name="http",
    )
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


async def run(services: int, events: int, batch: int) -> PipelineResult:
    channel = UpdateChannel()
    store = Store(channel=channel)
    queue = SyncQueue(min_interval=0.05)
    controller = NginxController(channel=channel, queue=queue)
    driver = RecordingDriver()
    worker = SyncWorker(
        store=store,
        options=BuildOptions(),
        nginx=driver,
        metrics=Metrics(),
        settings=RenderSettings(routing="nginx"),  # the driver records no route table
    )
    for i in range(services):
        store.apply(
            WatchEvent(
                EventType.ADDED,
                service(f"svc{i}", ports=[service_port(80, "http", target_port=8080)]),
            )
        )
        store.apply(WatchEvent(EventType.ADDED, _slice(i, 1)))
        store.apply(
            WatchEvent(
                EventType.ADDED,
                ingress(f"ing{i}", rules=[rule(f"h{i}.test", path("/", f"svc{i}"))]),
            )
        )
    tasks = [asyncio.create_task(controller.run()), asyncio.create_task(queue.run(worker))]
    while channel.qsize() or not queue.idle or worker.busy or worker.running is None:
        await asyncio.sleep(0.01)
    syncs0 = queue.syncs
    start = time.perf_counter()
    for n in range(events):
        store.apply(WatchEvent(EventType.MODIFIED, _slice(n % services, n + 2)))
        if n % batch == batch - 1:
            await asyncio.sleep(0)
    while channel.qsize() or not queue.idle or worker.busy:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - start
    for task in tasks:
        task.cancel()
    return PipelineResult(
        services=services,
        events=events,
        seconds=round(elapsed, 3),
        events_per_second=round(events / elapsed),
        syncs=queue.syncs - syncs0,
        dynamic_updates=driver.dynamic,
        reloads=driver.reloads - 1,
        dropped_by_channel=channel.dropped,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Events/s through the pipeline, dry run.")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure(level="warning")
    print(f"machine: {machine()}")
    r = asyncio.run(run(args.services, args.events, args.batch))
    print(
        f"pipeline: {r.events} endpoint events over {r.services} services in {r.seconds}s = "
        f"{r.events_per_second:,} events/s (target >= 50,000); {r.syncs} syncs, "
        f"{r.dynamic_updates} dynamic updates, {r.reloads} reloads, "
        f"{r.dropped_by_channel} dropped by the updateChannel"
    )
    if args.json:
        args.json.write_text(json.dumps(asdict(r), indent=2))


if __name__ == "__main__":
    main()
