"""Compacting: what the Store keeps of an object, with the parts that recur shared.

    Store.apply --Compactor.compact(kind, object)--> the same object, compacted in place
        dropped   ``metadata.managedFields`` and kubectl's last-applied-configuration
                  annotation: bookkeeping nobody in ingressd reads, often half an object
        shared    small values that thousands of objects repeat (a Service's port list,
                  an Ingress's empty ``status``): one instance kept for all the equal ones

The object is the caller's no more once handed to the Store (``ingressd.store.store``), and
nobody mutates a stored object, so sharing equal parts between objects is safe.  The shared
instances are a bounded table: past its size, values are kept as they came.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ingressd.store.events import Kind
from ingressd.store.snapshot import KubeObject

__all__ = ["LAST_APPLIED", "Compactor"]

#: The annotation ``kubectl apply`` writes: the whole object again, as JSON.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class Compactor:
    """Compacts objects for one Store; owns the table of shared values."""

    def __init__(self, limit: int = 4096) -> None:
        self._shared: dict[Hashable, Any] = {}
        self._limit = limit

    def compact(self, kind: Kind, obj: KubeObject) -> None:
        meta = obj.get("metadata")
        if type(meta) is dict:
            if "managedFields" in meta:
                del meta["managedFields"]
            annotations = meta.get("annotations")
            if type(annotations) is dict and LAST_APPLIED in annotations:
                meta["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        # EndpointSlices are left as they came: they change most often, and sharing their
        # parts would cost more per event than the Store's own work (benchmarks/pipeline.py)
        if kind is Kind.SERVICE:
            spec = obj.get("spec")
            if type(spec) is dict:
                ports = spec.get("ports")
                if type(ports) is list:
                    spec["ports"] = self._share(ports)
        elif kind is Kind.INGRESS:
            status = obj.get("status")
            if type(status) is dict:
                obj["status"] = self._share(status)

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
