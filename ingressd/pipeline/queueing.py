"""The syncQueue: sync tasks from the NginxController, coalesced, run one at a time.

    NginxController --SyncTask(stamp, events, forced)--> SyncQueue --SyncBatch--> sync worker

Coalescing, as ingress-nginx's task queue does it, with no fixed delay:

- A task's ``stamp`` is the time of the newest change it stands for.  A sync reads a snapshot of
  the whole Store taken after it starts, so a task stamped before the start of the last
  *successful* sync is already covered: it is skipped.
- When the worker picks a task, every task queued behind it joins the same batch: a burst of
  1,000 events that arrives while one sync runs costs one more sync, not 1,000.
- Under sustained load, syncs start at most once per ``min_interval`` (default 50 ms in
  ``ingressd run``): the first change after a quiet period is synced at once, but a stream of
  1,000 events/s costs ~20 syncs a second instead of one per event, and no change waits more
  than ``min_interval`` plus one sync.
- ``forced`` tasks (the controller's ConfigMap changed, nginx restarted) are never skipped.
- A sync that fails with ``RetryableSyncError`` is retried after an exponential backoff (0.5 s
  doubling up to 30 s), unless a later sync has succeeded meanwhile; success resets the backoff.
  A sync that raises anything else (a defect) is logged with its traceback and retried the same
  way: the worker never dies of it.  ``stalled_for()`` tells how long changes have waited
  without a successful sync (``/healthz`` fails past a limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from ingressd.store.events import StoreEvent

log = structlog.get_logger("ingressd.pipeline.queueing")


class RetryableSyncError(RuntimeError):
    """The sync failed for a reason that may pass (nginx busy, Lua endpoint not answering)."""


@dataclass(frozen=True, slots=True)
class SyncTask:
    """A request for a sync: the changes it stands for and when the newest happened."""

    stamp: float
    events: tuple[StoreEvent, ...] = ()
    forced: bool = False
    #: Why the task exists: ``events``, ``retry``, ``initial``, ``nginx-restart``.
    cause: str = "events"


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """The tasks one sync covers."""

    tasks: tuple[SyncTask, ...]
    started_at: float
    #: Tasks dropped because an earlier successful sync already covered them.
    skipped: int = 0
    events: tuple[StoreEvent, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "events", tuple(e for t in self.tasks for e in t.events))

    @property
    def causes(self) -> tuple[str, ...]:
        return tuple(sorted({t.cause for t in self.tasks}))


class SyncHandler(Protocol):
    async def __call__(self, batch: SyncBatch) -> None: ...


class SyncQueue:
    """Coalescing queue of sync tasks with one consumer."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        min_interval: float = 0.0,
    ) -> None:
        self._queue: asyncio.Queue[SyncTask] = asyncio.Queue()
        self._clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._backoff = backoff_initial
        self.min_interval = min_interval
        self._last_started = float("-inf")
        #: Start time of the last sync that succeeded; tasks stamped earlier are covered.
        self.last_success_started = float("-inf")
        self.syncs = 0
        self.skipped = 0
        self.failures = 0
        self._retry: asyncio.TimerHandle | None = None
        #: True from taking a task off the queue until its sync has returned (it may be
        #: waiting out ``min_interval`` with the queue already empty).
        self._in_hand = False
        #: When the oldest change not yet applied by a successful sync was asked for.
        self._waiting_since: float | None = None

    def enqueue(
        self,
        events: Iterable[StoreEvent] = (),
        *,
        forced: bool = False,
        cause: str = "events",
        stamp: float | None = None,
    ) -> None:
        """Queue a sync for ``events``; never blocks."""
        events = tuple(events)
        if stamp is None:
            stamp = max((e.received_at for e in events), default=self._clock())
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        self._queue.put_nowait(SyncTask(stamp=stamp, events=events, forced=forced, cause=cause))

    def qsize(self) -> int:
        return self._queue.qsize()

    @property
    def idle(self) -> bool:
        """No task queued and none taken: every sync asked for so far has returned."""
        return self._queue.empty() and not self._in_hand

    def stalled_for(self) -> float:
        """Seconds a change has waited without any sync succeeding; 0 when nothing waits.

        A sync that keeps failing (or hangs) makes this grow; ``/healthz`` fails past a limit.
        """
        if self._waiting_since is None:
            return 0.0
        return max(0.0, self._clock() - self._waiting_since)

    def _covered(self, task: SyncTask) -> bool:
        return not task.forced and task.stamp < self.last_success_started

    async def next_batch(self) -> SyncBatch:
        """Wait for a task that is not covered yet; take every queued task with it."""
        skipped = 0
        while True:
            first = await self._queue.get()
            if self._covered(first):
                skipped += 1
                self.skipped += 1
                if self._queue.empty() and self._retry is None:
                    self._waiting_since = None
                continue
            break
        self._in_hand = True
        wait = self._last_started + self.min_interval - self._clock()
        if wait > 0:
            await asyncio.sleep(wait)
        tasks = [first]
        while not self._queue.empty():
            task = self._queue.get_nowait()
            if self._covered(task):
                skipped += 1
                self.skipped += 1
            else:
                tasks.append(task)
        self._last_started = self._clock()
        return SyncBatch(tasks=tuple(tasks), started_at=self._last_started, skipped=skipped)

    async def run(self, handler: SyncHandler) -> None:
        """Consume forever: one batch at a time through ``handler``."""
        while True:
            batch = await self.next_batch()
            self.syncs += 1
            try:
                await handler(batch)
            except RetryableSyncError as exc:
                delay = self._fail()
                log.warning("sync failed; retrying", error=str(exc), retry_in_s=delay)
                self._schedule_retry(batch.started_at, delay)
            except Exception:  # a defect, not an input: keep syncing, retry the same batch later
                delay = self._fail()
                log.exception("sync crashed; retrying", retry_in_s=delay)
                self._schedule_retry(batch.started_at, delay)
            else:
                self.last_success_started = batch.started_at
                self._backoff = self.backoff_initial
                if self._queue.empty() and self._retry is None:
                    self._waiting_since = None
            finally:
                self._in_hand = False

    def _fail(self) -> float:
        """Count a failed sync; the delay before its retry."""
        self.failures += 1
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.backoff_max)
        return delay

    def _schedule_retry(self, stamp: float, delay: float) -> None:
        if self._retry is not None:
            self._retry.cancel()
        loop = asyncio.get_running_loop()

        def retry() -> None:
            self._retry = None
            self.enqueue(cause="retry", stamp=stamp)

        self._retry = loop.call_later(delay, retry)
