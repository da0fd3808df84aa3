"""An in-process source: objects handed over by code (benchmarks, tests, embedding).

    caller --add()/modify()/delete()--> MemorySource --WatchEvent--> sink (Store.apply)

Objects given before ``load_once`` make the initial list; after that every call goes to the
sink at once, synchronously, so a caller can drive the pipeline as fast as it takes events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from ingressd.store.events import EventType, WatchEvent

Sink = Callable[[WatchEvent], object]


class MemorySource:
    """A source fed by method calls."""

    def __init__(self, initial: Iterable[dict[str, Any]] = ()) -> None:
        self._initial = list(initial)
        self._sink: Sink | None = None

    def load_once(self, sink: Sink) -> None:
        self._sink = sink
        for obj in self._initial:
            sink(WatchEvent(EventType.ADDED, obj))
        self._initial.clear()

    async def run(self, sink: Sink) -> None:
        self._sink = sink
        await asyncio.Event().wait()

    def send(self, event_type: EventType, obj: dict[str, Any]) -> None:
        if self._sink is None:
            self._initial.append(obj)
            return
        self._sink(WatchEvent(event_type, obj))

    def add(self, obj: dict[str, Any]) -> None:
        self.send(EventType.ADDED, obj)

    def modify(self, obj: dict[str, Any]) -> None:
        self.send(EventType.MODIFIED, obj)

    def delete(self, obj: dict[str, Any]) -> None:
        self.send(EventType.DELETED, obj)
