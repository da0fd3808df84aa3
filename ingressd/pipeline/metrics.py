"""Metrics: what the sync worker did, in Prometheus form, served by the admin server.

    sync worker --record_*()--> Metrics (own CollectorRegistry) --admin /metrics--> Prometheus

Names follow ingress-nginx where it has one (``nginx_ingress_controller_success`` and
``..._errors`` count successful and failed reloads; they are counters whose exposed name has no
``_total`` suffix, so a small collector writes them exactly), so dashboards built for it keep
working; NGINX Inc's controller's ``nginx_ingress_controller_nginx_*`` reload names are kept too;
``ingressd_*`` names add what both lack (dynamic updates, sync decisions, queue depths).  Gauges
read from the pipeline (queue depths, certificate expiry) are set by ``Ingressd.refresh_gauges``
on each scrape; the Kubernetes source's informer counters (lists, relists after 410,
reconnects, errors, per kind) are read from it at scrape time.  Each controller has its own
registry, so several can run in one process (tests).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _ExactCounters:
    """Counters exposed under their exact ingress-nginx names, without ``_total``.

    prometheus_client names a counter family ``<name>_total`` in its HELP and TYPE lines, which
    would not match these samples; so they are written out here, as ingress-nginx's Go client
    writes them: ``# TYPE nginx_ingress_controller_success counter``.
    """

    def __init__(self, labels: Mapping[str, str]) -> None:
        self.values: dict[str, float] = {}
        self.docs: dict[str, str] = {}
        self._labels = (
            "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"
            if labels
            else ""
        )

    def define(self, name: str, doc: str) -> None:
        self.values[name] = 0.0
        self.docs[name] = doc

    def inc(self, name: str) -> None:
        self.values[name] += 1

    def text(self) -> str:
        return "".join(
            f"# HELP {name} {self.docs[name]}\n# TYPE {name} counter\n"
            f"{name}{self._labels} {float(value)!r}\n"
            for name, value in self.values.items()
        )


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


#: The labels ingress-nginx puts on its controller metrics, which its dashboards filter on.
IDENTITY_LABELS = ("controller_class", "controller_namespace", "controller_pod")


def controller_identity(ingress_class: str) -> dict[str, str]:
    """``controller_class``, ``controller_namespace`` and ``controller_pod`` of this process
    (the Deployment sets ``POD_NAMESPACE`` and ``POD_NAME`` from the downward API)."""
    return {
        "controller_class": ingress_class,
        "controller_namespace": os.environ.get("POD_NAMESPACE", ""),
        "controller_pod": os.environ.get("POD_NAME") or socket.gethostname(),
    }


#: The counters of each informer (``InformerStats`` fields) exposed as
#: ``ingressd_informer_<field>_total{kind}``, with their help text.
INFORMER_COUNTERS = {
    "events": "Watch events the informer handed to the Store",
    "lists": "Completed lists, the first one included",
    "relists": "Lists after 410 Gone (the watch's resourceVersion was too old)",
    "resyncs": "Periodic lists (resync period)",
    "reconnects": "Watches started again after a cut, a refusal or a server error",
    "bookmarks": "Watch bookmarks received",
    "errors": "Failed list and watch requests",
}


class _InformerCounters(Collector):
    """The Kubernetes source's informer counters, read at scrape time."""

    def __init__(self, stats: Callable[[], Mapping[str, object]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = sorted(self._stats().items())
        for field, doc in INFORMER_COUNTERS.items():
            name = f"ingressd_informer_{field}"
            metric = Metric(name, doc, "counter")
            for kind, counters in stats:
                metric.add_sample(f"{name}_total", {"kind": kind}, float(getattr(counters, field)))
            yield metric


class Metrics:
    """Every metric of one controller."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        identity: Mapping[str, str] | None = None,
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # _created: noise
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        #: ``controller_class``, ``..._namespace``, ``..._pod`` on the ingress-nginx names.
        self.identity = dict(identity if identity is not None else controller_identity("ingressd"))
        ident = list(self.identity)
        self._exact = _ExactCounters(self.identity)
        self._exact.define(
            "nginx_ingress_controller_success",
            "Cumulative number of successful nginx reloads (ingress-nginx name)",
        )
        self._exact.define(
            "nginx_ingress_controller_errors",
            "Cumulative number of failed nginx reloads (ingress-nginx name)",
        )
        self.config_hash = Gauge(
            "nginx_ingress_controller_config_hash",
            "Hash of the running nginx.conf",
            ident,
            registry=r,
        ).labels(**self.identity)
        self.last_reload_successful = Gauge(
            "nginx_ingress_controller_config_last_reload_successful",
            "Whether the last reload attempt succeeded (1) or failed (0)",
            ident,
            registry=r,
        ).labels(**self.identity)
        self.last_reload_successful_timestamp = Gauge(
            "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
            "Unix time of the last successful reload",
            ident,
            registry=r,
        ).labels(**self.identity)
        self.reloads = Counter(
            "ingressd_reloads",
            "nginx reloads by result (success, error) and by what made them necessary",
            ["result", "reason"],
            registry=r,
        )
        self.dynamic_updates = Counter(
            "ingressd_dynamic_updates",
            "Updates applied through the Lua endpoint without a reload, by what they carried "
            "(backends, routes, certificates; one update may carry several) and result",
            ["kind", "result"],
            registry=r,
        )
        self.syncs = Counter(
            "ingressd_syncs",
            "Syncs by decision (nothing, dynamic, reload) and failed ones (error)",
            ["decision"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "ingressd_sync_duration_seconds",
            "Duration of a sync, snapshot to applied, by decision",
            ["decision"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.event_to_applied = Histogram(
            "ingressd_event_to_applied_seconds",
            "From an event entering the Store to nginx serving the change",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.reload_duration = Histogram(
            "ingressd_reload_duration_seconds",
            "From nginx -t start to the new workers serving",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.nginx_restarts = Counter(
            "ingressd_nginx_restarts",
            "Times nginx died and was started again",
            registry=r,
        )
        self.task_restarts = Counter(
            "ingressd_task_restarts",
            "Times a background task of the controller died and was started again",
            ["task"],
            registry=r,
        )
        self.quarantined = Gauge(
            "ingressd_quarantined_objects",
            "Ingresses set aside because nginx -t refused the configuration with them",
            registry=r,
        )
        self.problems = Gauge(
            "ingressd_configuration_problems",
            "Rules or objects skipped by the last build (missing Service, invalid field, ...)",
            registry=r,
        )
        self.leader_election_status = Gauge(
            "nginx_ingress_controller_leader_election_status",
            "1 while this replica holds the leader-election Lease (ingress-nginx name)",
            ["name", *ident],
            registry=r,
        )
        self.status_updates = Counter(
            "ingressd_ingress_status_updates",
            "Ingress .status.loadBalancer writes by the leader, by result",
            ["result"],
            registry=r,
        )
        self.update_channel_dropped = Counter(
            "ingressd_update_channel_dropped_events",
            "Events dropped from a full updateChannel (safe: syncs read the whole Store)",
            registry=r,
        )
        self.update_channel_depth = Gauge(
            "ingressd_update_channel_depth",
            "Store events waiting in the updateChannel",
            registry=r,
        )
        self.sync_queue_depth = Gauge(
            "ingressd_sync_queue_depth",
            "Sync tasks waiting in the syncQueue",
            registry=r,
        )
        self.ssl_expire_time = Gauge(
            "nginx_ingress_controller_ssl_expire_time_seconds",
            "Unix time at which the certificate served for a host expires (ingress-nginx name)",
            ["namespace", "class", "host", "secret_name", *ident],
            registry=r,
        )
        # NGINX Inc's controller names.  reason="endpoints" stays 0 by design: endpoint changes
        # are applied through Lua; every reload is caused by something else ("other").
        self.nginx_reloads = Counter(
            "nginx_ingress_controller_nginx_reloads",
            "nginx reloads by cause: endpoints or other (NGINX Inc name)",
            ["reason"],
            registry=r,
        )
        self.nginx_reload_errors = Counter(
            "nginx_ingress_controller_nginx_reload_errors",
            "Failed nginx reloads (NGINX Inc name)",
            registry=r,
        )
        self.nginx_last_reload_status = Gauge(
            "nginx_ingress_controller_nginx_last_reload_status",
            "Whether the last reload succeeded (1) or failed (0) (NGINX Inc name)",
            registry=r,
        )
        self.nginx_last_reload_milliseconds = Gauge(
            "nginx_ingress_controller_nginx_last_reload_milliseconds",
            "Duration of the last successful reload in ms, nginx -t to new workers serving "
            "(NGINX Inc name)",
            registry=r,
        )
        self.nginx_reloads.labels(reason="endpoints")
        self.nginx_reloads.labels(reason="other")
        for decision in ("nothing", "dynamic", "reload", "error"):
            self.syncs.labels(decision=decision)
        for kind in ("backends", "routes", "certificates"):
            for result in ("success", "error"):
                self.dynamic_updates.labels(kind=kind, result=result)

    def follow_informers(self, stats: Callable[[], Mapping[str, object]]) -> None:
        """Expose ``stats()`` (kind -> ``InformerStats``) on every scrape."""
        self.registry.register(_InformerCounters(stats))

    def reload_succeeded(self, *, reason: str, config_hash: int, seconds: float) -> None:
        self._exact.inc("nginx_ingress_controller_success")
        self.reloads.labels(result="success", reason=reason).inc()
        self.last_reload_successful.set(1)
        self.last_reload_successful_timestamp.set(time.time())
        self.config_hash.set(config_hash)
        self.reload_duration.observe(seconds)
        self.nginx_reloads.labels(reason="other").inc()
        self.nginx_last_reload_status.set(1)
        self.nginx_last_reload_milliseconds.set(round(seconds * 1000, 3))

    def reload_failed(self, *, reason: str) -> None:
        self._exact.inc("nginx_ingress_controller_errors")
        self.reloads.labels(result="error", reason=reason).inc()
        self.last_reload_successful.set(0)
        self.nginx_reload_errors.inc()
        self.nginx_last_reload_status.set(0)

    def set_certificates(
        self, certificates: Iterable[tuple[str, str, float]], *, ingress_class: str
    ) -> None:
        """``ssl_expire_time_seconds`` from ``(host, secret namespace/name, not_after)`` triples:
        the certificates the running model serves, and only those."""
        self.ssl_expire_time.clear()
        for host, secret, not_after in certificates:
            namespace, _, name = secret.partition("/")
            self.ssl_expire_time.labels(
                namespace=namespace,
                host=host,
                secret_name=name,
                **{"class": ingress_class},
                **self.identity,
            ).set(not_after)

    def set_leader(self, name: str, leading: bool) -> None:
        """``leader_election_status{name}``: 1 while this replica holds the Lease ``name``."""
        self.leader_election_status.labels(name=name, **self.identity).set(1 if leading else 0)

    def exposition(self) -> bytes:
        """The text of /metrics: the registry, then the counters under exact names."""
        return generate_latest(self.registry) + self._exact.text().encode()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none):
        for tests and the replay summary.

        The identity labels of the ingress-nginx names are added when not given.
        """
        if name in self._exact.values:
            return self._exact.values[name]
        wanted = dict(labels or {})
        if name.startswith(_IDENTIFIED):
            wanted = {**self.identity, **wanted}
        total = 0.0
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == name and wanted.items() <= sample.labels.items():
                    total += sample.value
        return total


#: The ingress-nginx families that carry the identity labels.
_IDENTIFIED = (
    "nginx_ingress_controller_config_",
    "nginx_ingress_controller_leader_election_status",
    "nginx_ingress_controller_ssl_expire_time_seconds",
)
