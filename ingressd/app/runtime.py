"""Wiring: one ingressd instance, every stage connected, started and stopped in order.

    Source --WatchEvent--> Store --StoreEvent--> updateChannel --> NginxController
        --> syncQueue --> SyncWorker --> Nginx (process + Lua endpoint)
    admin server reads SyncWorker, Metrics and Nginx
    with a Kubernetes ``api``: ClusterDuties (leader election, Ingress status, Events)

Start order: nginx (serving an empty configuration, so the control socket answers), the admin
server, the source's first full load into the Store, then the loops.  The first sync is queued
only after that first load, so it sees every object at once instead of building half a cluster.
Stop order is the reverse; nginx quits gracefully last.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import structlog
from aiohttp import web

from ingressd.annotations import DEFAULT_PREFIX, Risk
from ingressd.app.admin import start_admin
from ingressd.app.supervision import Supervisor
from ingressd.build.building import BuildOptions
from ingressd.cluster.duties import ClusterDuties, ClusterOptions
from ingressd.model import ObjectKey
from ingressd.nginx.applying import Nginx
from ingressd.nginx.external_auth import system_resolvers
from ingressd.nginx.rendering import DEFAULT_TEMPLATE, NginxPaths, RenderSettings
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.controller import NginxController
from ingressd.pipeline.metrics import Metrics, controller_identity
from ingressd.pipeline.queueing import SyncQueue
from ingressd.pipeline.syncing import SyncWorker
from ingressd.store.events import StoreEvent, WatchEvent
from ingressd.store.store import Store

log = structlog.get_logger("ingressd")

CONTROLLER_NAME = "ingressd.io/ingress-controller"


class Source(Protocol):
    """Anything that produces watch-shaped events: manifests directory, Kubernetes, a trace.

    ``load_once`` hands the first full state to the sink (it may be a coroutine function, as
    for the Kubernetes source that lists every kind); it returns when every cache has listed
    once.  ``run`` then follows changes until cancelled.
    """

    def load_once(self, sink: Callable[[WatchEvent], object]) -> object: ...

    async def run(self, sink: Callable[[WatchEvent], object]) -> None: ...


@runtime_checkable
class InformerSource(Protocol):
    """A source made of informers (the Kubernetes one): their counters go on /metrics."""

    def stats(self) -> Mapping[str, object]: ...


#: Under sustained change, syncs start at most this often (``--min-sync-interval``).
DEFAULT_MIN_SYNC_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class Options:
    """Everything ``ingressd run`` takes."""

    work_dir: Path
    http_port: int = 80
    https_port: int = 443
    status_port: int = 10254
    status_address: str = "0.0.0.0"
    #: Serve ``/debug/*`` to every peer, not only loopback (``--expose-debug-endpoints``).
    expose_debug: bool = False
    ingress_class: str = "ingressd"
    controller: str = CONTROLLER_NAME
    configmap: ObjectKey | None = None
    #: ``--tcp-services-configmap`` / ``--udp-services-configmap`` (ingress-nginx's format).
    tcp_services_configmap: ObjectKey | None = None
    udp_services_configmap: ObjectKey | None = None
    #: ``--enable-ssl-passthrough``: the HTTPS port reads SNI names first (stream front).
    enable_ssl_passthrough: bool = False
    #: ``--default-backend-service``: what unknown hosts and unmatched paths reach.
    default_backend_service: ObjectKey | None = None
    worker_processes: str = "auto"
    #: ``lua``: hosts and paths routed by Lua, a reload only for a new settings class;
    #: ``nginx``: a server block per host and a location per path (docs/routing.md).
    routing: str = "lua"
    update_channel_size: int = 1024
    min_sync_interval: float = DEFAULT_MIN_SYNC_INTERVAL
    reload_always: bool = False
    template: Path = DEFAULT_TEMPLATE
    #: Prefix of the ingress-nginx annotations read (``--annotations-prefix``).
    annotations_prefix: str = DEFAULT_PREFIX
    #: Accept configuration-snippet / server-snippet (``--allow-snippet-annotations``).
    allow_snippet_annotations: bool = False
    #: Refuse annotations above this risk level (``--annotations-risk-level``).
    annotations_risk_level: Risk = Risk.HIGH
    #: Accept loopback EndpointSlice addresses (``--allow-loopback-endpoints``; demo, tests).
    allow_loopback_endpoints: bool = False
    #: ``gc.freeze()`` once the first sync is applied (``ingressd run``; see ingressd.memory).
    freeze_gc: bool = False
    #: ``/healthz`` fails once changes have waited this long with no sync succeeding.
    sync_stall_timeout: float = 300.0
    #: Leader election, status and Events (used only when ``Ingressd`` gets an ``api``).
    cluster: ClusterOptions = field(default_factory=ClusterOptions)

    def render_settings(self) -> RenderSettings:
        return RenderSettings(
            http_port=self.http_port,
            https_port=self.https_port,
            worker_processes=self.worker_processes,
            worker_user="nobody nogroup" if os.geteuid() == 0 else None,
            routing=self.routing,
            ssl_passthrough=self.enable_ssl_passthrough,
            resolvers=_resolvers(),
        )

    @property
    def stream_configmaps(self) -> tuple[ObjectKey, ...]:
        return tuple(
            k for k in (self.tcp_services_configmap, self.udp_services_configmap) if k is not None
        )

    def build_options(self) -> BuildOptions:
        return BuildOptions(
            ingress_class=self.ingress_class,
            controller=self.controller,
            annotations_prefix=self.annotations_prefix,
            allow_snippet_annotations=self.allow_snippet_annotations,
            annotations_risk_level=self.annotations_risk_level,
            allow_loopback_endpoints=self.allow_loopback_endpoints,
            tcp_services_configmap=self.tcp_services_configmap,
            udp_services_configmap=self.udp_services_configmap,
            enable_ssl_passthrough=self.enable_ssl_passthrough,
            reserved_ports=(
                (self.http_port, "the HTTP port"),
                (self.https_port, "the HTTPS port"),
                (self.status_port, "the status port (/healthz, /metrics)"),
            ),
            default_backend_service=self.default_backend_service,
        )


def _resolvers(path: str = "/etc/resolv.conf") -> tuple[str, ...]:
    """The machine's nameservers, for auth services named by host name (``auth-url``)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return system_resolvers(f.read())
    except OSError:
        return ()


class Ingressd:
    """One controller: Store, channel, NginxController, syncQueue, sync worker, nginx, admin."""

    def __init__(
        self, options: Options, *, source: Source, nginx: Nginx | None = None, api: Any = None
    ) -> None:
        self.options = options
        self.source = source
        self.metrics = Metrics(identity=controller_identity(options.ingress_class))
        if isinstance(source, InformerSource):
            self.metrics.follow_informers(source.stats)
        self.channel = UpdateChannel(maxsize=options.update_channel_size)
        self.store = Store(
            channel=self.channel,
            configmap=options.configmap,
            stream_configmaps=options.stream_configmaps,
            default_backend=options.default_backend_service,
        )
        self.queue = SyncQueue(min_interval=options.min_sync_interval)
        self.controller = NginxController(channel=self.channel, queue=self.queue)
        # ``nginx``: another driver, e.g. ``DryRunNginx`` for ``ingressd replay --dry-run``.
        self.nginx = nginx or Nginx(
            settings=options.render_settings(),
            paths=NginxPaths(options.work_dir),
            template=options.template,
        )
        self.worker = SyncWorker(
            store=self.store,
            options=options.build_options(),
            nginx=self.nginx,
            metrics=self.metrics,
            settings=self.nginx.settings,
            reload_always=options.reload_always,
            configmap=options.configmap,
            freeze_gc=options.freeze_gc,
        )
        #: ``api`` (a kubernetes-asyncio ApiClient, the Kubernetes source's): in-cluster duties.
        self.cluster = (
            ClusterDuties(
                api=api,
                options=options.cluster,
                worker=self.worker,
                store=self.store,
                metrics=self.metrics,
            )
            if api is not None
            else None
        )
        self.supervisor = Supervisor(
            on_restart=lambda name: self.metrics.task_restarts.labels(task=name).inc()
        )
        self._admin: web.AppRunner | None = None
        self._dropped_seen = 0

    def _sink(self, event: WatchEvent) -> StoreEvent | None:
        return self.store.apply(event)

    async def start(self) -> None:
        self.options.work_dir.mkdir(parents=True, exist_ok=True)
        await self.nginx.start()
        self._admin = await start_admin(
            self, host=self.options.status_address, port=self.options.status_port
        )
        loaded = self.source.load_once(self._sink)
        if inspect.isawaitable(loaded):
            await loaded
        self.queue.enqueue(forced=True, cause="initial")
        spawn = self.supervisor.spawn
        spawn("source", lambda: self.source.run(self._sink))
        spawn("controller", self.controller.run)
        spawn("sync-worker", lambda: self.queue.run(self.worker))
        spawn("nginx-supervisor", lambda: self.nginx.process.supervise(self._nginx_restarted))
        for factory, name in self.cluster.loops() if self.cluster is not None else ():
            spawn(name, factory)
        log.info(
            "ingressd started",
            http_port=self.options.http_port,
            https_port=self.options.https_port,
            status_port=self.options.status_port,
            control_socket=self.nginx.paths.control_socket,
            work_dir=str(self.options.work_dir),
        )

    def unhealthy(self) -> str | None:
        """Why the controller cannot be trusted to apply changes now, or None (``/healthz``)."""
        if self.supervisor.down:
            return f"task down: {', '.join(sorted(self.supervisor.down))}"
        stalled = self.queue.stalled_for()
        if stalled > self.options.sync_stall_timeout:
            return f"no sync has succeeded for {stalled:.0f}s with changes pending"
        return None

    async def _nginx_restarted(self) -> None:
        self.metrics.nginx_restarts.inc()
        self.worker.nginx_restarted()
        self.queue.enqueue(forced=True, cause="nginx-restart")

    def refresh_gauges(self) -> None:
        dropped = self.channel.dropped
        if dropped > self._dropped_seen:
            self.metrics.update_channel_dropped.inc(dropped - self._dropped_seen)
            self._dropped_seen = dropped
        self.metrics.update_channel_depth.set(self.channel.qsize())
        self.metrics.sync_queue_depth.set(self.queue.qsize())
        running = self.worker.running
        self.metrics.set_certificates(
            (
                (server.hostname, server.certificate.secret, server.certificate.not_after)
                for server in (running.servers if running else ())
                if server.certificate is not None
            ),
            ingress_class=self.options.ingress_class,
        )

    async def wait_until_synced(self, timeout: float = 30.0) -> None:
        """Wait for the first applied sync (tests, demo)."""
        async with asyncio.timeout(timeout):
            while not self.worker.first_sync_applied:
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.supervisor.stop()
        if self._admin is not None:
            await self._admin.cleanup()
        await self.nginx.stop()
        log.info("ingressd stopped")
