"""The Kubernetes source: one informer per kind, through kubernetes-asyncio, into the Store.

    ApiClient (``ingressd.cluster.client.api_client``)
      --CoreV1Api / DiscoveryV1Api / NetworkingV1Api list_* (_preload_content=False)-->
    Informer per kind (``informer.py``: list, watch, 410 -> relist, backoff, resync)
      Service, EndpointSlice, Secret (not Helm's release secrets), ConfigMap (the controller's,
      the tcp/udp services ones and those ``custom-headers``, ``add-headers``,
      ``proxy-set-headers`` name: every one in scope; with ``--watch-namespace`` and one of the
      named ConfigMaps in another namespace, that namespace's, or that one alone by
      fieldSelector metadata.name), IngressClass (cluster-scoped), Ingress
      --WatchEvent--> sink (``Store.apply``)

``load_once(sink)`` lists every kind at once, then hands the events over in ingress-nginx's start
order (Services, EndpointSlices, Secrets, ConfigMap, IngressClasses, Ingresses last), so the first
sync sees Ingresses only with what they reference already in the Store; it returns when every
cache has listed once (retrying with backoff while the API server cannot be reached).
``run(sink)`` watches every kind until cancelled.  ``watch_namespace`` restricts the namespaced
kinds to one namespace (the ConfigMap is read from its own namespace).  ``stats()`` has the
per-informer counters.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import structlog
from kubernetes_asyncio import client

from ingressd.model import ObjectKey
from ingressd.store.events import Kind
from ingressd.store.sources.informer import (
    Backoff,
    Informer,
    InformerStats,
    Reachability,
    Sink,
)

__all__ = ["START_ORDER", "KubernetesSource"]

log = structlog.get_logger("ingressd.kubernetes")

#: ingress-nginx's start order: what Ingresses reference first, Ingresses last.
START_ORDER: tuple[Kind, ...] = (
    Kind.SERVICE,
    Kind.ENDPOINT_SLICE,
    Kind.SECRET,
    Kind.CONFIG_MAP,
    Kind.INGRESS_CLASS,
    Kind.INGRESS,
)

#: Kind -> (apiVersion, API class, namespaced list method or None, all-namespaces list method)
_APIS: dict[Kind, tuple[str, str, str | None, str]] = {
    Kind.SERVICE: ("v1", "CoreV1Api", "list_namespaced_service", "list_service_for_all_namespaces"),
    Kind.ENDPOINT_SLICE: (
        "discovery.k8s.io/v1",
        "DiscoveryV1Api",
        "list_namespaced_endpoint_slice",
        "list_endpoint_slice_for_all_namespaces",
    ),
    Kind.SECRET: ("v1", "CoreV1Api", "list_namespaced_secret", "list_secret_for_all_namespaces"),
    Kind.CONFIG_MAP: (
        "v1",
        "CoreV1Api",
        "list_namespaced_config_map",
        "list_config_map_for_all_namespaces",
    ),
    Kind.INGRESS_CLASS: ("networking.k8s.io/v1", "NetworkingV1Api", None, "list_ingress_class"),
    Kind.INGRESS: (
        "networking.k8s.io/v1",
        "NetworkingV1Api",
        "list_namespaced_ingress",
        "list_ingress_for_all_namespaces",
    ),
}

#: Helm keeps every release in a Secret of this type: many, large and never referenced by an
#: Ingress (ingress-nginx leaves them out the same way).
SECRET_FIELD_SELECTOR = "type!=helm.sh/release.v1"


class KubernetesSource:
    """Informers for the six kinds the Store caches; a runtime ``Source``."""

    def __init__(
        self,
        api: Any,
        *,
        watch_namespace: str | None = None,
        configmap: ObjectKey | None = None,
        stream_configmaps: tuple[ObjectKey, ...] = (),
        resync_period: float = 600.0,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        backoff: tuple[float, float] = (0.2, 10.0),
        keep_managed_fields: bool = False,
    ) -> None:
        """``api`` is a ``kubernetes_asyncio.client.ApiClient`` (the caller closes it).

        ``keep_managed_fields``: pass objects on with ``metadata.managedFields`` (dropped by
        default: ingressd never reads them, and they are often half of an object's size).
        """
        self.api = api
        self.watch_namespace = watch_namespace
        self.configmap = configmap
        #: ``--tcp-services-configmap`` / ``--udp-services-configmap``.
        self.stream_configmaps = stream_configmaps
        self.informers: dict[Kind, Informer] = {}
        reachability = Reachability(self._probe)
        for kind in START_ORDER:
            call = self._list_call(kind)
            if call is None:
                continue
            self.informers[kind] = Informer(
                kind.value,
                _APIS[kind][0],
                call,
                page_size=page_size,
                watch_timeout=watch_timeout,
                resync_period=resync_period,
                backoff=Backoff(*backoff),
                keep_managed_fields=keep_managed_fields,
                reachability=reachability,
            )

    async def _probe(self) -> None:
        """The cheapest request there is: the core API's discovery document."""
        await client.CoreApi(self.api).get_api_versions(_request_timeout=5)

    def _list_call(self, kind: Kind) -> Any:
        """The bound list method for ``kind``, or None when that kind is not watched."""
        _, api_class, namespaced, cluster_wide = _APIS[kind]
        api = getattr(client, api_class)(self.api)
        selector: dict[str, str] = {}
        namespace = self.watch_namespace
        if kind is Kind.CONFIG_MAP and namespace is not None:
            # Every ConfigMap of the watched namespace (custom-headers names them), unless one
            # the controller needs lies elsewhere: then that namespace's, that one alone by
            # name, or (named ConfigMaps in several namespaces) every one.
            wanted = sorted({k for k in (self.configmap, *self.stream_configmaps) if k})
            elsewhere = [k for k in wanted if k.partition("/")[0] != namespace]
            if elsewhere:
                namespaces = {k.partition("/")[0] for k in wanted}
                namespace = namespaces.pop() if len(namespaces) == 1 else None
                if len(wanted) == 1:
                    selector["field_selector"] = f"metadata.name={wanted[0].partition('/')[2]}"
        elif kind is Kind.SECRET:
            selector["field_selector"] = SECRET_FIELD_SELECTOR
        if namespaced is None or namespace is None:
            return functools.partial(getattr(api, cluster_wide), **selector)
        return functools.partial(getattr(api, namespaced), namespace, **selector)

    async def load_once(self, sink: Sink) -> None:
        """List every kind, then hand the events over in start order."""
        informers = list(self.informers.values())
        listed = await asyncio.gather(*(informer.sync() for informer in informers))
        for informer, events in zip(informers, listed, strict=True):
            informer.deliver(sink, events)
            log.info(
                "informer synced",
                kind=informer.kind,
                objects=len(informer.cache),
                resource_version=informer.resource_version,
            )

    async def run(self, sink: Sink) -> None:
        """Watch every kind until cancelled."""
        async with asyncio.TaskGroup() as group:
            for kind, informer in self.informers.items():
                group.create_task(informer.run(sink), name=f"informer-{kind.value}")

    @property
    def synced(self) -> bool:
        """Every informer has listed at least once."""
        return all(i.stats.lists > 0 for i in self.informers.values())

    def stats(self) -> dict[str, InformerStats]:
        """Counters per informer, by kind."""
        return {kind.value: informer.stats for kind, informer in self.informers.items()}
