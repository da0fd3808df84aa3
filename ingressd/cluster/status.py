"""Ingress status: the leader publishes where our Ingresses are served.

    SyncWorker (after each sync) --notify()--+
    LeaderElector (became leader) --notify()-+--> StatusUpdater.run(): one pass, if leader
    every ``interval`` s (the published Service may get its load balancer later) --+
        ours    = Ingresses of the last build that are not ``ignored`` (other classes never)
        address = --publish-status-address (IPs -> ip, names -> hostname)
                  or the --publish-service Service from the Store:
                     LoadBalancer -> status.loadBalancer.ingress + spec.externalIPs
                     NodePort     -> spec.externalIPs, else spec.clusterIP
                     ClusterIP    -> spec.clusterIP; ExternalName -> spec.externalName
        for each of ours whose .status.loadBalancer.ingress differs (sorted by ip, hostname):
            PUT .../ingresses/NAME/status with the cached object's resourceVersion
            (409: the Store is behind; the next pass retries; 404: gone, nothing to do)

Only ``.status`` is written, through the status subresource, and only by the leader: every
replica serves traffic, one publishes.  A write is skipped when the Store already shows the
value, or still shows the resourceVersion this updater wrote over (its watch has not caught up),
so each Ingress is written once per change of address, not once per sync.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio.client import ApiClient, NetworkingV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from ingressd.build.building import BuildResult
from ingressd.model import ObjectKey
from ingressd.pipeline.metrics import Metrics
from ingressd.store.snapshot import KubeObject, Snapshot

__all__ = ["LoadBalancerIngress", "StatusUpdater", "addresses_from_flags", "service_addresses"]

log = structlog.get_logger("ingressd.cluster.status")

#: One ``status.loadBalancer.ingress[]`` entry as written: ``{"ip": ...}`` or ``{"hostname": ...}``.
LoadBalancerIngress = dict[str, str]

#: How many status writes run at once (ingress-nginx uses a pool of 10).
CONCURRENCY = 10
#: Seconds before a pass follows a 409 Conflict (time for the Store's watch to catch up).
CONFLICT_RETRY = 1.0


def _entry(address: str) -> LoadBalancerIngress:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return {"hostname": address}
    return {"ip": address}


def _sorted(entries: Sequence[dict[str, Any]]) -> list[LoadBalancerIngress]:
    """Entries reduced to ip / hostname, deduplicated, sorted by (ip, hostname)."""
    seen: dict[tuple[str, str], LoadBalancerIngress] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        ip, hostname = entry.get("ip"), entry.get("hostname")
        out: LoadBalancerIngress = {}
        if isinstance(ip, str) and ip:
            out["ip"] = ip
        if isinstance(hostname, str) and hostname:
            out["hostname"] = hostname
        if out:
            seen.setdefault((out.get("ip", ""), out.get("hostname", "")), out)
    return [seen[k] for k in sorted(seen)]


def addresses_from_flags(addresses: Sequence[str]) -> list[LoadBalancerIngress]:
    """``--publish-status-address a,b``: IPs become ``ip``, anything else ``hostname``."""
    return _sorted([_entry(a.strip()) for a in addresses if a.strip()])


def service_addresses(service: KubeObject | None) -> list[LoadBalancerIngress] | None:
    """The addresses ingress-nginx publishes for ``--publish-service``; None without one."""
    if not isinstance(service, dict):
        return None
    spec = service.get("spec") if isinstance(service.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    kind = spec.get("type") or "ClusterIP"
    external_ips = [ip for ip in spec.get("externalIPs") or () if isinstance(ip, str)]
    cluster_ip = spec.get("clusterIP")
    cluster = (
        [_entry(cluster_ip)]
        if isinstance(cluster_ip, str) and cluster_ip not in ("", "None")
        else []
    )
    if kind == "ExternalName":
        name = spec.get("externalName")
        return [{"hostname": name}] if isinstance(name, str) and name else []
    if kind == "ClusterIP":
        return cluster
    if kind == "NodePort":
        return _sorted([_entry(ip) for ip in external_ips]) if external_ips else cluster
    status = service.get("status") if isinstance(service.get("status"), dict) else {}
    assert isinstance(status, dict)
    balancer = status.get("loadBalancer") if isinstance(status.get("loadBalancer"), dict) else {}
    assert isinstance(balancer, dict)
    return _sorted([*(balancer.get("ingress") or ()), *(_entry(ip) for ip in external_ips)])


def current_status(ingress: KubeObject) -> list[LoadBalancerIngress]:
    status = ingress.get("status")
    balancer = status.get("loadBalancer") if isinstance(status, dict) else None
    entries = balancer.get("ingress") if isinstance(balancer, dict) else None
    return _sorted(entries if isinstance(entries, list) else [])


def _same_class_inputs(a: KubeObject, b: KubeObject) -> bool:
    """Whether the fields that decide an Ingress's class are unchanged between two versions."""
    meta_a, meta_b = a.get("metadata") or {}, b.get("metadata") or {}
    return bool(
        a.get("spec") == b.get("spec") and meta_a.get("annotations") == meta_b.get("annotations")
    )


class StatusUpdater:
    """Keeps ``.status.loadBalancer.ingress`` of our Ingresses equal to the published address."""

    def __init__(
        self,
        *,
        api: ApiClient,
        snapshot: Callable[[], Snapshot],
        is_leader: Callable[[], bool],
        publish_service: ObjectKey | None = None,
        publish_addresses: Sequence[str] = (),
        interval: float = 10.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._api = NetworkingV1Api(api)
        self._snapshot = snapshot
        self._is_leader = is_leader
        self.publish_service = publish_service
        self.publish_addresses = tuple(publish_addresses)
        self.interval = interval
        self.metrics = metrics
        #: The last build: which Ingresses are ours (from the sync worker).
        self._build: BuildResult | None = None
        self._built_from: Snapshot | None = None
        #: Ingress key -> (resourceVersion written over, value written).
        self._written: dict[ObjectKey, tuple[str, list[LoadBalancerIngress]]] = {}
        self._wake = asyncio.Event()
        self._missing_reported = False
        self.writes = 0

    @property
    def enabled(self) -> bool:
        return self.publish_service is not None or bool(self.publish_addresses)

    def notify(self, build: BuildResult | None = None, built_from: Snapshot | None = None) -> None:
        """Something changed (a sync, leadership): run a pass soon."""
        if build is not None and built_from is not None:
            self._build, self._built_from = build, built_from
        self._wake.set()

    async def run(self) -> None:
        """Until cancelled: a pass after each notification and every ``interval`` seconds."""
        while True:
            try:
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._is_leader():
                try:
                    await self.sync_once()
                except Exception as exc:  # keep publishing after any surprise
                    log.error("status pass failed", error=repr(exc))

    def ours(self) -> list[ObjectKey]:
        """Keys of the Ingresses the last build served (every class but ours is ``ignored``)."""
        if self._build is None or self._built_from is None:
            return []
        ignored = set(self._build.ignored)
        return sorted(k for k in self._built_from.ingresses if k not in ignored)

    def desired(self, snapshot: Snapshot) -> list[LoadBalancerIngress] | None:
        if self.publish_addresses:
            return addresses_from_flags(self.publish_addresses)
        if self.publish_service is None:
            return None
        addresses = service_addresses(snapshot.services.get(self.publish_service))
        if addresses is None and not self._missing_reported:
            log.warning(
                "publish service not found: Ingress status not written",
                service=self.publish_service,
            )
        self._missing_reported = addresses is None
        return addresses

    async def sync_once(self) -> int:
        """One pass: write the status of every Ingress of ours that differs; returns writes."""
        if not self.enabled or self._built_from is None:
            return 0
        snapshot = self._snapshot()
        desired = self.desired(snapshot)
        if desired is None:
            return 0
        todo: list[KubeObject] = []
        for key in self.ours():
            now = snapshot.ingresses.get(key)
            built = self._built_from.ingresses.get(key)
            if now is None or built is None or not _same_class_inputs(now, built):
                continue  # gone, or changed since the build: the next sync decides
            if current_status(now) == desired:
                self._written.pop(key, None)
                continue
            rv = str((now.get("metadata") or {}).get("resourceVersion", ""))
            if self._written.get(key) == (rv, desired):
                continue  # written; the Store's watch has not shown it yet
            todo.append(now)
        if not todo:
            return 0
        gate = asyncio.Semaphore(CONCURRENCY)

        async def write(obj: KubeObject) -> bool:
            async with gate:
                if not self._is_leader():
                    return False
                return await self._write(obj, desired)

        results = await asyncio.gather(*(write(obj) for obj in todo))
        written = sum(results)
        self.writes += written
        return written

    async def _write(self, obj: KubeObject, desired: list[LoadBalancerIngress]) -> bool:
        meta = obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace", "default")), str(meta.get("name", ""))
        key = ObjectKey(f"{namespace}/{name}")
        rv = str(meta.get("resourceVersion", ""))
        body: Any = {
            **obj,
            "status": {**(obj.get("status") or {}), "loadBalancer": {"ingress": desired}},
        }
        try:
            await self._api.replace_namespaced_ingress_status(name, namespace, body)
        except ApiException as exc:
            self._count("conflict" if exc.status == 409 else "error")
            if exc.status == 409:
                log.debug("ingress status conflict: retrying shortly", ingress=key)
                asyncio.get_running_loop().call_later(CONFLICT_RETRY, self._wake.set)
            elif exc.status != 404:
                log.warning(
                    "could not write ingress status",
                    ingress=key,
                    error=f"{exc.status} {exc.reason}",
                )
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self._count("error")
            log.warning("could not write ingress status", ingress=key, error=repr(exc))
            return False
        self._written[key] = (rv, desired)
        self._count("success")
        log.info("ingress status updated", ingress=key, addresses=desired)
        return True

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.status_updates.labels(result=result).inc()
