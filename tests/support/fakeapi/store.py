"""The fake API server's storage: objects by resource, one resourceVersion counter, watch history.

    create / update / patch / delete (HTTP handlers and Python-side control alike)
        --> ApiStore: objects[Resource][(namespace, name)]   (JSON copies in, JSON copies out)
            every write: resourceVersion += 1 (one global counter, like etcd's revision)
                         --> Change(rv, resource, type, object, previous) appended to the history
                         --> the ``changed`` asyncio.Event wakes every watch stream
    watch stream --changes_since(rv)--> the Changes after ``rv``, or None when ``rv`` is older
                                        than the retained history (the stream answers 410 Gone)

The history keeps the last ``history_size`` changes; ``compact()`` forgets all of it, as etcd
compaction does.  What the API server sets, the store sets: ``metadata.uid``,
``creationTimestamp``, ``resourceVersion`` (string ints), ``generation`` (1 on create, +1 when
anything outside ``metadata`` and ``status`` changes), ``namespace`` for namespaced kinds.
A write that changes nothing is a no-op: no new resourceVersion, no watch event.  On resources
with a ``status`` subresource a write to the object keeps the old ``.status`` and a write to
``/status`` changes only ``.status``.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from tests.support.fakeapi.machinery import ApiError, Selector, status

__all__ = ["RESOURCES", "ApiStore", "Change", "Resource", "find_resource"]

JSON = dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Resource:
    """One API resource: where it lives in the URL space and what its objects are called."""

    kind: str
    api_version: str  # "v1" or "group/version"
    plural: str
    namespaced: bool
    subresources: frozenset[str] = frozenset()

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def qualified(self) -> str:
        """``plural`` for the core group, ``plural.group`` otherwise (``kubectl``'s spelling)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def describe(self, name: str) -> str:
        return f'{self.qualified} "{name}"'


_STATUS = frozenset({"status"})

#: Every resource the fake API server serves.
RESOURCES: tuple[Resource, ...] = (
    Resource("Namespace", "v1", "namespaces", False, _STATUS),
    Resource("Node", "v1", "nodes", False, _STATUS),
    Resource("Pod", "v1", "pods", True, _STATUS),
    Resource("Service", "v1", "services", True, _STATUS),
    Resource("Secret", "v1", "secrets", True),
    Resource("ConfigMap", "v1", "configmaps", True),
    Resource("Event", "v1", "events", True),
    Resource("Ingress", "networking.k8s.io/v1", "ingresses", True, _STATUS),
    Resource("IngressClass", "networking.k8s.io/v1", "ingressclasses", False),
    Resource("EndpointSlice", "discovery.k8s.io/v1", "endpointslices", True),
    Resource("Lease", "coordination.k8s.io/v1", "leases", True),
    Resource("Event", "events.k8s.io/v1", "events", True),
)


def find_resource(kind: str, api_version: str | None = None) -> Resource:
    """The resource of ``kind`` (in ``api_version``; the first listed when not given).

    ``Event`` without an ``api_version`` is the core ``v1`` Event.
    """
    for resource in RESOURCES:
        if resource.kind == kind and api_version in (None, resource.api_version):
            return resource
    where = f" in {api_version}" if api_version else ""
    raise ApiError(status(404, "NotFound", f"the server does not serve kind {kind!r}{where}"))


@dataclass(slots=True)
class Change:
    """One write, as watch streams replay it."""

    rv: int
    resource: Resource
    type: str  # ADDED | MODIFIED | DELETED
    object: JSON
    #: The object before the write (MODIFIED only), for selector transitions.
    previous: JSON | None = None
    _line: bytes | None = field(default=None, repr=False)

    def line(self, type_: str | None = None) -> bytes:
        """The watch event as one JSON line (cached for the common case)."""
        if type_ is not None and type_ != self.type:
            return _event_line(type_, self.object)
        if self._line is None:
            self._line = _event_line(self.type, self.object)
        return self._line


def _event_line(type_: str, obj: JSON) -> bytes:
    return json.dumps({"type": type_, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _copy(obj: T) -> T:
    """A deep copy that is also proof the value is JSON."""
    return cast(T, json.loads(json.dumps(obj)))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _body(obj: JSON) -> JSON:
    """What ``generation`` tracks: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}


Key = tuple[str, str]  # (namespace or "", name)


class ApiStore:
    """Objects of every resource, the global resourceVersion and the change history."""

    def __init__(self, *, history_size: int = 10_000) -> None:
        self.history_size = history_size
        self._objects: dict[Resource, dict[Key, JSON]] = {r: {} for r in RESOURCES}
        self._rv = 0
        self._history: list[Change] = []
        # The history holds every change with rv > _oldest.
        self._oldest = 0
        self._changed: asyncio.Event | None = None

    # -- the counter and the history ------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def oldest_resource_version(self) -> int:
        """A watch may start from any resourceVersion >= this one."""
        return self._oldest

    @property
    def changed(self) -> asyncio.Event:
        """Set on the next write (then replaced): grab it before reading the history."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def changes_since(self, rv: int) -> list[Change] | None:
        """Every change after ``rv``; ``None`` when some of them are no longer retained."""
        if rv < self._oldest:
            return None
        start = bisect.bisect_right(self._history, rv, key=lambda c: c.rv)
        return self._history[start:]

    def compact(self) -> None:
        """Forget the whole history: a watch from any older resourceVersion gets 410 Gone."""
        self._history.clear()
        self._oldest = self._rv

    def _record(self, resource: Resource, type_: str, obj: JSON, previous: JSON | None) -> None:
        self._history.append(Change(self._rv, resource, type_, obj, previous))
        excess = len(self._history) - self.history_size
        if excess > 0:
            self._oldest = self._history[excess - 1].rv
            del self._history[:excess]
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # -- reads ----------------------------------------------------------------------------------

    def _key(self, resource: Resource, namespace: str | None, name: str) -> Key:
        return (namespace or "default", name) if resource.namespaced else ("", name)

    def _not_found(self, resource: Resource, name: str) -> ApiError:
        return ApiError(
            status(
                404,
                "NotFound",
                f"{resource.describe(name)} not found",
                name=name,
                group=resource.group,
                kind=resource.plural,
            )
        )

    def get(self, resource: Resource, namespace: str | None, name: str) -> JSON:
        obj = self._objects[resource].get(self._key(resource, namespace, name))
        if obj is None:
            raise self._not_found(resource, name)
        return _copy(obj)

    def list(
        self,
        resource: Resource,
        namespace: str | None = None,
        selectors: Iterable[Selector] = (),
    ) -> tuple[list[JSON], int]:
        """Matching objects sorted by (namespace, name), copied, and the resourceVersion now."""
        chosen = list(selectors)
        items = [
            _copy(obj)
            for key, obj in sorted(self._objects[resource].items())
            if (namespace is None or key[0] == namespace) and all(s.matches(obj) for s in chosen)
        ]
        return items, self._rv

    # -- writes ---------------------------------------------------------------------------------

    def _prepare(self, resource: Resource, namespace: str | None, obj: JSON) -> JSON:
        if not isinstance(obj, dict):
            raise ApiError(status(400, "BadRequest", "the body must be a JSON object"))
        obj = _copy(obj)
        given_kind = obj.get("kind")
        if given_kind not in (None, resource.kind) or obj.get("apiVersion") not in (
            None,
            resource.api_version,
        ):
            raise ApiError(
                status(
                    400,
                    "BadRequest",
                    f"the API version in the data ({obj.get('apiVersion')}) and kind "
                    f"({given_kind}) do not match {resource.api_version} {resource.kind}",
                )
            )
        obj = {"kind": resource.kind, "apiVersion": resource.api_version, **obj}
        meta = _meta(obj)
        if resource.namespaced:
            given = meta.get("namespace")
            if namespace and given and given != namespace:
                raise ApiError(
                    status(
                        400,
                        "BadRequest",
                        "the namespace of the provided object does not match the namespace sent "
                        "on the request",
                    )
                )
            meta["namespace"] = namespace or given or "default"
        else:
            meta.pop("namespace", None)
        return obj

    def create(self, resource: Resource, namespace: str | None, obj: JSON) -> JSON:
        """Store a new object; 409 AlreadyExists when its name is taken."""
        obj = self._prepare(resource, namespace, obj)
        meta = _meta(obj)
        name = meta.get("name")
        if not name and meta.get("generateName"):
            name = meta["name"] = f"{meta['generateName']}{secrets.token_hex(3)[:5]}"
        if not isinstance(name, str) or not name:
            raise ApiError(
                status(
                    422,
                    "Invalid",
                    f'{resource.kind} "" is invalid: metadata.name: Required value: name or '
                    "generateName is required",
                    kind=resource.plural,
                    group=resource.group,
                )
            )
        key = self._key(resource, meta.get("namespace"), name)
        if key in self._objects[resource]:
            raise ApiError(
                status(
                    409,
                    "AlreadyExists",
                    f"{resource.describe(name)} already exists",
                    name=name,
                    group=resource.group,
                    kind=resource.plural,
                )
            )
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta.pop("deletionTimestamp", None)
        meta["resourceVersion"] = self._next_rv()
        self._objects[resource][key] = obj
        self._record(resource, "ADDED", obj, None)
        return _copy(obj)

    def update(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        obj: JSON,
        *,
        subresource: str = "",
        check_version: bool = True,
    ) -> JSON:
        """Replace an object (or its ``.status``); 409 Conflict on a stale resourceVersion.

        ``subresource``: ``""`` keeps the stored ``.status`` on kinds with a status subresource,
        ``"status"`` changes only ``.status``, ``"*"`` takes the whole object as given (the
        Python-side ``update``, with ``check_version=False``: whatever is stored is replaced).
        """
        obj = self._prepare(resource, namespace, obj)
        meta = _meta(obj)
        if meta.get("name", name) != name:
            raise ApiError(
                status(
                    400,
                    "BadRequest",
                    f"the name of the object ({meta.get('name')}) does not match the name on the "
                    f"URL ({name})",
                )
            )
        key = self._key(resource, meta.get("namespace"), name)
        old = self._objects[resource].get(key)
        if old is None:
            raise self._not_found(resource, name)
        old_meta = old["metadata"]
        given_rv = meta.get("resourceVersion")
        if check_version and given_rv and given_rv != old_meta["resourceVersion"]:
            raise ApiError(
                status(
                    409,
                    "Conflict",
                    f"Operation cannot be fulfilled on {resource.describe(name)}: the object has "
                    "been modified; please apply your changes to the latest version and try again",
                    name=name,
                    group=resource.group,
                    kind=resource.plural,
                )
            )
        if subresource == "status":
            new = _copy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
        else:
            new = obj
            if subresource != "*" and "status" in resource.subresources:
                if "status" in old:
                    new["status"] = _copy(old["status"])
                else:
                    new.pop("status", None)
            new_meta = new["metadata"]
            new_meta["name"] = name
            for field_name in ("uid", "creationTimestamp", "generation"):
                if field_name in old_meta:
                    new_meta[field_name] = old_meta[field_name]
            if _body(new) != _body(old):
                new_meta["generation"] = int(old_meta.get("generation", 0)) + 1
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]
        if new == old:
            return _copy(old)
        new["metadata"]["resourceVersion"] = self._next_rv()
        self._objects[resource][key] = new
        self._record(resource, "MODIFIED", new, old)
        return _copy(new)

    def patch(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        apply_patch: Callable[[JSON], Any],
        *,
        subresource: str = "",
    ) -> JSON:
        """Patch an object: ``apply_patch(current) -> new``, then an update with its checks."""
        current = self.get(resource, namespace, name)
        patched = apply_patch(current)
        if not isinstance(patched, dict):
            raise ApiError(status(422, "Invalid", "the patched object is not a JSON object"))
        return self.update(resource, namespace, name, patched, subresource=subresource)

    def delete(
        self,
        resource: Resource,
        namespace: str | None,
        name: str,
        *,
        preconditions: JSON | None = None,
    ) -> JSON:
        """Remove an object; the DELETED event carries it at a new resourceVersion."""
        key = self._key(resource, namespace, name)
        old = self._objects[resource].get(key)
        if old is None:
            raise self._not_found(resource, name)
        for field_name in ("resourceVersion", "uid"):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != old["metadata"].get(field_name):
                raise ApiError(
                    status(
                        409,
                        "Conflict",
                        f"Operation cannot be fulfilled on {resource.describe(name)}: "
                        f"Precondition failed: {field_name}: {wanted}, "
                        f"actual: {old['metadata'].get(field_name)}",
                        name=name,
                        group=resource.group,
                        kind=resource.plural,
                    )
                )
        del self._objects[resource][key]
        gone = _copy(old)
        gone["metadata"]["resourceVersion"] = self._next_rv()
        self._record(resource, "DELETED", gone, None)
        return _copy(gone)
