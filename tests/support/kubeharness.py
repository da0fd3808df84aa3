"""An ingressd whose source is the Kubernetes source, watching a FakeApiServer through HTTP.

    test --write(name, *objects) / remove(name)--> FakeApiServer (Python side: apply / delete)
        --list + watch over HTTP (kubernetes-asyncio)--> KubernetesSource
        --WatchEvent--> Tap (appends to ``events``) --> Store --> ... --> real nginx
    test --HTTP requests--> nginx

``write``/``remove`` keep the manifests harness's meaning (the objects "in a file" are applied,
objects no longer in it deleted), so ``e2e.py``'s ``deploy`` and ``expect`` work unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ingressd.app.runtime import Source
from ingressd.cluster.client import api_client
from ingressd.store.events import WatchEvent
from ingressd.store.sources.informer import InformerStats
from ingressd.store.sources.kubernetes import KubernetesSource
from tests.support.fakeapi import FakeApiServer
from tests.support.harness import Harness

Sink = Callable[[WatchEvent], object]


class Tap:
    """A source wrapper that records every event on its way to the sink."""

    def __init__(self, source: KubernetesSource, events: list[WatchEvent]) -> None:
        self.source = source
        self.events = events

    def _tap(self, sink: Sink) -> Sink:
        def tapped(event: WatchEvent) -> object:
            self.events.append(event)
            return sink(event)

        return tapped

    async def load_once(self, sink: Sink) -> None:
        await self.source.load_once(self._tap(sink))

    async def run(self, sink: Sink) -> None:
        await self.source.run(self._tap(sink))

    def stats(self) -> dict[str, InformerStats]:
        return self.source.stats()


def event_key(event: WatchEvent) -> tuple[str, str, str, str]:
    """``(type, kind, namespace/name, resourceVersion)`` of an event, for comparisons."""
    meta = event.object["metadata"]
    return (
        event.type.value,
        event.object["kind"],
        f"{meta.get('namespace', '')}/{meta['name']}",
        meta["resourceVersion"],
    )


class KubeHarness(Harness):
    """``Harness`` with the Kubernetes source against ``api`` instead of a manifests dir."""

    def __init__(self, root: Path, api: FakeApiServer, **source_options: Any) -> None:
        super().__init__(root)
        self.api = api
        self.kubeconfig = api.write_kubeconfig(root / "kubeconfig")
        self.source_options: dict[str, Any] = {"backoff": (0.05, 0.5), **source_options}
        #: Every event the source handed to the Store, in order.
        self.events: list[WatchEvent] = []
        self.source: KubernetesSource | None = None
        self._client: Any = None
        self._written: dict[str, list[dict[str, Any]]] = {}

    def make_source(self) -> Source:
        self.source = KubernetesSource(self._client, **self.source_options)
        return Tap(self.source, self.events)

    async def start(self) -> None:
        self._client = await api_client(self.kubeconfig)
        await super().start()
        await self.api.wait_for_watches(len(self.kube_source.informers))

    async def stop(self) -> None:
        await super().stop()
        if self._client is not None:
            await self._client.close()

    @property
    def kube_source(self) -> KubernetesSource:
        assert self.source is not None, "start() first"
        return self.source

    # -- the cluster, through the fake API ----------------------------------------------------

    def write(self, name: str, *objects: dict[str, Any]) -> None:
        """Apply ``objects``; delete what an earlier ``write(name, ...)`` had and this lacks."""
        old = self._written.get(name, [])
        keep = {_identity(o) for o in objects}
        for obj in old:
            if _identity(obj) not in keep:
                self.api.delete(obj)
        for obj in objects:
            self.api.apply(obj)
        self._written[name] = list(objects)

    def write_text(self, name: str, text: str) -> None:
        raise NotImplementedError("the Kubernetes harness takes objects, not text")

    def remove(self, name: str) -> None:
        for obj in self._written.pop(name, []):
            self.api.delete(obj)

    async def settled(self) -> None:
        """Wait until every watch has caught up and every queued sync has run."""
        await self.caught_up()
        await super().settled()

    async def caught_up(self, timeout: float = 10.0) -> None:
        """Wait until every informer's cache holds exactly what the API holds."""
        async with asyncio.timeout(timeout):
            while not self._caught_up():
                await asyncio.sleep(0.01)

    def _caught_up(self) -> bool:
        source = self.kube_source
        for informer in source.informers.values():
            held = {
                (o["metadata"].get("namespace", ""), o["metadata"]["name"]): o["metadata"][
                    "resourceVersion"
                ]
                for o in self.api.list(informer.kind, api_version=informer.api_version)
            }
            own_namespace, _, name = (source.configmap or "").partition("/")
            if (
                informer.kind == "ConfigMap"
                and source.watch_namespace is not None
                and own_namespace != source.watch_namespace
            ):
                held = {k: v for k, v in held.items() if k == (own_namespace, name)}
            elif source.watch_namespace is not None and informer.kind != "IngressClass":
                held = {k: v for k, v in held.items() if k[0] == source.watch_namespace}
            cached = {k: _rv(o) for k, o in informer.cache.items()}
            if cached != held:
                return False
        return True


def _rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["resourceVersion"])


def _identity(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj["metadata"]
    return obj["kind"], meta.get("namespace", "default"), meta["name"]
