"""The syncQueue and the NginxController: coalescing, forced tasks, retries."""

from __future__ import annotations

import asyncio
import itertools

import pytest
import structlog

from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.controller import NginxController
from ingressd.pipeline.queueing import RetryableSyncError, SyncBatch, SyncQueue
from ingressd.store.events import EventType, Kind, StoreEvent


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def event(at: float, kind: Kind = Kind.ENDPOINT_SLICE, name: str = "s") -> StoreEvent:
    return StoreEvent(kind, EventType.MODIFIED, ObjectKey(f"default/{name}"), at)


class RecordingHandler:
    """A sync handler that records batches; each sync takes ``duration`` of the fake clock."""

    def __init__(
        self,
        clock: FakeClock,
        *,
        fail: int = 0,
        hold: asyncio.Event | None = None,
        error: Exception | None = None,
    ):
        self.clock = clock
        self.batches: list[SyncBatch] = []
        self.fail = fail
        self.hold = hold
        self.error = error or RetryableSyncError("nginx busy")

    async def __call__(self, batch: SyncBatch) -> None:
        self.batches.append(batch)
        if self.hold is not None:
            await self.hold.wait()
            self.hold.clear()
        self.clock.now += 1.0
        if self.fail:
            self.fail -= 1
            raise self.error


async def run_until(queue: SyncQueue, handler: RecordingHandler, syncs: int) -> None:
    task = asyncio.create_task(queue.run(handler))
    try:
        async with asyncio.timeout(5):
            while len(handler.batches) < syncs or queue.qsize():
                await asyncio.sleep(0)
            await asyncio.sleep(0.01)
    finally:
        task.cancel()


async def test_a_burst_queued_during_a_sync_costs_one_more_sync() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock)
    hold = asyncio.Event()
    handler = RecordingHandler(clock, hold=hold)
    task = asyncio.create_task(queue.run(handler))
    queue.enqueue([event(clock.now)])
    await asyncio.sleep(0.01)  # the first sync is running (held)
    for i in range(1000):
        queue.enqueue([event(clock.now + 0.001 * i, name=f"s{i}")])
    hold.set()
    await asyncio.sleep(0.01)
    hold.set()
    await asyncio.sleep(0.01)
    task.cancel()
    assert len(handler.batches) == 2
    assert len(handler.batches[1].events) == 1000


async def test_first_event_is_synced_without_delay() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock)
    handler = RecordingHandler(clock)
    queue.enqueue([event(clock.now)])
    await run_until(queue, handler, 1)
    assert handler.batches[0].started_at == 100.0


async def test_task_older_than_last_successful_sync_start_is_skipped() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock)
    handler = RecordingHandler(clock)
    queue.enqueue([event(clock.now)])
    await run_until(queue, handler, 1)
    # A change stamped before the sync started is in that sync's snapshot already.
    queue.enqueue([event(99.0)])
    queue.enqueue([event(clock.now + 5)])
    await run_until(queue, handler, 2)
    assert len(handler.batches) == 2
    assert [e.received_at for e in handler.batches[1].events] == [clock.now - 1 + 5]
    assert queue.skipped == 1


async def test_forced_task_runs_even_when_covered() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock)
    handler = RecordingHandler(clock)
    queue.enqueue([event(clock.now)])
    await run_until(queue, handler, 1)
    queue.enqueue([event(50.0, kind=Kind.CONFIG_MAP)], forced=True)
    await run_until(queue, handler, 2)
    assert len(handler.batches) == 2
    assert queue.skipped == 0


async def test_failed_sync_is_retried_with_backoff_until_it_succeeds() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock, backoff_initial=0.01, backoff_max=0.04)
    handler = RecordingHandler(clock, fail=2)
    queue.enqueue([event(clock.now)])
    await run_until(queue, handler, 3)
    assert [b.causes for b in handler.batches] == [("events",), ("retry",), ("retry",)]
    assert queue.failures == 2


async def test_a_sync_that_crashes_is_logged_and_retried_and_the_worker_lives_on() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock, backoff_initial=0.01)
    handler = RecordingHandler(clock, fail=1, error=ValueError("Invalid IPv6 URL"))
    queue.enqueue([event(clock.now)])
    with structlog.testing.capture_logs() as logs:
        await run_until(queue, handler, 2)
    assert [b.causes for b in handler.batches] == [("events",), ("retry",)]
    assert queue.failures == 1
    crashed = [e for e in logs if e["event"] == "sync crashed; retrying"]
    assert len(crashed) == 1 and crashed[0]["exc_info"] is True


async def test_stalled_for_grows_while_syncs_fail_and_resets_on_success() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock, backoff_initial=0.01, backoff_max=0.01)
    assert queue.stalled_for() == 0.0
    handler = RecordingHandler(clock, fail=3)
    queue.enqueue([event(clock.now)])
    task = asyncio.create_task(queue.run(handler))
    try:
        async with asyncio.timeout(5):
            while len(handler.batches) < 3:
                await asyncio.sleep(0)
        assert queue.stalled_for() >= 2.0  # three failed syncs of 1 s each (fake clock)
        async with asyncio.timeout(5):
            while len(handler.batches) < 4 or not queue.idle:
                await asyncio.sleep(0.001)
        assert queue.stalled_for() == 0.0
    finally:
        task.cancel()


async def test_retry_is_dropped_when_a_later_sync_succeeded() -> None:
    clock = FakeClock()
    queue = SyncQueue(clock=clock, backoff_initial=0.05)
    handler = RecordingHandler(clock, fail=1)
    queue.enqueue([event(clock.now)])
    await run_until(queue, handler, 1)
    queue.enqueue([event(clock.now + 1)])  # a new change: this sync succeeds
    await run_until(queue, handler, 2)
    await asyncio.sleep(0.1)  # the retry fires now, covered by the successful sync
    await run_until(queue, handler, 2)
    assert len(handler.batches) == 2
    assert queue.skipped == 1


async def test_controller_turns_waiting_events_into_one_task() -> None:
    channel = UpdateChannel(maxsize=16)
    queue = SyncQueue()
    controller = NginxController(channel=channel, queue=queue)
    for i in range(5):
        channel.put_nowait(event(float(i), name=f"s{i}"))
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.01)
    task.cancel()
    assert controller.tasks_enqueued == 1
    batch = await queue.next_batch()
    assert len(batch.events) == 5
    assert batch.tasks[0].stamp == 4.0
    assert not batch.tasks[0].forced


@pytest.mark.parametrize(
    ("kind", "forced"), [(Kind.CONFIG_MAP, True), (Kind.INGRESS, False), (Kind.SECRET, False)]
)
async def test_controller_forces_a_sync_only_for_its_configmap(kind: Kind, forced: bool) -> None:
    channel = UpdateChannel(maxsize=16)
    queue = SyncQueue()
    controller = NginxController(channel=channel, queue=queue)
    channel.put_nowait(event(1.0, kind=kind))
    task = asyncio.create_task(controller.run())
    await asyncio.sleep(0.01)
    task.cancel()
    batch = await queue.next_batch()
    assert batch.tasks[0].forced is forced


async def test_sustained_stream_is_synced_at_most_once_per_min_interval() -> None:
    queue = SyncQueue(min_interval=0.05)
    starts: list[float] = []

    async def handler(batch: SyncBatch) -> None:
        starts.append(batch.started_at)

    task = asyncio.create_task(queue.run(handler))
    loop = asyncio.get_running_loop()
    begin = loop.time()
    events = 0
    while loop.time() - begin < 0.3:
        queue.enqueue([event(loop.time(), name=f"s{events}")])
        events += 1
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.06)
    task.cancel()
    assert events > 100
    assert len(starts) <= 0.3 / 0.05 + 2
    assert all(b - a >= 0.049 for a, b in itertools.pairwise(starts))
    # The first event of a quiet period is synced at once.
    assert starts[0] - begin < 0.01


async def test_queue_is_not_idle_while_a_taken_task_waits_out_min_interval() -> None:
    queue = SyncQueue(min_interval=0.5)
    synced = asyncio.Event()

    async def handler(batch: SyncBatch) -> None:
        synced.set()

    task = asyncio.create_task(queue.run(handler))
    try:
        assert queue.idle
        queue.enqueue(cause="first")
        await synced.wait()
        await asyncio.sleep(0)
        assert queue.idle
        synced.clear()
        queue.enqueue(cause="second")  # taken at once, then held for ~0.5 s
        await asyncio.sleep(0.05)
        assert queue.qsize() == 0 and not synced.is_set()
        assert not queue.idle
        await synced.wait()
        await asyncio.sleep(0)
        assert queue.idle
    finally:
        task.cancel()
