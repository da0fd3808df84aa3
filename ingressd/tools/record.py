"""Trace recording (``ingressd record``): every event the informers see, one JSON line each.

    KubernetesSource --load_once()--> TraceWriter.write_initial (the initial state: t = 0)
                     --run()-------> TraceWriter.write (t = seconds since the start, > 0)
        --redact(): Secret ``data``/``stringData`` values -> "REDACTED" (unless keep_secret_data)
        --> {"t": <6 decimals>, "type": "ADDED|MODIFIED|DELETED",
             "object": {...as the API server sent it}}  + "\\n", flushed line by line
    until ``duration`` seconds have passed since the start, or ``stop`` is set

The format is specified in ``docs/trace-format.md``; trace replay reads exactly that.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from ingressd.store.events import WatchEvent
from ingressd.store.sources.trace import REDACTED

__all__ = ["REDACTED", "TraceWriter", "record", "redact"]


JSON = dict[str, Any]


class _Source(Protocol):
    async def load_once(self, sink: Callable[[WatchEvent], object]) -> None: ...

    async def run(self, sink: Callable[[WatchEvent], object]) -> None: ...


def redact(obj: JSON) -> JSON:
    """``obj``, or for a Secret a copy whose ``data``/``stringData`` values are "REDACTED"."""
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        values = obj.get(field)
        if isinstance(values, dict):
            out[field] = dict.fromkeys(values, REDACTED)
    return out


class TraceWriter:
    """Writes watch events as trace lines to ``stream``, flushing each one."""

    def __init__(
        self,
        stream: TextIO,
        *,
        keep_secret_data: bool = False,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
    ) -> None:
        self._stream = stream
        self._keep_secret_data = keep_secret_data
        self._clock = clock
        self._start = clock() if start is None else start
        #: Lines written.
        self.count = 0

    def write(self, event: WatchEvent) -> None:
        """One line at the seconds elapsed since the start (at least 0.000001)."""
        self._write(event, max(1e-6, self._clock() - self._start))

    def write_initial(self, event: WatchEvent) -> None:
        """One line of the initial state (the first list): ``t`` is 0."""
        self._write(event, 0.0)

    def _write(self, event: WatchEvent, elapsed: float) -> None:
        obj = event.object if self._keep_secret_data else redact(event.object)
        self._stream.write(
            f'{{"t":{elapsed:.6f},"type":{json.dumps(event.type.value)},"object":'
            f"{json.dumps(obj, separators=(',', ':'), ensure_ascii=False)}}}\n"
        )
        self._stream.flush()
        self.count += 1


async def record(
    source: _Source,
    out: Path,
    *,
    duration: float | None = None,
    keep_secret_data: bool = False,
    stop: asyncio.Event | None = None,
) -> int:
    """Record ``source``'s events into ``out`` until ``duration`` s or ``stop``; lines written.

    An error of the source (not a cancellation) propagates after the file is closed.
    """
    start = time.monotonic()
    stop = stop or asyncio.Event()
    with out.open("w", encoding="utf-8") as stream:
        writer = TraceWriter(stream, keep_secret_data=keep_secret_data, start=start)

        async def follow() -> None:
            await source.load_once(writer.write_initial)
            await source.run(writer.write)

        following = asyncio.create_task(follow(), name="record-source")
        stopping = asyncio.create_task(stop.wait(), name="record-stop")
        try:
            await asyncio.wait(
                {following, stopping}, timeout=duration, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (following, stopping):
                task.cancel()
            for task in (stopping, following):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    return writer.count
