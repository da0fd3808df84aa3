"""A consistent, read-only view of the Store's caches, taken by the sync worker at sync start.

    Store caches --Store.snapshot()--> Snapshot --building.build_configuration()--> Configuration

Objects are the raw Kubernetes objects (dicts, as the API server sends them).  By convention nobody
mutates them: the Store replaces an object on change, it never edits one in place, so a snapshot
stays valid while the Store moves on, and what is derived from an object stays right for as long
as a snapshot holds that very object (the build's ``BuildCache`` relies on it).

Each of the Store's mappings is handed out as a ``LoggedMap``: the copy, its cache's
``ChangeLog`` and the log's position when the copy was made, so that the keys changed between
two snapshots are read from the log (``changed_keys``) instead of comparing every key.  A
mapping made otherwise (a plain dict: quarantine, tests) has no log, and is compared key by key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ingressd.model import ObjectKey

#: A Kubernetes object as JSON.
KubeObject = dict[str, Any]

_V = TypeVar("_V")


class ChangeLog:
    """The keys of one Store cache in the order they changed, the oldest forgotten first.

    A position is the count of changes noted so far; ``since(p, q)`` gives the keys noted
    between two positions, or None when the log has forgotten some of them.
    """

    __slots__ = ("_base", "_keys", "_limit")

    def __init__(self, limit: int = 8192) -> None:
        self._keys: list[ObjectKey] = []
        self._base = 0
        self._limit = limit

    @property
    def position(self) -> int:
        return self._base + len(self._keys)

    def note(self, key: ObjectKey) -> None:
        keys = self._keys
        keys.append(key)
        if len(keys) > self._limit:
            drop = len(keys) // 2
            del keys[:drop]
            self._base += drop

    def since(self, start: int, end: int) -> list[ObjectKey] | None:
        if start < self._base or end > self.position or start > end:
            return None
        return self._keys[start - self._base : end - self._base]


class LoggedMap(dict[ObjectKey, _V]):
    """A copy of a Store cache, with its log and the log's position at the copy."""

    __slots__ = ("log", "position")

    def __init__(self, items: Mapping[ObjectKey, _V], log: ChangeLog) -> None:
        super().__init__(items)
        self.log = log
        self.position = log.position


def changed_keys(
    old: Mapping[ObjectKey, Any], new: Mapping[ObjectKey, Any]
) -> set[ObjectKey] | None:
    """The keys whose object differs (by identity) between two copies of one Store cache, read
    from its log: the cost of the change, not of the size.  None when either copy has no log
    (or another), or the log forgot the changes between them."""
    if not (isinstance(old, LoggedMap) and isinstance(new, LoggedMap)) or old.log is not new.log:
        return None
    keys = old.log.since(old.position, new.position)
    if keys is None:
        return None
    return {key for key in keys if old.get(key) is not new.get(key)}


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The caches at one instant.

    Namespaced kinds are keyed ``namespace/name``; IngressClass (cluster-scoped) by its bare name.
    ``endpoint_slices`` is the Store's index: Service key -> the EndpointSlices labelled with
    ``kubernetes.io/service-name`` = that Service, in a stable order (by slice name).
    """

    ingresses: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    ingress_classes: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    services: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    endpoint_slices: Mapping[ObjectKey, tuple[KubeObject, ...]] = field(default_factory=dict)
    secrets: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    config_maps: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
