"""The trace source: a recorded event trace (JSON lines) -> watch-shaped events for the Store.

    TRACE.jsonl --read_trace() (lazily, line by line)--> TraceEvent(line, t, WatchEvent)
      line 1 may be a TraceHeader (who recorded it, with which options): kept in ``header``
      load_once(sink): the leading events with ``t == 0`` (the recorded initial state, as a live
                       run's first list) go to the sink at once
      run(sink):       the rest, paced by ``t / speed``; or, in fast mode (``speed=None``), one
                       group of events sharing the same ``t`` at a time, each group handed on
                       only after ``settle()`` says the pipeline is idle
      each event --sink (Store.apply)--> StoreEvent | None --on_event(event, result)--> caller

Format (``docs/trace-format.md``): an optional header line ``{"format": "ingressd-trace",
"version": 1, "recorder": ..., "started_at": ..., "options": {...}}``, then one JSON object per
line, ``{"t": <seconds since the start of the recording>, "type": "ADDED|MODIFIED|DELETED",
"object": {...}}``; blank lines are ignored.  Objects are handed on exactly as recorded; kinds
the Store does not cache are its business (it counts them in ``Store.ignored``).  Watch
``BOOKMARK`` and ``ERROR`` lines carry no object change: they are counted in ``watch_markers``
and skipped.  Lines are replayed in file order; a ``t`` lower than the one before is not waited
for.  With ``watch_namespace``, namespaced objects of other namespaces (but the controller's
ConfigMap) are not handed on, as a controller watching one namespace never sees them: counted in
``unwatched``, ``on_event`` gets ``NOT_WATCHED`` for them.

A line that does not parse stops the replay there: ``error`` holds a ``TraceError`` naming the
line and the reason, every earlier event has been handed on, ``done`` is set.  So does a line
past a limit (``MAX_LINE_BYTES``, ``MAX_DEPTH``, ``MAX_NUMBER_DIGITS``) and the line at which the
file passes ``MAX_TRACE_BYTES``: no input makes the reader raise anything else, or read a line
of unbounded size into memory.

Redacted Secrets (``ingressd record`` replaces each Secret value with ``"REDACTED:<algorithm>:
<digest>"`` unless told to keep it; older recorders wrote ``"REDACTED"``): a ``tls.crt`` /
``tls.key`` pair that is redacted is replaced by a placeholder certificate derived from the
Secret's namespace and name and the two digests (Ed25519, deterministic), counted in
``placeholders``.  TLS hosts then replay as served with a certificate, as they were, and a
rotation (new digests) is a new certificate.  A trace redacted to the bare ``"REDACTED"`` gives
every version of a Secret the same placeholder: a rotation is invisible in it.

Fast mode is deterministic: each group goes in with one synchronous burst of ``sink`` calls and
the next waits until the pipeline has finished with it, so each group gets its own sync decision
whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import datetime
import functools
import hashlib
import json
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ingressd.model import ObjectKey
from ingressd.store.events import WatchEvent

#: What ``ingressd record`` wrote in place of each Secret value it redacted, before it wrote a
#: digest of the value (``REDACTED:<algorithm>:<hex>``); readers accept both.
REDACTED = "REDACTED"
_REDACTED_DIGEST = re.compile(r"REDACTED:[a-z0-9-]{1,32}:[0-9a-f]{8,128}")

#: The header line's ``format`` and the version of the format this reader knows.
TRACE_FORMAT = "ingressd-trace"
FORMAT_VERSION = 1

#: Limits of what a trace may hold.  A recorded line is one object (the API server stores
#: objects of 1.5 MB at most, nested ~15 deep); past a limit the line stops the replay, naming it.
MAX_LINE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 100
MAX_NUMBER_DIGITS = 100
MAX_TRACE_BYTES = 1024 * 1024 * 1024

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


class _NotWatched:
    """What ``on_event`` gets instead of the sink's result for an event of an unwatched
    namespace (the sink never saw it)."""

    def __repr__(self) -> str:
        return "NOT_WATCHED"


NOT_WATCHED = _NotWatched()


def size_text(size: int) -> str:
    """``4 MiB``, ``1 GiB``, ``512 bytes``: a limit as people read it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}" if size % scale == 0 else f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def size_error(path: Path, limit: int = MAX_TRACE_BYTES) -> str | None:
    """Why the trace file at ``path`` is too large to replay, or None."""
    size = path.stat().st_size
    if size <= limit:
        return None
    return f"{path}: {size_text(size)}, more than the {size_text(limit)} a trace file may hold"


# -- the header ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TraceHeader:
    """Line 1 of a trace written by ``ingressd record``: who recorded it, when, with what.

    ``options`` holds the recorder's options by flag name (``watch-namespace``, ``configmap``,
    ``resync-period``, ``keep-secret-data``; ``None`` for one not given); names this reader does
    not know are kept, not refused.
    """

    recorder: str
    started_at: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    version: int = FORMAT_VERSION

    @property
    def configmap(self) -> ObjectKey | None:
        value = self.options.get("configmap")
        return ObjectKey(value) if isinstance(value, str) else None

    @property
    def watch_namespace(self) -> str | None:
        value = self.options.get("watch-namespace")
        return value if isinstance(value, str) else None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": TRACE_FORMAT,
            "version": self.version,
            "recorder": self.recorder,
            "started_at": self.started_at,
            "options": dict(self.options),
        }

    def line(self) -> str:
        """The header as its line of the trace (no newline)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, line: int, raw: dict[str, Any]) -> TraceHeader:
        """Check a header line; raises ``TraceError`` naming the field that is wrong."""

        def fail(reason: str) -> TraceError:
            return TraceError(line, f"header: {reason}")

        if raw.get("format") != TRACE_FORMAT:
            raise fail(f"format: expected {TRACE_FORMAT!r}, got {raw.get('format')!r}")
        version = raw.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise fail(f"version: expected a format version (1), got {version!r}")
        if version > FORMAT_VERSION:
            raise fail(
                f"format version {version} is newer than this ingressd reads "
                f"({FORMAT_VERSION}): replay it with the ingressd that recorded it"
            )
        recorder, started_at = raw.get("recorder"), raw.get("started_at")
        if not isinstance(recorder, str):
            raise fail(f"recorder: expected a string, got {recorder!r}")
        if started_at is not None and not isinstance(started_at, str):
            raise fail(f"started_at: expected a timestamp (a string), got {started_at!r}")
        options = raw.get("options", {})
        if not isinstance(options, dict):
            raise fail("options: expected a mapping")
        configmap = options.get("configmap")
        if configmap is not None and not _namespaced_name(configmap):
            raise fail(f"options.configmap: expected NAMESPACE/NAME, got {configmap!r}")
        watched = options.get("watch-namespace")
        if watched is not None and (not isinstance(watched, str) or not watched):
            raise fail(f"options.watch-namespace: expected a namespace, got {watched!r}")
        return cls(recorder, started_at, dict(options), version)


def _namespaced_name(value: object) -> bool:
    if not isinstance(value, str):
        return False
    namespace, sep, name = value.partition("/")
    return bool(sep and namespace and name)


# -- parsing one line ---------------------------------------------------------------------------


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


class _NumberTooLong(Exception):
    def __init__(self, digits: int) -> None:
        super().__init__(digits)
        self.digits = digits


def _digits(text: str) -> int:
    return sum(c.isdigit() for c in text)


def _int(text: str) -> int:
    # Called by the decoder for each integer, before int() (which refuses > 4300 digits).
    if len(text) > MAX_NUMBER_DIGITS and _digits(text) > MAX_NUMBER_DIGITS:
        raise _NumberTooLong(_digits(text))
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS and _digits(text) > MAX_NUMBER_DIGITS:
        raise _NumberTooLong(_digits(text))
    return float(text)


def _deeper_than(value: object, limit: int) -> bool:
    """Whether ``value`` nests more than ``limit`` levels (walked level by level, no recursion)."""
    level: list[object] = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        below: list[object] = []
        for node in level:
            assert isinstance(node, dict | list)
            children = node.values() if isinstance(node, dict) else node
            below.extend(c for c in children if isinstance(c, dict | list))
        level = below
    return False


def _decode(number: int, text: str) -> object:
    """``json.loads`` within the limits; ``TraceError`` naming the limit or the JSON error."""
    try:
        raw = json.loads(text, parse_int=_int, parse_float=_float)
    except _NumberTooLong as exc:
        raise TraceError(
            number, f"a number of {exc.digits} digits, more than the {MAX_NUMBER_DIGITS} allowed"
        ) from None
    except RecursionError:  # far deeper than MAX_DEPTH: the decoder gave up first
        raise TraceError(number, f"nested deeper than {MAX_DEPTH} levels, the limit") from None
    except json.JSONDecodeError as exc:
        raise TraceError(number, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    if _deeper_than(raw, MAX_DEPTH):
        raise TraceError(number, f"nested deeper than {MAX_DEPTH} levels, the limit")
    return raw


def parse_line(
    number: int, text: str, *, first: bool = False
) -> TraceEvent | _Marker | TraceHeader | None:
    """One line -> its event (``None`` for a blank line); raises ``TraceError`` naming why not.

    ``first``: this is the first non-blank line of the trace, where a header may be.
    """
    if not text.strip():
        return None
    raw = _decode(number, text)
    if not isinstance(raw, dict):
        raise TraceError(number, f"expected a JSON object, got {type(raw).__name__}")
    if "format" in raw:
        if not first:
            raise TraceError(number, "a trace header (format) may only be the first line")
        return TraceHeader.from_json(number, raw)
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


# -- redacted Secrets ---------------------------------------------------------------------------


def is_redacted(value: object) -> bool:
    """Whether ``value`` is what a recorder wrote for a Secret value it did not keep."""
    return value == REDACTED or (isinstance(value, str) and bool(_REDACTED_DIGEST.fullmatch(value)))


@functools.lru_cache(maxsize=256)
def placeholder_tls_data(namespace: str, name: str, digests: str = "") -> tuple[str, str]:
    """A deterministic self-signed certificate for a redacted Secret: base64 (crt, key).

    ``digests``: the redacted values (``""`` for the bare ``REDACTED``): another value, another
    certificate.
    """
    source = f"ingressd-replay-placeholder:{namespace}/{name}"
    if digests:
        source += f":{digests}"
    seed = hashlib.sha256(source.encode()).digest()
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
    crt, key = data.get("tls.crt"), data.get("tls.key")
    if not is_redacted(crt) or not is_redacted(key):
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    digests = "" if crt == key == REDACTED else f"{crt},{key}"
    new_crt, new_key = placeholder_tls_data(
        str(meta.get("namespace", "")), str(meta.get("name", "")), digests
    )
    return WatchEvent(event.type, {**obj, "data": {**data, "tls.crt": new_crt, "tls.key": new_key}})


# -- reading a file -----------------------------------------------------------------------------

_Item = TraceEvent | _Marker | TraceHeader


def _lines(
    stream: BinaryIO, *, max_bytes: int = MAX_TRACE_BYTES, digest: Any = None
) -> Iterator[tuple[int, _Item]]:
    """Every non-blank line parsed, reading at most ``MAX_LINE_BYTES`` + 1 bytes at a time;
    ``digest`` (a hashlib object) is updated with every byte read."""
    total = 0
    first = True
    number = 0
    while raw := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        total += len(raw)
        if digest is not None:
            digest.update(raw)
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise TraceError(
                number, f"longer than {size_text(MAX_LINE_BYTES)}, the limit for one trace line"
            )
        if total > max_bytes:
            raise TraceError(
                number, f"the trace passes {size_text(max_bytes)} here, the limit for a trace file"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceError(number, f"not UTF-8: {exc.reason} at byte {exc.start}") from None
        parsed = parse_line(number, text, first=first)
        if parsed is not None:
            first = False
            yield number, parsed


def read_trace(path: Path) -> Iterator[TraceEvent]:
    """Every event of the trace at ``path``, in order; ``TraceError`` at the first bad line."""
    with path.open("rb") as stream:
        for _, item in _lines(stream):
            if isinstance(item, TraceEvent):
                yield item


@dataclass(frozen=True, slots=True)
class TraceStart:
    """What the start of a trace says: its header (if it has one), whether any event follows."""

    header: TraceHeader | None
    has_events: bool


def read_start(path: Path) -> TraceStart:
    """The header and whether the trace holds an event; reads up to the first event only.

    Raises ``TraceError`` for a line before it that does not parse.
    """
    header = None
    with path.open("rb") as stream:
        for _, item in _lines(stream):
            if isinstance(item, TraceHeader):
                header = item
            elif isinstance(item, TraceEvent):
                return TraceStart(header, True)
    return TraceStart(header, False)


def count_lines(path: Path, chunk: int = 1 << 20) -> int:
    """About how many events the trace holds: its newlines (the progress bar's total)."""
    count = 0
    with path.open("rb") as stream:
        while block := stream.read(chunk):
            count += block.count(b"\n")
    return count


class TraceSource:
    """Replays a trace file into a sink: ``load_once`` the initial state, ``run`` the rest.

    ``speed``: replay at that many times the recorded pace; ``None`` is fast mode, where
    ``settle`` (required) is awaited before each group of events sharing one ``t``.
    ``watch_namespace``: hand on only namespaced objects of that namespace (and ``configmap``,
    the controller's, wherever it is), as a controller watching one namespace sees them.
    """

    def __init__(
        self,
        path: Path,
        *,
        speed: float | None = 1.0,
        settle: Settle | None = None,
        on_event: EventHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        watch_namespace: str | None = None,
        configmap: ObjectKey | None = None,
        max_bytes: int = MAX_TRACE_BYTES,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.path = path
        self.speed = speed
        self.settle = settle
        self.on_event = on_event
        self.watch_namespace = watch_namespace
        self.configmap = configmap
        self.max_bytes = max_bytes
        self._clock = clock
        #: Set once every event has been handed on, or the replay stopped at a bad line.
        self.done = asyncio.Event()
        #: The line that stopped the replay, if one did.
        self.error: TraceError | None = None
        #: The trace's header line, once read (None for a trace without one).
        self.header: TraceHeader | None = None
        #: Events handed to the sink, BOOKMARK/ERROR lines skipped.
        self.fed = 0
        self.watch_markers = 0
        #: Events of namespaces ``watch_namespace`` excludes, by kind: never handed on.
        self.unwatched: collections.Counter[str] = collections.Counter()
        #: Redacted TLS Secrets handed on with a placeholder certificate.
        self.placeholders = 0
        #: ``t`` of the last event handed on: where the replay is, in trace time.
        self.position = 0.0
        self._stream: BinaryIO | None = None
        self._items: Iterator[tuple[int, _Item]] | None = None
        self._pending: TraceEvent | None = None
        self._digest = hashlib.sha256()
        self._read_all = False

    @property
    def sha256(self) -> str | None:
        """sha256 of the trace file, once it has been read to the end (None before, or when a
        line stopped the replay)."""
        return self._digest.hexdigest() if self._read_all else None

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
            self._items = _lines(self._stream, max_bytes=self.max_bytes, digest=self._digest)
        try:
            for _, item in self._items:
                if isinstance(item, TraceEvent):
                    return item
                if isinstance(item, TraceHeader):
                    self.header = item
                else:
                    self.watch_markers += 1
            self._read_all = True
        except TraceError as exc:
            self.error = exc
        self._close()
        return None

    def _close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def _watched(self, obj: dict[str, Any]) -> bool:
        if self.watch_namespace is None:
            return True
        meta = obj.get("metadata")
        namespace = meta.get("namespace") if isinstance(meta, dict) else None
        if not isinstance(namespace, str) or not namespace or namespace == self.watch_namespace:
            return True
        assert isinstance(meta, dict)
        return (
            obj.get("kind") == "ConfigMap" and self.configmap == f"{namespace}/{meta.get('name')}"
        )

    def _feed(self, sink: Sink, item: TraceEvent) -> None:
        self.position = max(self.position, item.t)
        result: object
        if self._watched(item.event.object):
            event = unredact(item.event)
            if event is not None:
                self.placeholders += 1
            result = sink(event or item.event)
            self.fed += 1
        else:
            self.unwatched[item.kind] += 1
            result = NOT_WATCHED
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
