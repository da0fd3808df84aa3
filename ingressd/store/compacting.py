"""Compacting: what the Store keeps of an object, with the parts that recur shared.

    Store.apply --Compactor.compact(kind, object)--> the same object, compacted in place
        dropped   ``metadata.managedFields``, ``ownerReferences`` and kubectl's
                  last-applied-configuration annotation: bookkeeping nobody in ingressd
                  reads, often half an object; ``uid``, ``creationTimestamp`` and
                  ``generation`` but of Ingresses; of an EndpointSlice also what only the
                  cluster reads (below)
        shared    small values that thousands of objects repeat (a Service's or an
                  EndpointSlice's port list, an endpoint's conditions, an Ingress's empty
                  ``status``, a namespace's name): one instance kept for all the equal ones

An EndpointSlice keeps ``addressType``, ``ports`` and, of each endpoint, ``addresses`` and
``conditions``: what ``ingressd.build.reading`` reads.  Of its metadata it keeps the name,
namespace, resourceVersion and the ``kubernetes.io/service-name`` label (the Store's index);
``uid``, timestamps, other labels and annotations, and each endpoint's ``targetRef``,
``nodeName``, ``zone`` and ``hints`` (over half of a real slice) are dropped.

The object is the caller's no more once handed to the Store (``ingressd.store.store``), and
nobody mutates a stored object, so sharing equal parts between objects is safe.  The shared
instances are a bounded table: past its size, values are kept as they came.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import Any

from ingressd.store.events import Kind
from ingressd.store.references import SERVICE_NAME_LABEL
from ingressd.store.snapshot import KubeObject

__all__ = ["LAST_APPLIED", "Compactor"]

#: The annotation ``kubectl apply`` writes: the whole object again, as JSON.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"

#: Metadata nobody in ingressd reads, of any kind.
_BOOKKEEPING = ("managedFields", "ownerReferences", "selfLink")
#: ... and of any kind but Ingress, whose uid names it in Events and whose creation time
#: orders it among others claiming the same host.
_UNREAD_METADATA = (*_BOOKKEEPING, "uid", "creationTimestamp", "generation")

#: What the Store keeps of an EndpointSlice's metadata and of each of its endpoints.
_SLICE_METADATA = frozenset({"name", "namespace", "resourceVersion", "labels"})
_ENDPOINT_FIELDS = frozenset({"addresses", "conditions"})


class Compactor:
    """Compacts objects for one Store; owns the table of shared values."""

    def __init__(self, limit: int = 4096) -> None:
        self._shared: dict[Hashable, Any] = {}
        self._limit = limit

    def compact(self, kind: Kind, obj: KubeObject) -> None:
        meta = obj.get("metadata")
        if type(meta) is dict:
            if kind is Kind.ENDPOINT_SLICE:
                meta = obj["metadata"] = _slice_metadata(meta)
            else:
                for field in _UNREAD_METADATA if kind is not Kind.INGRESS else _BOOKKEEPING:
                    meta.pop(field, None)
                annotations = meta.get("annotations")
                if type(annotations) is dict and LAST_APPLIED in annotations:
                    meta["annotations"] = {
                        k: v for k, v in annotations.items() if k != LAST_APPLIED
                    }
            namespace = meta.get("namespace")
            if type(namespace) is str:
                meta["namespace"] = sys.intern(namespace)
        if kind is Kind.ENDPOINT_SLICE:
            self._compact_slice(obj)
        elif kind is Kind.SERVICE:
            spec = obj.get("spec")
            if type(spec) is dict:
                ports = spec.get("ports")
                if type(ports) is list:
                    spec["ports"] = self._share(ports)
        elif kind is Kind.INGRESS:
            status = obj.get("status")
            if type(status) is dict:
                obj["status"] = self._share(status)

    def _compact_slice(self, obj: KubeObject) -> None:
        ports = obj.get("ports")
        if type(ports) is list:
            obj["ports"] = self._share(ports)
        endpoints = obj.get("endpoints")
        if type(endpoints) is not list:
            return
        for i, endpoint in enumerate(endpoints):
            if type(endpoint) is not dict:
                continue
            if endpoint.keys() - _ENDPOINT_FIELDS:
                endpoint = endpoints[i] = {
                    k: v for k, v in endpoint.items() if k in _ENDPOINT_FIELDS
                }
            conditions = endpoint.get("conditions")
            if type(conditions) is dict:
                endpoint["conditions"] = self._share(conditions)

    def _share(self, value: Any) -> Any:
        """The shared instance equal to ``value`` (a flat dict, a list of flat dicts, or a
        dict of empty dicts), or ``value`` itself."""
        key = _frozen(value)
        if key is None:
            return value
        found = self._shared.get(key)
        if found is not None:
            return found
        if len(self._shared) < self._limit:
            self._shared[key] = value
        return value


def _frozen(value: Any) -> Hashable | None:
    """A hashable stand-in for a small JSON value (``True`` and ``1`` kept apart); None for
    any other."""
    if type(value) is dict:
        items = []
        for k, v in value.items():
            kind = type(v)
            if kind is dict:
                if v:
                    return None
                items.append((k, dict, None))
            elif kind is str or kind is bool or kind is int or v is None:
                items.append((k, kind, v))  # the type: True and 1 are equal, not one value
            else:
                return None
        return tuple(items)
    if type(value) is list and len(value) <= 16:
        parts = tuple(_frozen(item) for item in value)
        return None if None in parts else parts
    return None


def _slice_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """What the Store keeps of an EndpointSlice's metadata: ``_SLICE_METADATA``, of the labels
    only the Service's name."""
    kept = {k: v for k, v in meta.items() if k in _SLICE_METADATA}
    labels = kept.get("labels")
    if type(labels) is dict and len(labels) > 1:
        service = labels.get(SERVICE_NAME_LABEL)
        kept["labels"] = {} if service is None else {SERVICE_NAME_LABEL: service}
    return kept
