"""The Store: one cache per kind, the indexes between them, and the filter deciding what matters.

    source --WatchEvent--> Store.apply()
        1. kind from ``object["kind"]`` (other kinds: counted in ``ignored``, dropped);
           the object compacted (``ingressd.store.compacting``)
        2. cache update: ADDED / MODIFIED replace the object under its key, DELETED removes it
        3. index update: service -> ingresses, secret -> ingresses (from each Ingress),
                         service -> EndpointSlices (from each slice's service-name label)
        4. relevance: could this change alter what nginx does?  no -> return None
        5. StoreEvent --channel.put_nowait()--> updateChannel (and returned to the caller)
    sync worker --Store.snapshot()--> Snapshot (shallow copies, cheap)

Objects are stored as given, never copied: the caller hands the object over and must not mutate
it afterwards.  On arrival the Store compacts it in place (``compacting``: bookkeeping dropped,
recurring small parts shared); once stored it never mutates one; it replaces it, so a Snapshot
stays valid.

Relevance, per kind (a MODIFIED is compared with the cached object it replaces):

- Ingress: unless ``spec``, ``metadata.annotations`` and ``metadata.creationTimestamp`` are all
  unchanged (status-only updates emit nothing).
- IngressClass: unless ``spec`` and ``metadata.annotations`` are unchanged.
- Service: when an Ingress references it and it appeared, vanished or changed its ``spec``.
- EndpointSlice: when an Ingress references its Service and its endpoint content
  (``references.slice_content``) changed, or it moved between Services, appeared or vanished.
- Secret: when an Ingress's ``spec.tls`` references it and it appeared, vanished or changed its
  ``data`` or ``type``.
- Service and EndpointSlice: likewise when a tcp/udp services ConfigMap entry names it.
- ConfigMap: when it is the controller's ConfigMap, a tcp/udp services one, one that the
  controller's ConfigMap names (``add-headers``, ``proxy-set-headers``) or one an Ingress's
  annotations name (``auth-proxy-set-headers``, ``custom-headers``), and it appeared, vanished
  or changed its ``data`` or ``binaryData``.

The emitted type follows the cache, not the source: an ADDED for a cached key is a MODIFIED, a
MODIFIED for an unknown key an ADDED; a DELETED of an unknown key emits nothing.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any, Protocol

from ingressd.model import ObjectKey
from ingressd.store import keyindex
from ingressd.store.compacting import Compactor
from ingressd.store.events import EventType, Kind, StoreEvent, WatchEvent
from ingressd.store.references import (
    configmap_header_refs,
    ingress_configmap_keys,
    ingress_secret_keys,
    ingress_service_keys,
    object_key,
    slice_content,
    slice_service_key,
    stream_service_keys,
)
from ingressd.store.snapshot import ChangeLog, KubeObject, LoggedMap, Snapshot

_ADDED = EventType.ADDED
_MODIFIED = EventType.MODIFIED
_DELETED = EventType.DELETED

#: ``kind`` -> (Kind, the apiVersion the Store understands, namespaced?)
_KINDS: dict[str, tuple[Kind, str, bool]] = {
    "Ingress": (Kind.INGRESS, "networking.k8s.io/v1", True),
    "IngressClass": (Kind.INGRESS_CLASS, "networking.k8s.io/v1", False),
    "Service": (Kind.SERVICE, "v1", True),
    "EndpointSlice": (Kind.ENDPOINT_SLICE, "discovery.k8s.io/v1", True),
    "Secret": (Kind.SECRET, "v1", True),
    "ConfigMap": (Kind.CONFIG_MAP, "v1", True),
}


class EventChannel(Protocol):
    """Where the Store puts its events (``ingressd.pipeline.channel.UpdateChannel``)."""

    def put_nowait(self, event: StoreEvent) -> None: ...


@dataclass(slots=True)
class _CachedSlice:
    """An EndpointSlice with the Service it belongs to (derived once, at apply time)."""

    object: KubeObject
    service: ObjectKey | None


def _meta(obj: KubeObject) -> dict[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


_Users = keyindex.Entry
_add_ref = keyindex.add
_remove_ref = keyindex.discard


class _Either:
    """Membership in either of two containers (Services Ingresses use, stream entries use)."""

    __slots__ = ("a", "b")

    def __init__(self, a: Container[ObjectKey], b: Container[ObjectKey]) -> None:
        self.a, self.b = a, b

    def __contains__(self, key: object) -> bool:
        return key in self.a or key in self.b


#: The user of the ``--default-backend-service`` Service in the service index (no Ingress).
DEFAULT_BACKEND_USER = ObjectKey("--default-backend-service")


def _users(index: dict[ObjectKey, _Users], target: ObjectKey) -> frozenset[ObjectKey]:
    return frozenset(keyindex.members(index, target))


class Store:
    """Caches, indexes and the relevance filter between the sources and the updateChannel."""

    def __init__(
        self,
        *,
        channel: EventChannel,
        configmap: ObjectKey | None = None,
        stream_configmaps: tuple[ObjectKey, ...] = (),
        default_backend: ObjectKey | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._channel = channel
        self._configmap = configmap
        #: The tcp/udp services ConfigMaps, and the Services their entries name (by ConfigMap).
        self._stream_configmaps = frozenset(stream_configmaps)
        self._stream_refs: dict[ObjectKey, frozenset[ObjectKey]] = {}
        self._stream_services: frozenset[ObjectKey] = frozenset()
        self._clock = clock
        #: Objects of kinds the Store does not cache, by ``kind`` (``Kind (apiVersion)`` for a
        #: cached kind in an apiVersion the Store does not understand).
        self.ignored: Counter[str] = Counter()
        #: Objects of a cached kind dropped because they carry no usable ``metadata.name``.
        self.rejected = 0
        self._ingresses: dict[ObjectKey, KubeObject] = {}
        self._ingress_classes: dict[ObjectKey, KubeObject] = {}
        self._services: dict[ObjectKey, KubeObject] = {}
        self._slices: dict[ObjectKey, _CachedSlice] = {}
        self._secrets: dict[ObjectKey, KubeObject] = {}
        self._config_maps: dict[ObjectKey, KubeObject] = {}
        self._compactor = Compactor()
        #: What changed in each mapping a snapshot copies (``snapshot.LoggedMap``).
        self._ingresses_log = ChangeLog()
        self._services_log = ChangeLog()
        self._slice_tuples_log = ChangeLog()
        self._secrets_log = ChangeLog()
        # Ingress key -> (Service keys, Secret keys) it referenced when last applied (tuples:
        # a tenth of the memory of frozensets, and most hold one key).
        self._ingress_refs: dict[
            ObjectKey, tuple[tuple[ObjectKey, ...], tuple[ObjectKey, ...]]
        ] = {}
        self._service_users: dict[ObjectKey, _Users] = {}
        if default_backend is not None:
            # --default-backend-service: its Service and slices matter with no Ingress naming it
            _add_ref(self._service_users, default_backend, DEFAULT_BACKEND_USER)
        self._secret_users: dict[ObjectKey, _Users] = {}
        # ConfigMaps Ingresses name (auth-proxy-set-headers, custom-headers): Ingress -> keys,
        # key -> users; and those the controller's ConfigMap names (add-headers, ...).
        self._ingress_configmaps: dict[ObjectKey, frozenset[ObjectKey]] = {}
        self._configmap_users: dict[ObjectKey, _Users] = {}
        self._global_config_maps: frozenset[ObjectKey] = frozenset()
        # Service key -> slice key -> slice; the snapshot's sorted tuples, rebuilt lazily for
        # the services in ``_stale_services``.
        self._slices_by_service: dict[ObjectKey, dict[ObjectKey, KubeObject]] = {}
        self._slice_tuples: dict[ObjectKey, tuple[KubeObject, ...]] = {}
        self._stale_services: set[ObjectKey] = set()
        self._appliers: dict[Kind, Callable[[EventType, ObjectKey, KubeObject], EventType | None]]
        self._appliers = {
            Kind.INGRESS: self._apply_ingress,
            Kind.INGRESS_CLASS: self._apply_ingress_class,
            Kind.SERVICE: self._apply_service,
            Kind.ENDPOINT_SLICE: self._apply_slice,
            Kind.SECRET: self._apply_secret,
            Kind.CONFIG_MAP: self._apply_config_map,
        }

    # -- the entry point -------------------------------------------------------------------------

    def apply(self, event: WatchEvent, *, received_at: float | None = None) -> StoreEvent | None:
        """Update the caches from ``event``; emit and return a StoreEvent when it is relevant.

        ``received_at`` is when the source got the change (``clock()`` when not given).  The
        object is kept as-is: the caller must not mutate it afterwards.
        """
        obj = event.object
        kind_name = obj.get("kind")
        spec = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if spec is None:
            self.ignored[str(kind_name)] += 1
            return None
        kind, api_version, namespaced = spec
        given_version = obj.get("apiVersion")
        if given_version is not None and given_version != api_version:
            self.ignored[f"{kind_name} ({given_version})"] += 1
            return None
        key = object_key(obj, namespaced=namespaced)
        if key is None:
            self.rejected += 1
            return None
        if event.type is not _DELETED:
            self._compactor.compact(kind, obj)
        emitted = self._appliers[kind](event.type, key, obj)
        if emitted is None:
            return None
        store_event = StoreEvent(
            kind, emitted, key, self._clock() if received_at is None else received_at
        )
        self._channel.put_nowait(store_event)
        return store_event

    # -- per kind: update the cache, return the type to emit or None -----------------------------

    def _apply_ingress(self, type_: EventType, key: ObjectKey, obj: KubeObject) -> EventType | None:
        if type_ is _DELETED:
            if self._ingresses.pop(key, None) is None:
                return None
            self._ingresses_log.note(key)
            self._set_ingress_refs(key, frozenset(), frozenset())
            self._set_configmap_refs(key, frozenset())
            return _DELETED
        old = self._ingresses.get(key)
        self._ingresses[key] = obj
        self._ingresses_log.note(key)
        self._set_ingress_refs(key, ingress_service_keys(obj), ingress_secret_keys(obj))
        self._set_configmap_refs(key, ingress_configmap_keys(obj))
        if old is None:
            return _ADDED
        old_meta, new_meta = _meta(old), _meta(obj)
        if (
            old.get("spec") == obj.get("spec")
            and old_meta.get("annotations") == new_meta.get("annotations")
            and old_meta.get("creationTimestamp") == new_meta.get("creationTimestamp")
        ):
            return None
        return _MODIFIED

    def _set_ingress_refs(
        self, key: ObjectKey, services: frozenset[ObjectKey], secrets: frozenset[ObjectKey]
    ) -> None:
        old = self._ingress_refs.get(key)
        old_services = frozenset(old[0]) if old else frozenset()
        old_secrets = frozenset(old[1]) if old else frozenset()
        if old_services != services:
            for service in old_services - services:
                _remove_ref(self._service_users, service, key)
            for service in services - old_services:
                _add_ref(self._service_users, service, key)
        if old_secrets != secrets:
            for secret in old_secrets - secrets:
                _remove_ref(self._secret_users, secret, key)
            for secret in secrets - old_secrets:
                _add_ref(self._secret_users, secret, key)
        if services or secrets:
            self._ingress_refs[key] = (tuple(services), tuple(secrets))
        else:
            self._ingress_refs.pop(key, None)

    def _set_configmap_refs(self, key: ObjectKey, config_maps: frozenset[ObjectKey]) -> None:
        old = self._ingress_configmaps.get(key, frozenset())
        if old == config_maps:
            return
        for config_map in old - config_maps:
            _remove_ref(self._configmap_users, config_map, key)
        for config_map in config_maps - old:
            _add_ref(self._configmap_users, config_map, key)
        if config_maps:
            self._ingress_configmaps[key] = config_maps
        else:
            self._ingress_configmaps.pop(key, None)

    def _config_map_used(self, key: ObjectKey) -> bool:
        return (
            key == self._configmap
            or key in self._global_config_maps
            or key in self._configmap_users
        )

    def _apply_ingress_class(
        self, type_: EventType, key: ObjectKey, obj: KubeObject
    ) -> EventType | None:
        if type_ is _DELETED:
            return _DELETED if self._ingress_classes.pop(key, None) is not None else None
        old = self._ingress_classes.get(key)
        self._ingress_classes[key] = obj
        if old is None:
            return _ADDED
        if old.get("spec") == obj.get("spec") and _meta(old).get("annotations") == _meta(obj).get(
            "annotations"
        ):
            return None
        return _MODIFIED

    def _apply_service(self, type_: EventType, key: ObjectKey, obj: KubeObject) -> EventType | None:
        if type_ is _DELETED:
            if self._services.pop(key, None) is None:
                return None
            self._services_log.note(key)
            return _DELETED if self._service_used(key) else None
        old = self._services.get(key)
        self._services[key] = obj
        self._services_log.note(key)
        if not self._service_used(key):
            return None
        if old is None:
            return _ADDED
        return None if old.get("spec") == obj.get("spec") else _MODIFIED

    def _service_used(self, key: ObjectKey) -> bool:
        return key in self._service_users or key in self._stream_services

    def _apply_slice(self, type_: EventType, key: ObjectKey, obj: KubeObject) -> EventType | None:
        users: Container[ObjectKey] = (
            _Either(self._service_users, self._stream_services)
            if self._stream_services
            else self._service_users
        )
        if type_ is _DELETED:
            gone = self._slices.pop(key, None)
            if gone is None:
                return None
            if gone.service is None:
                return None
            self._unindex_slice(gone.service, key)
            return _DELETED if gone.service in users else None
        service = slice_service_key(obj)
        old = self._slices.get(key)
        self._slices[key] = _CachedSlice(obj, service)
        if old is not None and old.service is not None and old.service != service:
            self._unindex_slice(old.service, key)
        if service is not None:
            by_service = self._slices_by_service.get(service)
            if by_service is None:
                self._slices_by_service[service] = {key: obj}
            else:
                by_service[key] = obj
            self._stale_services.add(service)
        if old is None:
            return _ADDED if service in users else None
        if old.service != service:
            return _MODIFIED if service in users or old.service in users else None
        if service not in users:
            return None
        return _MODIFIED if slice_content(obj) != slice_content(old.object) else None

    def _unindex_slice(self, service: ObjectKey, key: ObjectKey) -> None:
        by_service = self._slices_by_service.get(service)
        if by_service is not None:
            by_service.pop(key, None)
            if not by_service:
                del self._slices_by_service[service]
        self._stale_services.add(service)

    def _apply_secret(self, type_: EventType, key: ObjectKey, obj: KubeObject) -> EventType | None:
        if type_ is _DELETED:
            if self._secrets.pop(key, None) is None:
                return None
            self._secrets_log.note(key)
            return _DELETED if key in self._secret_users else None
        old = self._secrets.get(key)
        self._secrets[key] = obj
        self._secrets_log.note(key)
        if key not in self._secret_users:
            return None
        if old is None:
            return _ADDED
        if old.get("data") == obj.get("data") and old.get("type") == obj.get("type"):
            return None
        return _MODIFIED

    def _apply_config_map(
        self, type_: EventType, key: ObjectKey, obj: KubeObject
    ) -> EventType | None:
        streams = key in self._stream_configmaps
        if type_ is _DELETED:
            if self._config_maps.pop(key, None) is None:
                return None
            if streams:
                self._set_stream_refs(key, frozenset())
            used = self._config_map_used(key) or streams
            if key == self._configmap:
                self._global_config_maps = frozenset()
            return _DELETED if used else None
        old = self._config_maps.get(key)
        self._config_maps[key] = obj
        if key == self._configmap:
            self._global_config_maps = configmap_header_refs(obj)
        if streams:
            self._set_stream_refs(key, stream_service_keys(obj))
        if not self._config_map_used(key) and not streams:
            return None
        if old is None:
            return _ADDED
        if old.get("data") == obj.get("data") and old.get("binaryData") == obj.get("binaryData"):
            return None
        return _MODIFIED

    def _set_stream_refs(self, key: ObjectKey, services: frozenset[ObjectKey]) -> None:
        if services:
            self._stream_refs[key] = services
        else:
            self._stream_refs.pop(key, None)
        self._stream_services = frozenset().union(*self._stream_refs.values())

    # -- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The caches now, as shallow copies; later changes to the Store do not show in it."""
        if self._stale_services:
            for service in self._stale_services:
                by_service = self._slices_by_service.get(service)
                if by_service:
                    self._slice_tuples[service] = tuple(
                        by_service[key] for key in sorted(by_service)
                    )
                else:
                    self._slice_tuples.pop(service, None)
                self._slice_tuples_log.note(service)
            self._stale_services.clear()
        return Snapshot(
            ingresses=LoggedMap(self._ingresses, self._ingresses_log),
            ingress_classes=dict(self._ingress_classes),
            services=LoggedMap(self._services, self._services_log),
            endpoint_slices=LoggedMap(self._slice_tuples, self._slice_tuples_log),
            secrets=LoggedMap(self._secrets, self._secrets_log),
            config_maps=dict(self._config_maps),
        )

    def ingresses_using_service(self, key: ObjectKey) -> frozenset[ObjectKey]:
        """Keys of the cached Ingresses routing to Service ``key``."""
        return _users(self._service_users, key)

    def ingresses_using_secret(self, key: ObjectKey) -> frozenset[ObjectKey]:
        """Keys of the cached Ingresses whose ``spec.tls`` names Secret ``key``."""
        return _users(self._secret_users, key)

    def counts(self) -> dict[Kind, int]:
        """Cached objects per kind."""
        return {
            Kind.INGRESS: len(self._ingresses),
            Kind.INGRESS_CLASS: len(self._ingress_classes),
            Kind.SERVICE: len(self._services),
            Kind.ENDPOINT_SLICE: len(self._slices),
            Kind.SECRET: len(self._secrets),
            Kind.CONFIG_MAP: len(self._config_maps),
        }
