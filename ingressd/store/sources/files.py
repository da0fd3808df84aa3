"""The manifests-directory source: YAML/JSON files on disk -> watch-shaped events for the Store.

    inotify (watchfiles) --changed paths--> the files among them --parse--> objects per file
    or a walk of the whole directory (stat signatures) ---^          (last good version)
      --merge (first file in sorted path order wins)--> objects by identity
      --diff with what was last handed on--> WatchEvent(ADDED | MODIFIED | DELETED) --> sink

``load_once(sink)`` runs one walk synchronously (``ingressd render`` and the first load);
``run(sink)`` follows the directory until cancelled, reading and parsing in a worker thread and
calling ``sink`` on the event loop.

- Following: ``run`` watches the directory recursively through ``watchfiles`` (inotify) and
  makes a pass of the paths each batch of changes names (a directory among them is walked), so
  a write is seen about 1.5 ``_WATCH_STEP_MS`` later whatever the size of the directory, and
  idle it costs only the watcher's wake-up each step.  It walks the whole directory once the
  watch is in place (again when the directory is replaced), on ``rescan()``, after a burst of
  changes (inotify's queue may have overflowed), after a new directory (files written into it
  before inotify watched it) and every ``resync_interval``.  A heartbeat pass every
  ``heartbeat_interval`` looks again at symlinked files (their target may change without an
  event here) and at files read right after they were written.  Where inotify is missing or
  fails (watch limit reached, ...), or ``INGRESSD_MANIFESTS_POLL=1``, ``run`` polls instead: a
  walk every ``poll_interval`` (and it tries the watcher again every ``_WATCH_RETRY`` seconds).
- Files: ``*.yaml``, ``*.yml``, ``*.json`` anywhere under the directory; names starting with ``.``
  (files and directories) are skipped, as are symlinked directories (symlinked files are read).
- A file changed when its signature ``(mtime_ns, size, inode)`` did; a file written within the
  last ``_RACY_NS`` is read again later, as a same-size rewrite in the same timestamp tick
  would not change its signature.  A missing directory is reported, and read when it appears.
- Documents: multi-document YAML (C loader when available; timestamps stay strings, as the API
  server keeps them), JSON (an object or an array of objects); ``kind: List`` and ``*List`` kinds
  are expanded; empty documents are skipped.  Namespaced kinds without a namespace get
  ``default``; cluster-scoped ones lose any namespace.
- A file that does not parse (syntax error, a document that is not a mapping, an object without
  ``kind`` or ``metadata.name``) is logged with its path and the parser's message, recorded in
  ``errors`` and changes nothing: the objects of its last good version stay.
- Identity is ``(kind, namespace, name)``, apiVersion aside.  An object defined in two files comes
  from the first file in sorted path order; a warning names both.
- Each object handed on is a shallow copy with a fresh ``metadata.resourceVersion`` (a counter)
  and, when missing, ``metadata.creationTimestamp`` (first seen, RFC 3339 UTC) and
  ``metadata.uid`` (derived from its identity).  Both stay the same for the life of the source,
  so the age of an Ingress (which wins a host/path conflict) does not change when it is edited.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import watchfiles
import yaml

from ingressd.store.events import EventType, WatchEvent
from ingressd.store.references import DEFAULT_NAMESPACE, is_namespaced
from ingressd.store.snapshot import KubeObject

log = structlog.get_logger(__name__)

#: Takes each event, in order; ``Store.apply`` in production (its return value is ignored).
Sink = Callable[[WatchEvent], object]

#: ``(kind, namespace, name)``; namespace is ``""`` for cluster-scoped kinds.
ObjectId = tuple[str, str, str]

#: ``(st_mtime_ns, st_size, st_ino)`` of a file; ``None`` forces a re-read.
Signature = tuple[int, int, int] | None

SUFFIXES = (".yaml", ".yml", ".json")

#: Limits of what one file may hold (a real object nests ~15 deep; the API server stores
#: objects of 1.5 MB at most).  Past one, the file is an error naming the limit; the objects
#: of its last good version stay.
MAX_DEPTH = 100
MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_DOCUMENTS = 10_000
MAX_STRING_BYTES = 1024 * 1024
MAX_NUMBER_DIGITS = 100

#: Files modified less than this long before a pass are read again on the next pass (polling)
#: or heartbeat (watching).
_RACY_NS = 100_000_000

#: The watcher looks at what inotify reported every _WATCH_STEP_MS and hands a batch on once a
#: step added nothing to it, or _WATCH_DEBOUNCE_MS after its first change under a steady stream:
#: a write waits 1.5 steps on average.  Each step is a thread wake-up, also when idle.
_WATCH_STEP_MS = 10
_WATCH_DEBOUNCE_MS = 50
#: An idle watcher yields this often; its first yield says that the watch is in place.
_WATCH_TICK_MS = 100
#: Seconds between attempts to start the watcher again after it could not start or failed.
_WATCH_RETRY = 30.0
#: A batch naming this many paths is followed by a walk instead of a look at each path.
_BURST_PATHS = 1_000

#: Events of one pass are handed on in this kind order (the rest after, by name), so that an
#: Ingress arrives after what it references.
_KIND_ORDER = {
    k: i
    for i, k in enumerate(
        ("Namespace", "ConfigMap", "IngressClass", "Secret", "Service", "EndpointSlice", "Ingress")
    )
}

_UID_NAMESPACE = uuid.UUID("0b9e3c1e-5a4f-4f43-9a57-6c1a1f0e2d77")


try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class _Loader(_BaseLoader):
    """Safe loader that leaves timestamps as strings (Kubernetes treats them as strings)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


class ManifestError(ValueError):
    """A manifest file that cannot be used; the message says where and why."""


# -- parsing: one file's text -> its objects ---------------------------------------------------


def _yaml_message(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        parts = []
        if exc.problem_mark is not None:
            mark = exc.problem_mark
            parts.append(f"line {mark.line + 1}, column {mark.column + 1}: ")
        parts.append(exc.problem or "invalid YAML")
        if exc.context:
            where = ""
            if exc.context_mark is not None:
                mark = exc.context_mark
                where = f" at line {mark.line + 1}, column {mark.column + 1}"
            parts.append(f" ({exc.context}{where})")
        return "".join(parts)
    return str(exc)


def _documents(path: Path, text: str) -> list[Any]:
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(str(exc)) from None
        return data if isinstance(data, list) else [data]
    try:
        return list(yaml.load_all(text, Loader=_Loader))
    except yaml.YAMLError as exc:
        raise ManifestError(_yaml_message(exc)) from None


def _expand(doc: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, object)`` for a document, expanding ``List`` kinds."""
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected a mapping, got {type(doc).__name__}")
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{where}: missing kind")
    if kind.endswith("List") and "items" in doc:
        items = doc["items"]
        if items is None:
            return
        if not isinstance(items, list):
            raise ManifestError(f"{where}: items: expected a list")
        item_kind = kind[: -len("List")]
        for index, item in enumerate(items):
            if isinstance(item, dict) and item_kind and "kind" not in item:
                item = {"kind": item_kind, **item}
                if "apiVersion" in doc and "apiVersion" not in item:
                    item["apiVersion"] = doc["apiVersion"]
            yield from _expand(item, f"{where}, items[{index}]")
        return
    yield where, doc


def _normalize(obj: dict[str, Any], where: str) -> tuple[ObjectId, KubeObject]:
    """Check the object's name and set its namespace on a copy."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ManifestError(f"{where}: metadata: expected a mapping")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ManifestError(f"{where}: metadata.name: missing")
    kind: str = obj["kind"]
    namespace = meta.get("namespace")
    if is_namespaced(kind):
        if not isinstance(namespace, str) or not namespace:
            namespace = DEFAULT_NAMESPACE
            obj = {**obj, "metadata": {**meta, "namespace": namespace}}
    else:
        if "namespace" in meta:
            obj = {**obj, "metadata": {k: v for k, v in meta.items() if k != "namespace"}}
        namespace = ""
    return (kind, namespace, name), obj


def parse_manifest(path: Path, text: str) -> tuple[dict[ObjectId, KubeObject], list[str]]:
    """The objects a manifest file defines, and warnings about objects it defines twice.

    Raises ``ManifestError`` (message with line/column when the parser gives them) when the file
    cannot be used as a whole.
    """
    objects: dict[ObjectId, KubeObject] = {}
    warnings: list[str] = []
    documents = _documents(path, text)
    if len(documents) > MAX_DOCUMENTS:
        raise ManifestError(f"{len(documents)} documents, more than {MAX_DOCUMENTS}")
    for number, doc in enumerate(documents, start=1):
        if doc is None:
            continue
        over = over_limits(doc)
        if over is not None:
            raise ManifestError(f"document {number}: {over}")
        for where, raw in _expand(doc, f"document {number}"):
            oid, obj = _normalize(raw, where)
            if oid in objects:
                warnings.append(f"{where}: {_describe(oid)} defined again; the first one is used")
                continue
            objects[oid] = obj
    return objects, warnings


def over_limits(doc: Any) -> str | None:
    """Which limit ``doc`` exceeds (nesting, string length, number size), walked without
    recursion; None when it keeps them all."""
    pending: list[tuple[Any, int]] = [(doc, 1)]
    while pending:
        node, depth = pending.pop()
        if isinstance(node, dict):
            children: Iterable[Any] = (*node.keys(), *node.values())
        elif isinstance(node, list):
            children = node
        elif isinstance(node, str):
            if len(node) > MAX_STRING_BYTES:
                return f"a string of {len(node)} characters, more than {MAX_STRING_BYTES}"
            continue
        elif isinstance(node, int) and not isinstance(node, bool):
            if node.bit_length() > MAX_NUMBER_DIGITS * 3.33:
                return f"a number of more than {MAX_NUMBER_DIGITS} digits"
            continue
        else:
            continue
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels"
        pending.extend((child, depth + 1) for child in children)
    return None


def _describe(oid: ObjectId) -> str:
    kind, namespace, name = oid
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


# -- reading: the directory -> signatures, and the changed files parsed ------------------------


@dataclass(frozen=True, slots=True)
class _Read:
    """One changed file, read and parsed (or not); ``unchanged`` when its bytes are the same."""

    signature: Signature
    digest: bytes
    unchanged: bool = False
    objects: dict[ObjectId, KubeObject] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def _signature(st: os.stat_result, now: int) -> Signature:
    """A file's signature; ``None`` when it was written too recently for one to be trusted."""
    if now - st.st_mtime_ns < _RACY_NS:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _walk(top: Path, now: int, found: dict[Path, Signature], symlinks: set[Path]) -> None:
    """Add every manifest file under the directory ``top`` to ``found`` (symlinked ones to
    ``symlinks`` too)."""
    pending = [top]
    while pending:
        directory = pending.pop()
        try:
            entries = os.scandir(directory)
        except OSError:
            continue
        with entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(Path(entry.path))
                        continue
                    if not entry.name.endswith(SUFFIXES):
                        continue
                    st = entry.stat()
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    path = Path(entry.path)
                    found[path] = _signature(st, now)
                    if entry.is_symlink():
                        symlinks.add(path)


def _read(path: Path, signature: Signature, last_digest: bytes | None) -> _Read | None:
    """Parse one file; ``None`` when it vanished meanwhile (the next pass will see that)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return _Read(signature, b"", error=str(exc))
    if len(data) > MAX_FILE_BYTES:
        return _Read(signature, b"", error=f"larger than {MAX_FILE_BYTES} bytes; not read")
    digest = hashlib.sha256(data).digest()
    if digest == last_digest:
        return _Read(signature, digest, unchanged=True)
    try:
        objects, warnings = parse_manifest(path, data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return _Read(signature, digest, error=str(exc))
    except ManifestError as exc:
        return _Read(signature, digest, error=str(exc))
    except Exception as exc:  # untrusted input (RecursionError, a 5,000-digit number, ...)
        return _Read(signature, digest, error=f"cannot be parsed ({type(exc).__name__}: {exc})")
    return _Read(signature, digest, objects=objects, warnings=warnings)


@dataclass(slots=True)
class _Pass:
    """What one pass found: the files it looked at with their signatures, the changed ones
    parsed, and where a known file it did not find is gone.

    A complete pass walked the whole directory: every known file it did not find is gone.  A
    partial one (changes the watcher named) is gone only for the paths it ``checked`` and under
    the directories it walked or found missing (``subtrees``).
    """

    root_exists: bool
    signatures: dict[Path, Signature]
    reads: dict[Path, _Read | None] = field(default_factory=dict)
    complete: bool = True
    checked: set[Path] = field(default_factory=set)
    subtrees: set[Path] = field(default_factory=set)
    #: A partial pass walked a directory the watcher named (one made just now, say).
    walked: bool = False
    symlinks: set[Path] = field(default_factory=set)


@dataclass(slots=True)
class _FileState:
    signature: Signature
    #: sha256 of the bytes last read (parsed or not).
    digest: bytes
    #: Objects of the last version that parsed.
    objects: dict[ObjectId, KubeObject]


# -- watching: inotify through watchfiles, in a thread of its own ------------------------------


def _identity(directory: Path) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the directory; None when it is not one."""
    try:
        st = os.stat(directory)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


class _Watcher:
    """``watchfiles.watch`` of one directory, in a thread of its own.

    Its first yield (changes, or the empty set of a ``_WATCH_TICK_MS`` timeout) tells that the
    inotify watches are in place: ``ready`` is then done (and ``wake`` set), and a walk made
    after it misses nothing.  The paths it reports are added to ``changes`` and ``wake`` is
    set; a failure sets ``error`` (and ``wake``).  Everything but the thread's own loop runs on
    the event loop.
    """

    def __init__(
        self, directory: Path, loop: asyncio.AbstractEventLoop, wake: asyncio.Event
    ) -> None:
        self.prefix = os.path.abspath(directory)
        self.identity = _identity(directory)
        self.changes: set[str] = set()
        self.error: str | None = None
        self.ready: asyncio.Future[None] = loop.create_future()
        #: Set by ``run`` once it has seen ``ready`` and walked after it.
        self.live = False
        self._loop = loop
        self._wake = wake
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._follow, name=f"watch {self.prefix}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop the thread (within ``_WATCH_STEP_MS``); it closes the inotify instance."""
        self._stop.set()

    def _follow(self) -> None:
        announced = False
        try:
            for changes in watchfiles.watch(
                self.prefix,
                watch_filter=None,
                debounce=_WATCH_DEBOUNCE_MS,
                step=_WATCH_STEP_MS,
                stop_event=self._stop,
                rust_timeout=_WATCH_TICK_MS,
                yield_on_timeout=True,
                debug=False,
                force_polling=False,
                recursive=True,
                ignore_permission_denied=True,
            ):
                if self._stop.is_set():
                    return
                if changes or not announced:
                    announced = True
                    self._post(self._arrived, {path for _change, path in changes})
        except Exception as exc:  # inotify unavailable, watch limit reached, ...
            self._post(self._failed, f"{type(exc).__name__}: {exc}")
            return
        if not self._stop.is_set():
            self._post(self._failed, "the watch ended")

    def _post(self, callback: Callable[[Any], None], argument: object) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, argument)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stop.set()

    def _arrived(self, paths: set[str]) -> None:
        if not self.ready.done():
            self.ready.set_result(None)
            self._wake.set()
        if paths and not self._stop.is_set():
            self.changes |= paths
            self._wake.set()

    def _failed(self, message: str) -> None:
        if self._stop.is_set():
            return
        self.error = message
        if not self.ready.done():
            self.ready.set_result(None)
        self._wake.set()


# -- the source --------------------------------------------------------------------------------


def _watch_wanted() -> bool:
    """False when ``INGRESSD_MANIFESTS_POLL`` asks for polling (``1``, ``true``, ``yes``)."""
    return os.environ.get("INGRESSD_MANIFESTS_POLL", "").strip().lower() in ("", "0", "false", "no")


class ManifestsSource:
    """Follows a manifests directory (inotify, else polling) and hands its objects' changes to a
    sink."""

    def __init__(
        self,
        directory: Path,
        *,
        poll_interval: float = 0.2,
        watch: bool | None = None,
        heartbeat_interval: float = 1.0,
        resync_interval: float = 300.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``watch``: follow changes through inotify (default: yes, unless the environment
        variable ``INGRESSD_MANIFESTS_POLL`` says ``1``); polling every ``poll_interval`` seconds
        otherwise, and whenever the watcher cannot start or fails.  While watching, a pass runs
        at least every ``heartbeat_interval`` seconds and walks the whole directory every
        ``resync_interval`` seconds."""
        self.directory = Path(directory)
        self.poll_interval = poll_interval
        self.watch = _watch_wanted() if watch is None else watch
        self.heartbeat_interval = heartbeat_interval
        self.resync_interval = resync_interval
        self._wall_clock = wall_clock
        #: Current parse errors, per file (and for the directory itself when it is missing).
        self.errors: dict[Path, str] = {}
        self._files: dict[Path, _FileState] = {}
        # identity -> files defining it, sorted (the first one wins)
        self._definers: dict[ObjectId, list[Path]] = {}
        # identity -> (object as parsed, object as last handed on)
        self._current: dict[ObjectId, tuple[KubeObject, KubeObject]] = {}
        self._first_seen: dict[ObjectId, str] = {}
        self._version = 0
        #: Passes of ``run`` completed (their changes handed on): walks of the whole directory,
        #: batches of changes from the watcher, heartbeats.  ``rescan()`` waits for a walk.
        self.passes = 0
        #: True while ``run`` follows the directory through inotify (False: it polls).
        self.watching = False
        # known files that are symlinks (their target may change without an event here)
        self._symlinks: set[Path] = set()
        # known files last read with no signature (written just before): read again
        self._recheck: set[Path] = set()
        # rescan() calls waiting for a walk that starts after them
        self._rescans: list[asyncio.Future[None]] = []
        self._wake: asyncio.Event | None = None

    def load_once(self, sink: Sink) -> None:
        """One pass, synchronously: hand every change since the last pass to ``sink``.

        The first call hands on every object as ADDED.
        """
        for event in self._merge(self._scan()):
            sink(event)

    async def rescan(self) -> None:
        """Return once ``run`` has walked the whole directory in a pass that began after this
        call and handed its changes on: every file written before the call has been seen.

        Waits for ``run``: it only returns while ``run`` runs.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rescans.append(done)
        if self._wake is not None:
            self._wake.set()
        await done

    async def run(self, sink: Sink) -> None:
        """Pass after pass until cancelled: on each batch of changes the watcher reports, or
        every ``poll_interval`` seconds when polling.

        Files are read and parsed in a worker thread; the state is updated and ``sink`` called on
        the event loop, so a cancellation never loses a change (a new ``run`` starts with a
        walk).  Do not call ``load_once`` while this runs.
        """
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        watcher: _Watcher | None = None
        waiters: list[asyncio.Future[None]] = []
        retry_at = 0.0  # after a watcher failed, when to try again
        fell_back = False  # a warning said we poll: say it when watching again
        walk = True  # the next pass walks the whole directory
        next_beat = next_resync = 0.0
        try:
            while True:
                wake.clear()
                exists = True
                if self.watch:
                    identity = _identity(self.directory)
                    exists = identity is not None
                    if watcher is not None and (
                        watcher.error is not None or watcher.identity != identity
                    ):
                        if watcher.error is not None:
                            if not fell_back:
                                log.warning(
                                    "manifests_watch_failed"
                                    if watcher.live
                                    else "manifests_watch_unavailable",
                                    path=str(self.directory),
                                    error=watcher.error,
                                    polling_every=self.poll_interval,
                                )
                            fell_back = True
                            retry_at = loop.time() + _WATCH_RETRY
                        watcher.close()  # failed, or the directory went away or was replaced
                        watcher = None
                        walk = True
                    if watcher is None and exists and loop.time() >= retry_at:
                        # Until its watch is in place (it wakes us then), passes poll.
                        watcher = _Watcher(self.directory, loop, wake)
                    if watcher is not None and not watcher.live and watcher.ready.done():
                        watcher.live = True
                        if fell_back:
                            log.info("manifests_watching", path=str(self.directory))
                        fell_back = False
                        walk = True  # the watch is in place: a walk now misses nothing
                live = watcher is not None and watcher.live
                self.watching = live

                now = loop.time()
                waiters, self._rescans = self._rescans, []
                beat = now >= next_beat
                if watcher is None or not live or walk or waiters or now >= next_resync:
                    found = await asyncio.to_thread(self._scan)
                    next_resync = now + self.resync_interval
                    walk = False
                else:
                    changed, watcher.changes = watcher.changes, set()
                    recheck = self._recheck | self._symlinks if beat else set()
                    found = await asyncio.to_thread(
                        self._scan_changes, changed, watcher.prefix, recheck
                    )
                    # A new directory's files written before inotify watched it: walk again soon.
                    walk = found.walked
                if beat:
                    next_beat = now + self.heartbeat_interval
                for event in self._merge(found):
                    sink(event)
                self.passes += 1
                for done in waiters:
                    if not done.done():
                        done.set_result(None)
                waiters = []

                if live:
                    timeout = min(next_beat, next_resync) - loop.time()
                elif self.watch and not exists:
                    timeout = min(self.poll_interval, self.heartbeat_interval)
                else:
                    timeout = self.poll_interval
                if timeout > 0:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a
                    # cancellation that arrives as the event is set, and run() never ends.
                    try:
                        async with asyncio.timeout(timeout):
                            await wake.wait()
                    except TimeoutError:
                        pass
        finally:
            if watcher is not None:
                watcher.close()
            self.watching = False
            self._wake = None
            self._rescans[:0] = [done for done in waiters if not done.done()]

    def _scan(self) -> _Pass:
        """Stage 1 of a walk (no state changes, may run in a thread): find and parse changed
        files."""
        root_exists = self.directory.is_dir()
        found = _Pass(root_exists, {})
        if root_exists:
            _walk(self.directory, time.time_ns(), found.signatures, found.symlinks)
        found.reads = self._read_changed(found.signatures)
        return found

    def _scan_changes(self, changed: set[str], prefix: str, recheck: set[Path]) -> _Pass:
        """Stage 1 of a watched pass (no state changes, may run in a thread): look at the paths
        the watcher reported (``prefix``: the directory as it watches it) and at ``recheck``;
        walk the directories among them; parse the files that changed.

        A change of the directory itself, or a burst of ``_BURST_PATHS`` paths (inotify drops
        events when its queue overflows, and watchfiles does not say so), is a walk instead.
        """
        if len(changed) >= _BURST_PATHS or prefix in changed or not self.directory.is_dir():
            return self._scan()
        now = time.time_ns()
        found = _Pass(True, {}, complete=False)
        targets = set(recheck)
        hidden = False
        start = prefix + os.sep
        for raw in changed:
            if not raw.startswith(start):
                continue
            relative = raw[len(start) :]
            if any(part.startswith(".") for part in relative.split(os.sep)):
                hidden = True
                continue
            targets.add(self.directory / relative)
        if hidden:
            # A hidden entry changed: perhaps the target of symlinked files (a ConfigMap volume
            # swaps its ``..data`` link); they are looked at again.
            targets |= self._symlinks
        for path in targets:
            self._look(path, now, found)
        found.reads = self._read_changed(found.signatures)
        return found

    def _look(self, path: Path, now: int, found: _Pass) -> None:
        """Add ``path`` to a partial pass as a walk would see it: a manifest file (its
        signature), a directory (walked), or nothing (gone, hidden behind a symlinked
        directory, another kind of file)."""
        found.checked.add(path)
        parent = self.directory
        try:
            for part in path.relative_to(self.directory).parts[:-1]:
                parent = parent / part
                if not stat.S_ISDIR(os.lstat(parent).st_mode):
                    found.subtrees.add(path)
                    return
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                found.subtrees.add(path)
                found.walked = True
                _walk(path, now, found.signatures, found.symlinks)
                return
            link = stat.S_ISLNK(st.st_mode)
            if link:
                st = os.stat(path)
        except OSError:
            found.subtrees.add(path)  # gone: perhaps a directory of known files
            return
        if stat.S_ISREG(st.st_mode) and path.name.endswith(SUFFIXES):
            found.signatures[path] = _signature(st, now)
            if link:
                found.symlinks.add(path)

    def _read_changed(self, signatures: dict[Path, Signature]) -> dict[Path, _Read | None]:
        reads: dict[Path, _Read | None] = {}
        for path, signature in signatures.items():
            state = self._files.get(path)
            if state is None or signature is None or state.signature != signature:
                reads[path] = _read(path, signature, state.digest if state else None)
        return reads

    def _gone(self, found: _Pass) -> list[Path]:
        """Known files that ``found`` shows are gone."""
        if found.complete:
            return [p for p in self._files if p not in found.signatures]
        gone = [p for p in found.checked if p in self._files and p not in found.signatures]
        directories = [p for p in found.subtrees if p not in self._files]
        if directories:
            prefixes = tuple(f"{d}{os.sep}" for d in directories)
            gone.extend(
                p
                for p in self._files
                if p not in found.signatures
                and p not in found.checked
                and str(p).startswith(prefixes)
            )
        return gone

    def _merge(self, found: _Pass) -> list[WatchEvent]:
        """Stage 2 (on the loop): fold a pass into the state and diff what is handed on."""
        if found.root_exists:
            self.errors.pop(self.directory, None)
        elif self.directory not in self.errors:
            self.errors[self.directory] = "no such directory"
            log.warning("manifests_directory_missing", path=str(self.directory))
        affected: set[ObjectId] = set()
        for path in self._gone(found):
            affected.update(self._replace(path, {}))
            del self._files[path]
            self.errors.pop(path, None)
            self._symlinks.discard(path)
            self._recheck.discard(path)
        if found.complete:
            self._symlinks = set(found.symlinks)
        else:
            for path in found.signatures:
                if path in found.symlinks:
                    self._symlinks.add(path)
                else:
                    self._symlinks.discard(path)
        for path in sorted(found.reads):
            read = found.reads[path]
            if read is None:
                continue
            if read.signature is None:
                self._recheck.add(path)
            else:
                self._recheck.discard(path)
            state = self._files.setdefault(path, _FileState(read.signature, read.digest, {}))
            state.signature = read.signature
            if read.unchanged:
                continue
            state.digest = read.digest
            if read.objects is None:
                error = read.error or "unreadable"
                log.warning("manifest_invalid", path=str(path), error=error)
                self.errors[path] = error
                continue
            self.errors.pop(path, None)
            for warning in read.warnings:
                log.warning("manifest_duplicate_object", path=str(path), detail=warning)
            affected.update(self._replace(path, read.objects))
        return self._diff(affected)

    def _replace(self, path: Path, objects: dict[ObjectId, KubeObject]) -> set[ObjectId]:
        """Make ``objects`` the file's objects; return the identities that may have changed."""
        state = self._files.get(path)
        old = state.objects if state is not None else {}
        for oid in old.keys() - objects.keys():
            definers = self._definers[oid]
            definers.remove(path)
            if not definers:
                del self._definers[oid]
        for oid in objects.keys() - old.keys():
            bisect.insort(self._definers.setdefault(oid, []), path)
        if state is not None:
            state.objects = objects
        return old.keys() | objects.keys()

    def _diff(self, affected: set[ObjectId]) -> list[WatchEvent]:
        events: list[WatchEvent] = []
        for oid in sorted(affected, key=lambda o: (_KIND_ORDER.get(o[0], len(_KIND_ORDER)), o)):
            definers = self._definers.get(oid)
            previous = self._current.get(oid)
            if not definers:
                if previous is not None:
                    del self._current[oid]
                    events.append(WatchEvent(EventType.DELETED, previous[1]))
                continue
            if len(definers) > 1:
                log.warning(
                    "manifest_duplicate_object",
                    object=_describe(oid),
                    used=str(definers[0]),
                    ignored=[str(p) for p in definers[1:]],
                )
            raw = self._files[definers[0]].objects[oid]
            if previous is not None and previous[0] == raw:
                continue
            handed = self._decorate(oid, raw)
            self._current[oid] = (raw, handed)
            kind = EventType.ADDED if previous is None else EventType.MODIFIED
            events.append(WatchEvent(kind, handed))
        return events

    def _decorate(self, oid: ObjectId, raw: KubeObject) -> KubeObject:
        """A shallow copy with the metadata the API server would have set."""
        meta = dict(raw["metadata"])
        self._version += 1
        meta["resourceVersion"] = str(self._version)
        if not meta.get("creationTimestamp"):
            first_seen = self._first_seen.get(oid)
            if first_seen is None:
                stamp = datetime.fromtimestamp(self._wall_clock(), UTC)
                first_seen = self._first_seen[oid] = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
            meta["creationTimestamp"] = first_seen
        if not meta.get("uid"):
            meta["uid"] = str(uuid.uuid5(_UID_NAMESPACE, "/".join(oid)))
        return {**raw, "metadata": meta}
