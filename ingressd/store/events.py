"""Events in and out of the Store.

    source --WatchEvent (raw, watch-shaped)--> Store --StoreEvent (typed)--> updateChannel

A ``WatchEvent`` is what every source produces, whatever it reads (a Kubernetes watch, a manifests
directory, a recorded trace): ``{"type": "ADDED|MODIFIED|DELETED", "object": {...}}`` with the
object exactly as the API server would send it.  A ``StoreEvent`` is what the Store emits after it
has updated its caches, only for changes that can affect nginx.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from ingressd.model import ObjectKey


class Kind(enum.Enum):
    """The kinds of object the Store caches, by their Kubernetes ``kind``."""

    INGRESS = "Ingress"
    INGRESS_CLASS = "IngressClass"
    SERVICE = "Service"
    ENDPOINT_SLICE = "EndpointSlice"
    SECRET = "Secret"
    CONFIG_MAP = "ConfigMap"


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One watch-shaped event from a source, before the Store has looked at it."""

    type: EventType
    object: dict[str, Any]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WatchEvent:
        """Parse ``{"type": ..., "object": ...}``; raises ``ValueError`` naming what is wrong."""
        try:
            event_type = EventType(raw.get("type"))
        except ValueError:
            raise ValueError(
                f"type: expected ADDED, MODIFIED or DELETED, got {raw.get('type')!r}"
            ) from None
        obj = raw.get("object")
        if not isinstance(obj, dict):
            raise ValueError("object: expected a mapping")
        return cls(event_type, obj)


@dataclass(frozen=True, slots=True)
class StoreEvent:
    """A change the Store accepted and that may change what nginx does.

    ``received_at`` is ``time.monotonic()`` when the source handed the change to the Store; the
    sync worker measures event-to-applied latency from it.
    """

    kind: Kind
    type: EventType
    key: ObjectKey
    received_at: float

    @property
    def endpoints_only(self) -> bool:
        """True when only endpoints changed: such events never need a reload by themselves."""
        return self.kind is Kind.ENDPOINT_SLICE
