"""The manifests-directory source: YAML/JSON files on disk -> watch-shaped events for the Store.

    directory --walk (stat signatures)--> changed files --parse--> objects per file (last good)
      --merge (first file in sorted path order wins)--> objects by identity
      --diff with what was last handed on--> WatchEvent(ADDED | MODIFIED | DELETED) --> sink

``load_once(sink)`` runs one pass synchronously (``ingressd render`` and the first load);
``run(sink)`` repeats a pass every ``poll_interval`` seconds until cancelled, reading and parsing
in a worker thread and calling ``sink`` on the event loop.

- Files: ``*.yaml``, ``*.yml``, ``*.json`` anywhere under the directory; names starting with ``.``
  (files and directories) are skipped, as are symlinked directories (symlinked files are read).
- A file changed when its signature ``(mtime_ns, size, inode)`` did; a file written within the
  last ``_RACY_NS`` is read again next pass, as a same-size rewrite in the same timestamp tick
  would not change its signature.
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
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
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

#: Files modified less than this long before a pass are read again on the next pass.
_RACY_NS = 100_000_000

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
        over = _over_limits(doc)
        if over is not None:
            raise ManifestError(f"document {number}: {over}")
        for where, raw in _expand(doc, f"document {number}"):
            oid, obj = _normalize(raw, where)
            if oid in objects:
                warnings.append(f"{where}: {_describe(oid)} defined again; the first one is used")
                continue
            objects[oid] = obj
    return objects, warnings


def _over_limits(doc: Any) -> str | None:
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


def _walk(root: Path) -> dict[Path, Signature]:
    now = time.time_ns()
    found: dict[Path, Signature] = {}
    pending = [root]
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
                    racy = now - st.st_mtime_ns < _RACY_NS
                    found[Path(entry.path)] = (
                        None if racy else (st.st_mtime_ns, st.st_size, st.st_ino)
                    )
    return found


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
    """What one pass found: every file's signature, and the changed files parsed."""

    root_exists: bool
    signatures: dict[Path, Signature]
    reads: dict[Path, _Read | None]


@dataclass(slots=True)
class _FileState:
    signature: Signature
    #: sha256 of the bytes last read (parsed or not).
    digest: bytes
    #: Objects of the last version that parsed.
    objects: dict[ObjectId, KubeObject]


# -- the source --------------------------------------------------------------------------------


class ManifestsSource:
    """Watches a manifests directory by polling and hands its objects' changes to a sink."""

    def __init__(
        self,
        directory: Path,
        *,
        poll_interval: float = 0.2,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.poll_interval = poll_interval
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
        #: Passes of ``run`` completed (their changes handed on): a file written before pass
        #: N started has been seen once ``passes`` reaches N.
        self.passes = 0

    def load_once(self, sink: Sink) -> None:
        """One pass, synchronously: hand every change since the last pass to ``sink``.

        The first call hands on every object as ADDED.
        """
        for event in self._merge(self._scan()):
            sink(event)

    async def run(self, sink: Sink) -> None:
        """Pass after pass, every ``poll_interval`` seconds, until cancelled.

        Files are read and parsed in a worker thread; the state is updated and ``sink`` called on
        the event loop, so a cancellation never loses a change.  Do not call ``load_once`` while
        this runs.
        """
        while True:
            found = await asyncio.to_thread(self._scan)
            for event in self._merge(found):
                sink(event)
            self.passes += 1
            await asyncio.sleep(self.poll_interval)

    def _scan(self) -> _Pass:
        """Stage 1 (no state changes, may run in a thread): find and parse changed files."""
        root_exists = self.directory.is_dir()
        signatures = _walk(self.directory) if root_exists else {}
        reads: dict[Path, _Read | None] = {}
        for path, signature in signatures.items():
            state = self._files.get(path)
            if state is None or signature is None or state.signature != signature:
                reads[path] = _read(path, signature, state.digest if state else None)
        return _Pass(root_exists, signatures, reads)

    def _merge(self, found: _Pass) -> list[WatchEvent]:
        """Stage 2 (on the loop): fold a pass into the state and diff what is handed on."""
        if found.root_exists:
            self.errors.pop(self.directory, None)
        elif self.directory not in self.errors:
            self.errors[self.directory] = "no such directory"
            log.warning("manifests_directory_missing", path=str(self.directory))
        affected: set[ObjectId] = set()
        for path in [p for p in self._files if p not in found.signatures]:
            affected.update(self._replace(path, {}))
            del self._files[path]
            self.errors.pop(path, None)
        for path in sorted(found.reads):
            read = found.reads[path]
            if read is None:
                continue
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
