"""The trace source: a recorded event trace (JSON lines) -> watch-shaped events for the Store.

    TRACE.jsonl --read_trace() (lazily, line by line)--> TraceEvent(line, t, WatchEvent)
      load_once(sink): the leading events with ``t == 0`` (the recorded initial state, as a live
                       run's first list) go to the sink at once
      run(sink):       the rest, paced by ``t / speed``; or, in fast mode (``speed=None``), one
                       group of events sharing the same ``t`` at a time, each group handed on
                       only after ``settle()`` says the pipeline is idle
      each event --sink (Store.apply)--> StoreEvent | None --on_event(event, result)--> caller

Format (``docs/trace-format.md``): one JSON object per line, ``{"t": <seconds since the start of
the recording>, "type": "ADDED|MODIFIED|DELETED", "object": {...}}``; blank lines are ignored.
Objects are handed on exactly as recorded; kinds the Store does not cache are its business (it
counts them in ``Store.ignored``).  Watch ``BOOKMARK`` and ``ERROR`` lines carry no object change:
they are counted in ``watch_markers`` and skipped.  Lines are replayed in file order; a ``t``
lower than the one before is not waited for.

A line that does not parse stops the replay there: ``error`` holds a ``TraceError`` naming the
line and the reason, every earlier event has been handed on, ``done`` is set.

Redacted Secrets (``ingressd record`` replaces Secret data with ``"REDACTED"`` unless told to keep
it): a ``tls.crt`` / ``tls.key`` pair that is redacted is replaced by a placeholder certificate
derived from the Secret's namespace and name only (Ed25519, deterministic), counted in
``placeholders``.  TLS hosts then replay as served with a certificate, as they were; a rotation
is invisible in such a trace (every version gets the same placeholder): record with
``--keep-secret-data`` to replay rotations.

Fast mode is deterministic: each group goes in with one synchronous burst of ``sink`` calls and
the next waits until the pipeline has finished with it, so each group gets its own sync decision
whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import functools
import hashlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ingressd.store.events import WatchEvent

#: What ``ingressd record`` writes in place of each Secret value it redacts.
REDACTED = "REDACTED"

#: Takes each event, in order; ``Store.apply`` in production (returns the StoreEvent or None).
Sink = Callable[[WatchEvent], object]

#: Called after the sink with the event and what the sink returned.
EventHook = Callable[["TraceEvent", object], None]

#: Waits until the pipeline has processed everything handed to it (fast mode).
Settle = Callable[[], Awaitable[object]]

#: Watch event types that carry no object change; skipped and counted.
WATCH_MARKERS = ("BOOKMARK", "ERROR")


class TraceError(ValueError):
    """A trace line that cannot be replayed."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One event of a trace: where it is, when it happened, what it is."""

    line: int
    t: float
    event: WatchEvent

    @property
    def kind(self) -> str:
        return str(self.event.object.get("kind"))

    @property
    def name(self) -> str:
        """``namespace/name`` (``name`` for cluster-scoped objects), as recorded."""
        meta = self.event.object.get("metadata")
        if not isinstance(meta, dict):
            return "?"
        name, namespace = meta.get("name"), meta.get("namespace")
        return f"{namespace}/{name}" if namespace else str(name)


@dataclass(frozen=True, slots=True)
class _Marker:
    """A BOOKMARK or ERROR line: nothing to replay."""

    line: int
    type: str


def parse_line(number: int, text: str) -> TraceEvent | _Marker | None:
    """One line -> its event (``None`` for a blank line); raises ``TraceError`` naming why not."""
    if not text.strip():
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise TraceError(number, f"expected a JSON object, got {type(raw).__name__}")
    t = raw.get("t")
    if isinstance(t, bool) or not isinstance(t, int | float):
        raise TraceError(number, f"t: expected seconds since the start (a number), got {t!r}")
    if not math.isfinite(t) or t < 0:
        raise TraceError(number, f"t: expected a finite number >= 0, got {t!r}")
    if raw.get("type") in WATCH_MARKERS:
        return _Marker(number, str(raw["type"]))
    try:
        event = WatchEvent.from_json(raw)
    except ValueError as exc:
        raise TraceError(number, str(exc)) from None
    kind = event.object.get("kind")
    if not isinstance(kind, str) or not kind:
        raise TraceError(number, "object.kind: expected the object's kind (a string)")
    return TraceEvent(number, float(t), event)


@functools.lru_cache(maxsize=256)
def placeholder_tls_data(namespace: str, name: str) -> tuple[str, str]:
    """A deterministic self-signed certificate for a redacted Secret: base64 (crt, key)."""
    seed = hashlib.sha256(f"ingressd-replay-placeholder:{namespace}/{name}".encode()).digest()
    key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"placeholder for secret {namespace}/{name}")]
    )
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(seed[:8], "big") >> 1 or 1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=36500))
        .sign(key, None)
    )
    crt = cert.public_bytes(serialization.Encoding.PEM)
    pem_key = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(crt).decode(), base64.b64encode(pem_key).decode()


def unredact(event: WatchEvent) -> WatchEvent | None:
    """A copy of ``event`` with a placeholder certificate for a redacted TLS pair, else None."""
    obj = event.object
    data = obj.get("data")
    if obj.get("kind") != "Secret" or not isinstance(data, dict):
        return None
    if data.get("tls.crt") != REDACTED or data.get("tls.key") != REDACTED:
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    crt, key = placeholder_tls_data(str(meta.get("namespace", "")), str(meta.get("name", "")))
    return WatchEvent(event.type, {**obj, "data": {**data, "tls.crt": crt, "tls.key": key}})


def _lines(stream: BinaryIO) -> Iterator[tuple[int, TraceEvent | _Marker]]:
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceError(number, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        parsed = parse_line(number, text)
        if parsed is not None:
            yield number, parsed


def read_trace(path: Path) -> Iterator[TraceEvent]:
    """Every event of the trace at ``path``, in order; ``TraceError`` at the first bad line."""
    with path.open("rb") as stream:
        for _, item in _lines(stream):
            if isinstance(item, TraceEvent):
                yield item


def count_events(path: Path) -> int:
    """Non-blank lines of the trace: the progress bar's total (cheap, parses nothing)."""
    with path.open("rb") as stream:
        return sum(1 for line in stream if line.strip())


class TraceSource:
    """Replays a trace file into a sink: ``load_once`` the initial state, ``run`` the rest.

    ``speed``: replay at that many times the recorded pace; ``None`` is fast mode, where
    ``settle`` (required) is awaited before each group of events sharing one ``t``.
    """

    def __init__(
        self,
        path: Path,
        *,
        speed: float | None = 1.0,
        settle: Settle | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.path = path
        self.speed = speed
        self.settle = settle
        self.on_event = on_event
        self._clock = clock
        #: Set once every event has been handed on, or the replay stopped at a bad line.
        self.done = asyncio.Event()
        #: The line that stopped the replay, if one did.
        self.error: TraceError | None = None
        #: Events handed to the sink, BOOKMARK/ERROR lines skipped.
        self.fed = 0
        self.watch_markers = 0
        #: Redacted TLS Secrets handed on with a placeholder certificate.
        self.placeholders = 0
        #: ``t`` of the last event handed on: where the replay is, in trace time.
        self.position = 0.0
        self._stream: BinaryIO | None = None
        self._items: Iterator[tuple[int, TraceEvent | _Marker]] | None = None
        self._pending: TraceEvent | None = None

    # -- reading ---------------------------------------------------------------------------------

    def _next(self) -> TraceEvent | None:
        """The next event, ``None`` at the end or after a bad line (then ``error`` is set)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return pending
        if self.error is not None:
            return None
        if self._items is None:
            self._stream = self.path.open("rb")
            self._items = _lines(self._stream)
        try:
            for _, item in self._items:
                if isinstance(item, TraceEvent):
                    return item
                self.watch_markers += 1
        except TraceError as exc:
            self.error = exc
        self._close()
        return None

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _feed(self, sink: Sink, item: TraceEvent) -> None:
        event = unredact(item.event)
        if event is not None:
            self.placeholders += 1
        result = sink(event or item.event)
        self.fed += 1
        self.position = max(self.position, item.t)
        if self.on_event is not None:
            self.on_event(item, result)

    # -- the Source protocol ---------------------------------------------------------------------

    def load_once(self, sink: Sink) -> None:
        """Hand on the recorded initial state: the leading events with ``t == 0``."""
        while True:
            item = self._next()
            if item is None:
                return
            if item.t > 0:
                self._pending = item
                return
            self._feed(sink, item)

    async def run(self, sink: Sink) -> None:
        """Hand on the rest, paced (or fast, group by group); set ``done`` at the end."""
        try:
            if self.speed is None:
                await self._run_fast(sink)
            else:
                await self._run_paced(sink, self.speed)
        finally:
            self._close()
            self.done.set()

    async def _run_paced(self, sink: Sink, speed: float) -> None:
        start = self._clock()
        while (item := self._next()) is not None:
            wait = start + item.t / speed - self._clock()
            if wait > 0:
                await asyncio.sleep(wait)
            self._feed(sink, item)

    async def _run_fast(self, sink: Sink) -> None:
        if self.settle is None:
            raise ValueError("fast mode needs settle(): a way to wait until the pipeline is idle")
        await self.settle()
        item = self._next()
        while item is not None:
            group_t = item.t
            while item is not None and item.t == group_t:
                self._feed(sink, item)
                item = self._next()
            await self.settle()
