"""Trace recording (``ingressd record``): every event the informers see, one JSON line each.

    header (TraceHeader: recorder version, start time, the options recorded with) --> line 1
    KubernetesSource --load_once()--> TraceWriter.write_initial (the initial state: t = 0)
                     --run()-------> TraceWriter.write (t = seconds since the start, > 0)
        --redact(): each Secret ``data``/``stringData`` value -> "REDACTED:hmac-sha256:<16 hex>"
                    (unless keep_secret_data)
        --> {"t": <6 decimals>, "type": "ADDED|MODIFIED|DELETED",
             "object": {...as the API server sent it}}  + "\\n", flushed line by line
    until ``duration`` seconds have passed since the start, or ``stop`` is set

The format is specified in ``docs/trace-format.md``; trace replay reads exactly that.

Redaction keeps a trace of a Secret's changes without its values: each value becomes a digest,
so a rotated certificate still shows as a changed value (and replays as a new placeholder
certificate).  The digest is an HMAC-SHA256 under a key drawn at random for each recording and
never written anywhere: the same value gives the same digest throughout one trace, but a
low-entropy value (a password) cannot be guessed back from its digest, as it could from a plain
hash.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TextIO

from ingressd import __version__
from ingressd.store.events import WatchEvent
from ingressd.store.sources.trace import REDACTED, TraceHeader

__all__ = ["REDACTED", "TraceWriter", "record", "redact", "redacted_value", "trace_header"]


JSON = dict[str, Any]

#: Hex digits of the digest kept (64 bits: a collision between two values of one Secret is
#: not a practical concern, and the line stays short).
DIGEST_HEX = 16


class _Source(Protocol):
    async def load_once(self, sink: Callable[[WatchEvent], object]) -> None: ...

    async def run(self, sink: Callable[[WatchEvent], object]) -> None: ...


def redacted_value(value: object, key: bytes, *, encoded: bool) -> str:
    """``REDACTED:hmac-sha256:<16 hex>`` for one Secret value.

    ``encoded``: a ``data`` value, base64 as the API server sends it: the digest is of the bytes
    it holds (a ``stringData`` value is digested as UTF-8).
    """
    if isinstance(value, str):
        raw = value.encode()
        if encoded:
            with contextlib.suppress(binascii.Error, ValueError):
                raw = base64.b64decode(value, validate=True)
    else:
        raw = json.dumps(value, sort_keys=True).encode()
    digest = hmac.new(key, raw, hashlib.sha256).hexdigest()[:DIGEST_HEX]
    return f"{REDACTED}:hmac-sha256:{digest}"


def redact(obj: JSON, key: bytes) -> JSON:
    """``obj``, or for a Secret a copy whose ``data``/``stringData`` values are digests."""
    if obj.get("kind") != "Secret":
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        values = obj.get(field)
        if isinstance(values, dict):
            out[field] = {
                name: redacted_value(value, key, encoded=field == "data")
                for name, value in values.items()
            }
    return out


def trace_header(
    *,
    watch_namespace: str | None = None,
    configmap: str | None = None,
    resync_period: float | None = None,
    keep_secret_data: bool = False,
    started_at: datetime.datetime | None = None,
) -> TraceHeader:
    """The header ``ingressd record`` writes: this ingressd, now, the options it runs with."""
    when = started_at or datetime.datetime.now(datetime.UTC)
    return TraceHeader(
        recorder=f"ingressd {__version__}",
        started_at=when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        options={
            "watch-namespace": watch_namespace,
            "configmap": configmap,
            "resync-period": resync_period,
            "keep-secret-data": keep_secret_data,
        },
    )


class TraceWriter:
    """Writes watch events as trace lines to ``stream``, flushing each one."""

    def __init__(
        self,
        stream: TextIO,
        *,
        keep_secret_data: bool = False,
        clock: Callable[[], float] = time.monotonic,
        start: float | None = None,
        redaction_key: bytes | None = None,
    ) -> None:
        self._stream = stream
        self._keep_secret_data = keep_secret_data
        self._clock = clock
        self._start = clock() if start is None else start
        # Drawn per writer unless given (tests): digests compare within one trace only.
        self._key = redaction_key if redaction_key is not None else os.urandom(32)
        #: Event lines written (the header is not counted).
        self.count = 0

    def write_header(self, header: TraceHeader) -> None:
        """The header line; first, before any event."""
        self._stream.write(header.line() + "\n")
        self._stream.flush()

    def write(self, event: WatchEvent) -> None:
        """One line at the seconds elapsed since the start (at least 0.000001)."""
        self._write(event, max(1e-6, self._clock() - self._start))

    def write_initial(self, event: WatchEvent) -> None:
        """One line of the initial state (the first list): ``t`` is 0."""
        self._write(event, 0.0)

    def _write(self, event: WatchEvent, elapsed: float) -> None:
        obj = event.object if self._keep_secret_data else redact(event.object, self._key)
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
    header: TraceHeader | None = None,
) -> int:
    """Record ``source``'s events into ``out`` until ``duration`` s or ``stop``; lines written.

    ``header``: line 1 (``trace_header()``: this ingressd and the options of the recording;
    without one, a header naming only the recorder and ``keep_secret_data``).  An error of the
    source (not a cancellation) propagates after the file is closed.
    """
    start = time.monotonic()
    stop = stop or asyncio.Event()
    if header is None:
        header = trace_header(keep_secret_data=keep_secret_data)
    with out.open("w", encoding="utf-8") as stream:
        writer = TraceWriter(stream, keep_secret_data=keep_secret_data, start=start)
        writer.write_header(header)

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
