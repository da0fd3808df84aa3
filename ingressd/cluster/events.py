"""Kubernetes Events on Ingresses: what ``kubectl describe ingress`` shows about our work.

    SyncWorker (after each sync) --IngressEvents.observe(build, snapshot, record)-->
        Normal  Sync      "Scheduled for sync"   an Ingress of ours is new or changed (its spec
                                                  or annotations) and the sync that built it
                                                  succeeded; every one of ours after start
        Warning Rejected  "<field>: <reason>"    a rule, path or TLS entry the build skipped,
                                                  when the problem appears (not every sync)
    --EventRecorder.record()--> bounded queue (full: the event is dropped and counted)
    --EventRecorder.run()--> POST /api/v1/namespaces/NS/events            (first time)
                             PATCH .../events/NAME {count, lastTimestamp}  (the same event again:
                                                   client-go's aggregation, one object with a
                                                   count instead of a new object each time)

Events are core/v1 Events as client-go's recorder writes them (``source.component``,
``involvedObject``, ``firstTimestamp``/``lastTimestamp``/``count``), so ``kubectl describe``
shows ``Normal  Sync  ...  ingressd  Scheduled for sync`` as it did for ingress-nginx.  Every
replica reports what its own nginx did, as ingress-nginx's replicas do.  Sending never blocks a
sync; a failed send is retried a few times with backoff, then dropped.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio.client import ApiClient, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from ingressd.build.building import BuildResult
from ingressd.model import ObjectKey
from ingressd.store.snapshot import KubeObject, Snapshot

__all__ = ["EventRecorder", "IngressEvents"]

log = structlog.get_logger("ingressd.events")

COMPONENT = "ingressd"
#: Longest message kept (the API server refuses much longer ones).
MAX_MESSAGE = 1024
#: Distinct events remembered for aggregation (client-go's LRU size).
CACHE_SIZE = 4096
#: Attempts per event before it is dropped, and the first backoff.
ATTEMPTS = 3
BACKOFF = 0.5


@dataclass(frozen=True, slots=True)
class _Pending:
    involved: dict[str, Any]
    type: str
    reason: str
    message: str
    at: datetime


@dataclass(slots=True)
class _Sent:
    name: str
    count: int
    first: str


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def involved_ingress(ingress: KubeObject) -> dict[str, Any]:
    """The ``involvedObject`` reference of an Ingress."""
    meta = ingress.get("metadata") or {}
    ref: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "namespace": meta.get("namespace", "default"),
        "name": meta.get("name", ""),
    }
    for field in ("uid", "resourceVersion"):
        if meta.get(field):
            ref[field] = meta[field]
    return ref


class EventRecorder:
    """Writes core/v1 Events in the background, aggregating repeats into a count."""

    def __init__(
        self,
        *,
        api: ApiClient,
        instance: str,
        component: str = COMPONENT,
        queue_size: int = 1000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._api = CoreV1Api(api)
        self.instance = instance
        self.component = component
        self.clock = clock
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(maxsize=queue_size)
        self._sent: collections.OrderedDict[tuple[str, ...], _Sent] = collections.OrderedDict()
        self.created = 0
        self.patched = 0
        self.dropped = 0

    def record(self, involved: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Queue an event about ``involved`` (an ``involvedObject`` reference); never blocks."""
        pending = _Pending(involved, type_, reason, message[:MAX_MESSAGE], self.clock())
        try:
            self._queue.put_nowait(pending)
        except asyncio.QueueFull:
            self.dropped += 1
            log.debug("event dropped: queue full", reason=reason, object=involved.get("name"))

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        """Until cancelled: send queued events one at a time."""
        while True:
            pending = await self._queue.get()
            try:
                await self._send_with_retries(pending)
            finally:
                self._queue.task_done()

    async def flush(self) -> None:
        """Wait until every queued event has been sent or dropped (tests, shutdown)."""
        await self._queue.join()

    async def _send_with_retries(self, pending: _Pending) -> None:
        delay = BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self._send(pending)
                return
            except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as exc:
                if attempt == ATTEMPTS:
                    self.dropped += 1
                    log.warning(
                        "could not write event",
                        reason=pending.reason,
                        object=pending.involved.get("name"),
                        error=repr(exc),
                    )
                    return
                await asyncio.sleep(delay)
                delay *= 2

    async def _send(self, pending: _Pending) -> None:
        ref = pending.involved
        namespace = str(ref.get("namespace") or "default")
        key = (
            namespace,
            str(ref.get("uid") or ref.get("name")),
            pending.type,
            pending.reason,
            pending.message,
        )
        now = _timestamp(pending.at)
        sent = self._sent.get(key)
        if sent is not None:
            patch: Any = {"count": sent.count + 1, "lastTimestamp": now}
            try:
                async with asyncio.timeout(10):
                    await self._api.patch_namespaced_event(sent.name, namespace, patch)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                # The Event expired (the API server keeps them about an hour): start over.
                del self._sent[key]
            else:
                sent.count += 1
                self._sent.move_to_end(key)
                self.patched += 1
                return
        name = f"{ref.get('name')}.{time.time_ns():x}"
        body: Any = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": pending.reason,
            "message": pending.message,
            "type": pending.type,
            "source": {"component": self.component, "host": self.instance},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        async with asyncio.timeout(10):
            await self._api.create_namespaced_event(namespace, body)
        self._sent[key] = _Sent(name, 1, now)
        while len(self._sent) > CACHE_SIZE:
            self._sent.popitem(last=False)
        self.created += 1


class IngressEvents:
    """Decides, after each sync, which Ingresses get a ``Sync`` or ``Rejected`` event."""

    def __init__(self, recorder: EventRecorder) -> None:
        self.recorder = recorder
        #: Ingress key -> (uid, spec, annotations) last announced with ``Sync``.
        self._announced: dict[ObjectKey, tuple[object, object, object]] = {}
        #: Ingress key -> rejection messages of the previous build.
        self._rejected: dict[ObjectKey, frozenset[str]] = {}

    def observe(self, build: BuildResult | None, snapshot: Snapshot | None, ok: bool) -> None:
        """After a sync: ``build`` and the ``snapshot`` it came from; ``ok`` when applied."""
        if build is None or snapshot is None:
            return
        ignored = set(build.ignored)
        ours = {k: v for k, v in snapshot.ingresses.items() if k not in ignored}
        if ok:
            for key in sorted(ours):
                obj = ours[key]
                meta = obj.get("metadata") or {}
                fingerprint = (meta.get("uid"), obj.get("spec"), meta.get("annotations"))
                if self._announced.get(key) != fingerprint:
                    self._announced[key] = fingerprint
                    self.recorder.record(
                        involved_ingress(obj), "Normal", "Sync", "Scheduled for sync"
                    )
            for key in self._announced.keys() - ours.keys():
                del self._announced[key]
        rejected: dict[ObjectKey, set[str]] = {}
        for problem in build.problems:
            if problem.kind == "Ingress" and problem.key in ours:
                rejected.setdefault(problem.key, set()).add(f"{problem.field}: {problem.reason}")
        for key in sorted(rejected):
            for message in sorted(rejected[key] - self._rejected.get(key, frozenset())):
                self.recorder.record(involved_ingress(ours[key]), "Warning", "Rejected", message)
        self._rejected = {k: frozenset(v) for k, v in rejected.items()}
