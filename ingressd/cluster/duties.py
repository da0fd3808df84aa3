"""In-cluster duties of one controller: leader election, Ingress status and Events.

    ApiClient (the Kubernetes source's) --+--> LeaderElector.run()     Lease --election-id
                                          +--> StatusUpdater.run()     only while leading
                                          +--> EventRecorder.run()     every replica
    SyncWorker --SyncOutcome after each sync--> StatusUpdater.notify(build, snapshot)
                                            --> IngressEvents.observe(build, snapshot, ok)
    LeaderElector.listeners --became leader--> StatusUpdater.notify()

Only with a Kubernetes source (``ingressd run --kubeconfig`` or in a pod): with a manifests
directory there is no API server to elect through or write to, and ``runtime.Ingressd`` gets no
``api``.  Every replica serves traffic; only the leader writes status.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kubernetes_asyncio.client import ApiClient

from ingressd.cluster.election import DEFAULT_ELECTION_ID, LeaderElector
from ingressd.cluster.events import EventRecorder, IngressEvents
from ingressd.cluster.status import StatusUpdater
from ingressd.model import ObjectKey
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.syncing import SyncOutcome, SyncWorker
from ingressd.store.store import Store

__all__ = ["ClusterDuties", "ClusterOptions"]


@dataclass(frozen=True, slots=True)
class ClusterOptions:
    """``ingressd run`` flags for the in-cluster duties, and the election's timings."""

    election_id: str = DEFAULT_ELECTION_ID
    #: None: ``POD_NAMESPACE``, else ``default``.
    election_namespace: str | None = None
    publish_service: ObjectKey | None = None
    publish_status_address: tuple[str, ...] = ()
    #: None: ``POD_NAME`` or the host name, with a random suffix.
    identity: str | None = None
    lease_duration: float = 30.0
    renew_deadline: float = 15.0
    retry_period: float = 7.5
    status_interval: float = 10.0
    events: bool = True


class ClusterDuties:
    """The elector, the status updater and the Event recorder of one controller."""

    def __init__(
        self,
        *,
        api: ApiClient,
        options: ClusterOptions,
        worker: SyncWorker,
        store: Store,
        metrics: Metrics,
    ) -> None:
        self.options = options
        self.elector = LeaderElector(
            api=api,
            name=options.election_id,
            namespace=options.election_namespace,
            identity=options.identity,
            lease_duration=options.lease_duration,
            renew_deadline=options.renew_deadline,
            retry_period=options.retry_period,
            metrics=metrics,
        )
        self.status = StatusUpdater(
            api=api,
            snapshot=store.snapshot,
            is_leader=lambda: self.elector.is_leader,
            publish_service=options.publish_service,
            publish_addresses=options.publish_status_address,
            interval=options.status_interval,
            metrics=metrics,
        )
        self.recorder = EventRecorder(api=api, instance=self.elector.identity)
        self.events = IngressEvents(self.recorder)
        self.elector.listeners.append(lambda leading: self.status.notify())
        worker.add_listener(self._after_sync)

    def _after_sync(self, outcome: SyncOutcome) -> None:
        self.status.notify(outcome.build, outcome.snapshot)
        if self.options.events:
            self.events.observe(outcome.build, outcome.snapshot, ok=outcome.applied)

    def loops(self) -> list[tuple[Callable[[], Coroutine[Any, Any, None]], str]]:
        """The background loops to run until the controller stops (each a function that starts
        one run of it), with their names."""
        loops: list[tuple[Callable[[], Coroutine[Any, Any, None]], str]] = [
            (self.elector.run, "leader-election"),
        ]
        if self.status.enabled:
            loops.append((self.status.run, "ingress-status"))
        if self.options.events:
            loops.append((self.recorder.run, "events"))
        return loops
