"""Ingress status and Events, written through the fake API server by the real client.

FakeApiServer --KubernetesSource--> Store --build--> BuildResult (which Ingresses are ours)
    StatusUpdater (leader only) --PUT ingresses/NAME/status--> FakeApiServer
    IngressEvents --EventRecorder--> POST / PATCH events --> FakeApiServer
and end to end: two controllers (each with its own nginx) against one fake API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingressd.app.runtime import Ingressd
from ingressd.build.building import BuildOptions, BuildResult, build_configuration
from ingressd.cluster.client import api_client
from ingressd.cluster.duties import ClusterOptions
from ingressd.cluster.events import EventRecorder, IngressEvents
from ingressd.cluster.status import StatusUpdater, addresses_from_flags, service_addresses
from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.snapshot import Snapshot
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.store import Store
from tests.support import rbac
from tests.support.e2e import deploy, expect
from tests.support.fakeapi import FakeApiServer
from tests.support.kubeharness import KubeHarness
from tests.support.objects import (
    ingress,
    ingress_class,
    path,
    rule,
    service,
)

PUBLISH = ObjectKey("ingressd/ingressd-controller")
STATUS_WRITE = ("update", "ingresses.networking.k8s.io", "status")


def publish_service(*addresses: dict[str, str]) -> dict[str, Any]:
    svc = service("ingressd-controller", "ingressd", type="LoadBalancer")
    svc["status"] = {"loadBalancer": {"ingress": list(addresses)}}
    return svc


def lb_status(api: FakeApiServer, name: str) -> Any:
    return (
        api.get("Ingress", name, "default", api_version="networking.k8s.io/v1")
        .get("status", {})
        .get("loadBalancer", {})
        .get("ingress")
    )


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


class Cluster:
    """A Store that the Kubernetes source fills from the fake API (no nginx), and a client."""

    def __init__(self, api: FakeApiServer, tmp: Path) -> None:
        self.api = api
        self.kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        self.store = Store(channel=UpdateChannel())
        self.client: Any = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.client = await api_client(self.kubeconfig)
        source = KubernetesSource(self.client, backoff=(0.05, 0.5))
        await source.load_once(self.store.apply)
        self._task = asyncio.create_task(source.run(self.store.apply))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            await self.client.close()

    async def caught_up(self) -> None:
        """Until the Store holds every Ingress and Service at the API's resourceVersion."""

        def same() -> bool:
            snap = self.store.snapshot()
            for kind, cached in (("Ingress", snap.ingresses), ("Service", snap.services)):
                held = {
                    f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"][
                        "resourceVersion"
                    ]
                    for o in self.api.list(kind)
                }
                if held != {k: v["metadata"]["resourceVersion"] for k, v in cached.items()}:
                    return False
            return True

        await until(same)

    def build(self) -> tuple[BuildResult, Snapshot]:
        snapshot = self.store.snapshot()
        return build_configuration(snapshot, BuildOptions()), snapshot


@pytest.fixture
async def cluster(fake_api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Cluster]:
    fake_api.create(ingress_class())
    fake_api.create(service("web"))
    fake_api.create(publish_service({"ip": "203.0.113.10"}, {"hostname": "lb.example"}))
    fake_api.create(ingress("ours", rules=[rule("a.test", path("/", "web"))]))
    fake_api.create(
        ingress(
            "legacy",
            ingress_class_name=None,
            annotations={"kubernetes.io/ingress.class": "ingressd"},
        )
    )
    fake_api.create(ingress("other", ingress_class_name="nginx"))
    c = Cluster(fake_api, tmp_path)
    await c.start()
    try:
        yield c
    finally:
        await c.close()


def updater(cluster: Cluster, leading: list[bool], **options: Any) -> StatusUpdater:
    options.setdefault("publish_service", PUBLISH)
    up = StatusUpdater(
        api=cluster.client, snapshot=cluster.store.snapshot, is_leader=lambda: leading[0], **options
    )
    up.notify(*cluster.build())
    return up


# --- addresses -------------------------------------------------------------------------------


def test_publish_status_address_splits_ips_and_host_names() -> None:
    assert addresses_from_flags(["lb.example.com", " 10.0.0.2", "2001:db8::1", "10.0.0.2"]) == [
        {"hostname": "lb.example.com"},
        {"ip": "10.0.0.2"},
        {"ip": "2001:db8::1"},
    ]


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ({"type": "ClusterIP", "clusterIP": "10.96.0.7"}, None, [{"ip": "10.96.0.7"}]),
        ({"type": "ClusterIP", "clusterIP": "None"}, None, []),
        ({"type": "NodePort", "clusterIP": "10.96.0.7"}, None, [{"ip": "10.96.0.7"}]),
        (
            {"type": "NodePort", "clusterIP": "10.96.0.7", "externalIPs": ["192.0.2.9"]},
            None,
            [{"ip": "192.0.2.9"}],
        ),
        (
            {"type": "ExternalName", "externalName": "edge.example"},
            None,
            [{"hostname": "edge.example"}],
        ),
        (
            {"type": "LoadBalancer", "clusterIP": "10.96.0.7", "externalIPs": ["192.0.2.9"]},
            {
                "loadBalancer": {
                    "ingress": [{"ip": "203.0.113.10", "ipMode": "VIP"}, {"hostname": "lb.example"}]
                }
            },
            [{"hostname": "lb.example"}, {"ip": "192.0.2.9"}, {"ip": "203.0.113.10"}],
        ),
        ({"type": "LoadBalancer", "clusterIP": "10.96.0.7"}, {"loadBalancer": {}}, []),
    ],
)
def test_service_addresses_follow_ingress_nginx(
    spec: dict[str, Any], status: dict[str, Any] | None, expected: list[dict[str, str]]
) -> None:
    svc: dict[str, Any] = {"kind": "Service", "metadata": {"name": "s"}, "spec": spec}
    if status is not None:
        svc["status"] = status
    assert service_addresses(svc) == expected
    assert service_addresses(None) is None


# --- status ----------------------------------------------------------------------------------


async def test_leader_writes_status_once_for_ingresses_of_its_class_only(
    cluster: Cluster, fake_api: FakeApiServer
) -> None:
    other_before = fake_api.get("Ingress", "other", "default", api_version="networking.k8s.io/v1")
    up = updater(cluster, [True])
    assert await up.sync_once() == 2
    expected = [{"hostname": "lb.example"}, {"ip": "203.0.113.10"}]
    assert lb_status(fake_api, "ours") == lb_status(fake_api, "legacy") == expected
    # Again before and after the Store has seen its own writes: nothing more to write.
    assert await up.sync_once() == 0
    await cluster.caught_up()
    up.notify(*cluster.build())
    assert await up.sync_once() == 0
    assert fake_api.requests.count(STATUS_WRITE) == 2
    other = fake_api.get("Ingress", "other", "default", api_version="networking.k8s.io/v1")
    assert other == other_before  # another class: never touched
    # Only .status was written: the spec is what it was.
    ours = fake_api.get("Ingress", "ours", "default", api_version="networking.k8s.io/v1")
    assert ours["spec"] == ingress("ours", rules=[rule("a.test", path("/", "web"))])["spec"]


async def test_a_follower_writes_no_status(cluster: Cluster, fake_api: FakeApiServer) -> None:
    up = updater(cluster, [False])
    assert await up.sync_once() == 0
    assert STATUS_WRITE not in fake_api.requests
    assert lb_status(fake_api, "ours") is None


async def test_status_follows_the_published_address_and_other_writers(
    cluster: Cluster, fake_api: FakeApiServer
) -> None:
    up = updater(cluster, [True])
    assert await up.sync_once() == 2
    fake_api.update(publish_service({"ip": "198.51.100.1"}))
    # Someone else scribbles on one of ours: it is put back.
    ours = fake_api.get("Ingress", "ours", "default", api_version="networking.k8s.io/v1")
    ours["status"] = {"loadBalancer": {"ingress": [{"ip": "192.0.2.66"}]}}
    fake_api.update(ours)
    await cluster.caught_up()
    assert await up.sync_once() == 2
    assert lb_status(fake_api, "ours") == lb_status(fake_api, "legacy") == [{"ip": "198.51.100.1"}]


async def test_a_stale_store_gets_409_and_the_next_pass_succeeds(
    cluster: Cluster, fake_api: FakeApiServer
) -> None:
    up = updater(cluster, [True], publish_service=None, publish_addresses=["192.0.2.1"])
    await cluster.caught_up()
    # The API moves on (an annotation change) before the Store hears of it.
    ours = fake_api.get("Ingress", "ours", "default", api_version="networking.k8s.io/v1")
    stale = up._snapshot()
    up._snapshot = lambda: stale
    ours["metadata"]["labels"] = {"x": "y"}
    fake_api.update(ours)
    assert await up.sync_once() == 1  # legacy written; ours: 409 Conflict
    assert lb_status(fake_api, "ours") is None
    await cluster.caught_up()
    up._snapshot = cluster.store.snapshot
    assert await up.sync_once() == 1
    assert lb_status(fake_api, "ours") == [{"ip": "192.0.2.1"}]


async def test_missing_publish_service_writes_nothing(
    cluster: Cluster, fake_api: FakeApiServer
) -> None:
    up = updater(cluster, [True], publish_service=ObjectKey("ingressd/absent"))
    assert await up.sync_once() == 0
    assert STATUS_WRITE not in fake_api.requests


# --- Events ----------------------------------------------------------------------------------


def describe(api: FakeApiServer, name: str) -> list[tuple[str, str, str, int]]:
    """(type, reason, message, count) of the Events on Ingress ``name``, oldest first."""
    events = [e for e in api.list("Event", "default") if e["involvedObject"]["name"] == name]
    events.sort(key=lambda e: e["metadata"]["name"])
    return [(e["type"], e["reason"], e["message"], e["count"]) for e in events]


async def test_events_sync_once_per_change_and_rejected_when_a_problem_appears(
    cluster: Cluster, fake_api: FakeApiServer
) -> None:
    recorder = EventRecorder(api=cluster.client, instance="ingressd-abc")
    events = IngressEvents(recorder)
    task = asyncio.create_task(recorder.run())
    try:
        for _ in range(3):  # three syncs, nothing changed: one event per Ingress
            events.observe(*cluster.build(), ok=True)
        await recorder.flush()
        assert describe(fake_api, "ours") == [("Normal", "Sync", "Scheduled for sync", 1)]
        assert describe(fake_api, "legacy") == [("Normal", "Sync", "Scheduled for sync", 1)]
        assert describe(fake_api, "other") == []  # not ours

        bad = ingress("ours", rules=[rule("a.test", path("/", "web"), path("/a{b}", "web"))])
        fake_api.update(bad)
        await cluster.caught_up()
        events.observe(*cluster.build(), ok=False)  # a failed sync announces no Sync
        events.observe(*cluster.build(), ok=True)
        events.observe(*cluster.build(), ok=True)
        await recorder.flush()
        rejected = [e for e in describe(fake_api, "ours") if e[1] == "Rejected"]
        assert len(rejected) == 1
        kind, _, message, count = rejected[0]
        assert kind == "Warning" and count == 1
        assert message.startswith("spec.rules[0].http.paths[1].path: ")
        assert ("Normal", "Sync", "Scheduled for sync", 2) in describe(fake_api, "ours")

        # Fixed, then broken again: the same Rejected event, counted twice.
        fake_api.update(ingress("ours", rules=[rule("a.test", path("/", "web"))]))
        await cluster.caught_up()
        events.observe(*cluster.build(), ok=True)
        fake_api.update(bad)
        await cluster.caught_up()
        events.observe(*cluster.build(), ok=True)
        await recorder.flush()
        counts = {(e[1], e[3]) for e in describe(fake_api, "ours")}
        assert counts == {("Sync", 4), ("Rejected", 2)}
        sample = next(e for e in fake_api.list("Event", "default") if e["reason"] == "Sync")
        assert sample["source"] == {"component": "ingressd", "host": "ingressd-abc"}
        assert sample["involvedObject"]["kind"] == "Ingress"
        assert sample["involvedObject"]["uid"]
        calls = {tuple(r) for r in fake_api.requests if r.resource == "events"}
        assert calls == {("create", "events", ""), ("patch", "events", "")}
    finally:
        task.cancel()


# --- end to end: two controllers, one API server ---------------------------------------------


class ClusterHarness(KubeHarness):
    """A KubeHarness whose controller has the in-cluster duties (election, status, Events)."""

    def __init__(self, root: Path, api: FakeApiServer, identity: str) -> None:
        root.mkdir()
        super().__init__(root, api)
        self.options = dataclasses.replace(
            self.options,
            cluster=ClusterOptions(
                election_namespace="ingressd",
                publish_service=PUBLISH,
                identity=identity,
                lease_duration=1.0,
                renew_deadline=0.6,
                retry_period=0.15,
                status_interval=0.3,
            ),
        )

    async def start(self) -> None:
        self._client = await api_client(self.kubeconfig)
        self.controller = Ingressd(self.options, source=self.make_source(), api=self._client)
        await self.controller.start()
        await self.controller.wait_until_synced()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        await self.api.wait_for_watches(len(self.kube_source.informers))

    @property
    def leading(self) -> bool:
        assert self.ingressd.cluster is not None
        return self.ingressd.cluster.elector.is_leader


@pytest.mark.nginx
async def test_two_controllers_serve_one_leads_and_the_other_takes_over(
    fake_api: FakeApiServer, world_readable_tmp: Path
) -> None:
    fake_api.create(ingress_class())
    fake_api.create(publish_service({"ip": "203.0.113.10"}))
    fake_api.create(ingress("other", ingress_class_name="nginx"))
    a = ClusterHarness(world_readable_tmp / "a", fake_api, "a")
    b = ClusterHarness(world_readable_tmp / "b", fake_api, "b")
    try:
        await a.start()
        await b.start()
        await deploy(a, "web")
        a.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
        for h in (a, b):  # every replica serves
            await expect(h, "/", host="web.test", service="web")
        await until(lambda: a.leading or b.leading)
        leader, follower = (a, b) if a.leading else (b, a)
        await until(lambda: lb_status(fake_api, "web") == [{"ip": "203.0.113.10"}])
        await asyncio.sleep(1.0)  # several syncs and status passes on both
        assert not follower.leading
        assert fake_api.requests.count(STATUS_WRITE) == 1  # written once, by one
        assert lb_status(fake_api, "other") is None
        for h in (leader, follower):
            value = h.ingressd.metrics.value(
                "nginx_ingress_controller_leader_election_status", {"name": "ingressd-leader"}
            )
            assert value == (1 if h is leader else 0)
        syncs = [e for e in describe(fake_api, "web") if e[1] == "Sync"]
        assert len(syncs) == 2  # one per replica, each from its own source.host

        await leader.ingressd.stop()  # graceful: the lease is released (its pods stay up)
        leader.controller = None
        await until(lambda: follower.leading, timeout=3.0)
        fake_api.update(publish_service({"ip": "198.51.100.1"}))
        await until(lambda: lb_status(fake_api, "web") == [{"ip": "198.51.100.1"}])
        await expect(follower, "/", host="web.test", service="web")
        granted = rbac.REQUIRED
        for call in fake_api.requests:
            assert rbac.allows(granted, call), call
    finally:
        await a.stop()
        await b.stop()
