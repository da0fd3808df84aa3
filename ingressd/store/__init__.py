"""The Store and its sources: Kubernetes objects in, typed events and snapshots out.

    sources (``ManifestsSource``, ...) --WatchEvent--> ``Store.apply``
        --StoreEvent--> updateChannel (``ingressd.pipeline.channel``)
    sync worker --``Store.snapshot()``--> ``Snapshot``

Public surface: ``Store``, ``Snapshot``, the event types and ``ManifestsSource``; the rest of the
package (``references``, the per-source modules' helpers) is internal.
"""

from ingressd.store.events import EventType, Kind, StoreEvent, WatchEvent
from ingressd.store.snapshot import KubeObject, Snapshot
from ingressd.store.sources.files import ManifestsSource
from ingressd.store.store import EventChannel, Store

__all__ = [
    "EventChannel",
    "EventType",
    "Kind",
    "KubeObject",
    "ManifestsSource",
    "Snapshot",
    "Store",
    "StoreEvent",
    "WatchEvent",
]
