"""The NginxController: reads the updateChannel, turns events into syncQueue tasks.

    Store --StoreEvent--> updateChannel --NginxController.run()--> SyncQueue.enqueue(...)

Everything already waiting on the channel becomes one task (events are signals that the Store
changed, not data the sync needs: the sync reads the Store itself).  A change of the controller's
own ConfigMap makes a forced task, which coalescing never skips.  There is no delay here: the
first event of a quiet period is handed on at once, and bursts are absorbed by the syncQueue
while a sync runs.
"""

from __future__ import annotations

import structlog

from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.queueing import SyncQueue
from ingressd.store.events import Kind

log = structlog.get_logger("ingressd.pipeline.controller")


class NginxController:
    """updateChannel consumer, syncQueue producer."""

    def __init__(self, *, channel: UpdateChannel, queue: SyncQueue) -> None:
        self.channel = channel
        self.queue = queue
        self.events_seen = 0
        self.tasks_enqueued = 0

    async def run(self) -> None:
        """Forever: wait for an event, take whatever else is waiting, enqueue one task."""
        while True:
            first = await self.channel.get()
            events = [first, *self.channel.get_nowait_all()]
            self.events_seen += len(events)
            forced = any(e.kind is Kind.CONFIG_MAP for e in events)
            self.queue.enqueue(events, forced=forced)
            self.tasks_enqueued += 1
