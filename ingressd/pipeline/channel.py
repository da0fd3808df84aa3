"""The updateChannel: a bounded asyncio queue of StoreEvents between the Store and the controller.

    Store.apply() --put_nowait(StoreEvent)--> UpdateChannel --get() / get_nowait_all()--> controller

The Store is synchronous and must never wait on its consumer, so ``put_nowait`` never blocks and
never raises.  When the channel is full it DROPS THE OLDEST event (as ingress-nginx's ring buffer
of 1024 does), counts it in ``dropped`` and enqueues the new one.  Dropping is safe because an
event only says "something changed": a sync always reads a full Store snapshot, never the events,
and the newest event, which is kept, still triggers a sync that sees every earlier change.

Use from one event loop (the Store's and the controller's); it is not thread-safe.
"""

from __future__ import annotations

import asyncio

from ingressd.store.events import StoreEvent

#: Default capacity, ingress-nginx's ring buffer size.
DEFAULT_MAXSIZE = 1024


class UpdateChannel:
    """A bounded FIFO of StoreEvents that drops its oldest event instead of blocking."""

    __slots__ = ("_queue", "dropped", "maxsize")

    def __init__(self, maxsize: int = DEFAULT_MAXSIZE) -> None:
        if maxsize < 1:
            raise ValueError(f"maxsize must be at least 1, got {maxsize}")
        self.maxsize = maxsize
        #: Events discarded to make room since the channel was created.
        self.dropped = 0
        self._queue: asyncio.Queue[StoreEvent] = asyncio.Queue(maxsize)

    def put_nowait(self, event: StoreEvent) -> None:
        """Enqueue ``event``; when full, discard the oldest event first.  Never blocks or raises."""
        queue = self._queue
        if queue.full():
            queue.get_nowait()
            self.dropped += 1
        queue.put_nowait(event)

    async def get(self) -> StoreEvent:
        """Wait for and return the oldest event."""
        return await self._queue.get()

    def get_nowait_all(self) -> list[StoreEvent]:
        """Drain: every queued event, oldest first (empty when none is queued)."""
        queue = self._queue
        events: list[StoreEvent] = []
        while not queue.empty():
            events.append(queue.get_nowait())
        return events

    def qsize(self) -> int:
        """Number of events waiting."""
        return self._queue.qsize()
