"""The Kubernetes source: informers over the real kubernetes-asyncio client and a fake API server.

    FakeApiServer --HTTP list/watch--> KubernetesSource --WatchEvent--> sink
        (unit tests: a list; end-to-end: Store -> ... -> real nginx, via KubeHarness)

The fault tests count the events the source handed on against the changes made through the API:
every change must arrive exactly once (after a relist, changes made while the informer could not
watch arrive coalesced: one event per changed object, carrying its latest state).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog

from ingressd.cluster.client import api_client
from ingressd.model import ObjectKey
from ingressd.store.events import WatchEvent
from ingressd.store.sources.kubernetes import KubernetesSource
from tests.support.backends import EchoPods
from tests.support.e2e import deploy, expect
from tests.support.fakeapi import ApiRequest, FakeApiServer
from tests.support.harness import free_port, pod_addresses
from tests.support.kubeharness import KubeHarness, event_key
from tests.support.objects import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    self_signed_certificate,
    service,
    service_port,
    tls_secret,
)

JSON = dict[str, Any]
EventKey = tuple[str, str, str, str]


def config_map(name: str, namespace: str = "default", **data: str) -> JSON:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def changed(obj: JSON, type_: str = "MODIFIED") -> EventKey:
    """The event key a change through the fake API must produce."""
    meta = obj["metadata"]
    return (
        type_,
        obj["kind"],
        f"{meta.get('namespace', '')}/{meta['name']}",
        meta["resourceVersion"],
    )


def lost_and_doubled(got: list[EventKey], expected: list[EventKey]) -> tuple[int, int]:
    counts = Counter(got)
    lost = sum(1 for key in expected if counts[key] == 0)
    doubled = sum(n - 1 for n in counts.values() if n > 1)
    return lost, doubled


def by_kind(keys: list[EventKey]) -> dict[str, list[EventKey]]:
    out: dict[str, list[EventKey]] = {}
    for key in keys:
        out.setdefault(key[1], []).append(key)
    return out


@asynccontextmanager
async def source_for(
    api: FakeApiServer, tmp: Path, **options: Any
) -> AsyncIterator[KubernetesSource]:
    client = await api_client(api.write_kubeconfig(tmp / "kubeconfig"))
    options.setdefault("backoff", (0.05, 0.5))
    try:
        yield KubernetesSource(client, **options)
    finally:
        await client.close()


@asynccontextmanager
async def running(source: KubernetesSource, events: list[WatchEvent]) -> AsyncIterator[None]:
    task = asyncio.create_task(source.run(events.append))
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


async def until(check: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)


# -- listing -------------------------------------------------------------------------------------


async def test_the_first_load_hands_every_kind_over_in_ingress_nginx_start_order(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    cert, key = self_signed_certificate("a.example")
    fake_api.create(ingress("web", rules=[rule("a.example", path("/"))]))
    fake_api.create(ingress_class())
    fake_api.create(config_map("ingressd", "ingress-system", foo="bar"))
    fake_api.create(config_map("unrelated"))
    fake_api.create(tls_secret("tls", cert_pem=cert, key_pem=key))
    fake_api.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "helm.sh/release.v1",
            "metadata": {"name": "sh.helm.release.v1.x.v1", "namespace": "default"},
        }
    )
    fake_api.create(endpoint_slice("web"))
    fake_api.create(service("web"))
    events: list[WatchEvent] = []
    async with source_for(
        fake_api, tmp_path, configmap=ObjectKey("ingress-system/ingressd")
    ) as source:
        await source.load_once(events.append)
        assert source.synced
    assert [(e.type.value, e.object["kind"], e.object["metadata"]["name"]) for e in events] == [
        ("ADDED", "Service", "web"),
        ("ADDED", "EndpointSlice", "web-abcde"),
        ("ADDED", "Secret", "tls"),
        # every ConfigMap: custom-headers, add-headers and proxy-set-headers name others
        ("ADDED", "ConfigMap", "unrelated"),
        ("ADDED", "ConfigMap", "ingressd"),
        ("ADDED", "IngressClass", "ingressd"),
        ("ADDED", "Ingress", "web"),
    ]
    # Listed items come without kind/apiVersion; the source puts them back.
    assert events[1].object["apiVersion"] == "discovery.k8s.io/v1"
    assert events[0].object == {"apiVersion": "v1", **fake_api.get("Service", "web")}


async def test_lists_go_in_pages_of_page_size(fake_api: FakeApiServer, tmp_path: Path) -> None:
    for i in range(5):
        fake_api.create(service(f"web-{i}"))
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path, page_size=2) as source:
        await source.load_once(events.append)
    assert [e.object["metadata"]["name"] for e in events] == [f"web-{i}" for i in range(5)]
    assert fake_api.requests.count(ApiRequest("list", "services", "")) == 3


async def test_watch_namespace_restricts_the_namespaced_kinds(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    for namespace in ("team-a", "team-b"):
        fake_api.create(service("web", namespace))
        fake_api.create(ingress("web", namespace))
    fake_api.create(ingress_class())
    fake_api.create(config_map("ingressd", "ingress-system"))
    events: list[WatchEvent] = []
    async with source_for(
        fake_api, tmp_path, watch_namespace="team-a", configmap=ObjectKey("ingress-system/ingressd")
    ) as source:
        await source.load_once(events.append)
        async with running(source, events):
            await fake_api.wait_for_watches(6)
            fake_api.create(service("api", "team-b"))
            last = fake_api.create(service("api", "team-a"))
            # One watch stream per kind, in resourceVersion order: team-b's Service would
            # have arrived before team-a's.
            await until(lambda: event_key(events[-1]) == changed(last, "ADDED"))
    assert sorted(
        (e.object["kind"], e.object["metadata"].get("namespace", ""), e.object["metadata"]["name"])
        for e in events
    ) == [
        ("ConfigMap", "ingress-system", "ingressd"),
        ("Ingress", "team-a", "web"),
        ("IngressClass", "", "ingressd"),
        ("Service", "team-a", "api"),
        ("Service", "team-a", "web"),
    ]


# -- watching ------------------------------------------------------------------------------------


def with_managed_fields(obj: JSON) -> JSON:
    obj["metadata"]["managedFields"] = [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": obj["apiVersion"],
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {"f:ports": {}}},
        }
    ]
    return obj


@pytest.mark.parametrize("keep", [False, True])
async def test_managed_fields_are_dropped_on_arrival_unless_kept_for_a_recording(
    fake_api: FakeApiServer, tmp_path: Path, keep: bool
) -> None:
    fake_api.create(with_managed_fields(service("web")))
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path, keep_managed_fields=keep) as source:
        await source.load_once(events.append)
        async with running(source, events):
            await fake_api.wait_for_watches(len(source.informers))
            fake_api.create(with_managed_fields(endpoint_slice("web")))  # over the watch
            await until(lambda: len(events) == 2)
        cached = [obj for informer in source.informers.values() for obj in informer.cache.values()]
    assert [e.object["kind"] for e in events] == ["Service", "EndpointSlice"]
    for obj in [e.object for e in events] + cached:
        assert ("managedFields" in obj["metadata"]) is keep
        assert obj["metadata"]["name"].startswith("web")


async def test_bookmarks_move_the_resource_version_and_emit_nothing(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    fake_api.bookmark_interval = 0.05
    fake_api.create(service("web"))
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path) as source:
        await source.load_once(events.append)
        informer = source.informers[next(iter(source.informers))]
        async with running(source, events):
            await fake_api.wait_for_watches(len(source.informers))
            fake_api.create(ingress_class())  # moves the global resourceVersion on
            await until(lambda: informer.resource_version == fake_api.resource_version)
            assert informer.stats.bookmarks > 0
    assert informer.kind == "Service"
    assert [e.object["kind"] for e in events] == ["Service", "IngressClass"]


async def test_a_resync_with_nothing_changed_emits_nothing(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    fake_api.create(service("web"))
    fake_api.create(endpoint_slice("web"))
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path, resync_period=0.2) as source:
        await source.load_once(events.append)
        async with running(source, events):
            # The first list, then (watches end at the resync time) a second one.
            await until(lambda: all(s.lists >= 2 for s in source.stats().values()))
    assert len(events) == 2
    assert all(s.resyncs >= 1 for s in source.stats().values())


async def test_a_change_the_watch_never_saw_arrives_by_the_relist_after_410(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    """A change made while the informer could not watch, with the history compacted since."""
    web = fake_api.create(service("web"))
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path) as source:
        await source.load_once(events.append)
        async with running(source, events):
            await fake_api.wait_for_watches(len(source.informers))
            await fake_api.set_down(True)
            web["spec"]["ports"][0]["port"] = 81
            web = fake_api.update(web)
            fake_api.compact()
            await fake_api.set_down(False)
            await until(lambda: len(events) == 2)
    assert [event_key(e) for e in events][1] == changed(web)
    assert source.stats()["Service"].relists >= 1


async def test_every_informer_resumes_at_once_when_the_api_server_answers_again(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    """Backoffs of 4 s and more: without a shared wake-up the informers would come back one by
    one over several seconds after the API server does (the target is 2 s; 3 s leaves room
    for a loaded machine)."""
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path, backoff=(4.0, 16.0)) as source:
        await source.load_once(events.append)
        async with running(source, events):
            count = len(source.informers)
            await fake_api.wait_for_watches(count)
            await fake_api.set_down(True)
            # each informer fails, waits 2-4 s, fails again and starts a longer wait
            await until(lambda: all(s.errors >= 2 for s in source.stats().values()), timeout=20)
            loop = asyncio.get_running_loop()
            await fake_api.set_down(False)
            back = loop.time()
            await fake_api.wait_for_watches(count, timeout=10)
            resumed = loop.time() - back
    assert resumed < 3.0, f"informers resumed {resumed:.1f} s after the API server"


# -- end to end: through the pipeline to a real nginx --------------------------------------------


@pytest.fixture
async def kube_harness(
    world_readable_tmp: Path, fake_api: FakeApiServer
) -> AsyncIterator[KubeHarness]:
    """A started ingressd watching ``fake_api`` through the Kubernetes source."""
    h = KubeHarness(world_readable_tmp, fake_api)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


@dataclass
class Traffic:
    """Requests sent in a loop while something else happens."""

    ok: int = 0
    failed: int = 0


@asynccontextmanager
async def traffic(h: KubeHarness, host: str) -> AsyncIterator[Traffic]:
    counts = Traffic()
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            try:
                response = await h.get("/", host=host)
                if response.status == 200:
                    counts.ok += 1
                else:
                    counts.failed += 1
            except (aiohttp.ClientError, OSError):
                counts.failed += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(loop())
    try:
        yield counts
    finally:
        stop.set()
        await task


async def serve_web(h: KubeHarness, replicas: int = 2) -> list[str]:
    addresses = await deploy(h, "web", replicas)
    h.write("ing.yaml", ingress("web", rules=[rule("web.example", path("/", "web"))]))
    await expect(h, "/", host="web.example", service="web")
    await h.caught_up()
    return addresses


def slice_with(h: KubeHarness, name: str, addresses: list[str]) -> JSON:
    """The current EndpointSlice of ``name`` with exactly ``addresses`` ready."""
    current = h.api.get("EndpointSlice", f"{name}-abcde")
    current["endpoints"] = [
        {"addresses": [a], "conditions": {"ready": True, "serving": True, "terminating": False}}
        for a in addresses
    ]
    return current


def alternate(addresses: list[str], step: int) -> list[str]:
    """One pod at even steps, all at odd ones: every step changes the slice (from all)."""
    return addresses[:1] if step % 2 == 0 else addresses


@pytest.mark.nginx
async def test_objects_created_changed_and_deleted_through_the_api_are_served_and_withdrawn(
    kube_harness: KubeHarness,
) -> None:
    h = kube_harness
    await deploy(h, "web")
    await deploy(h, "api")
    h.write("ing.yaml", ingress("web", rules=[rule("web.example", path("/", "web"))]))
    await expect(h, "/", host="web.example", service="web")
    await expect(h, "/", host="api.example", status=404)

    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.example", path("/", "web")), rule("api.example", path("/", "api"))],
        ),
    )
    await expect(h, "/", host="api.example", service="api")

    h.remove("ing.yaml")
    await expect(h, "/", host="web.example", status=404)
    await expect(h, "/", host="api.example", status=404)


@pytest.mark.nginx
async def test_an_endpoint_slice_change_over_a_watch_is_applied_without_a_reload(
    kube_harness: KubeHarness,
) -> None:
    h = kube_harness
    addresses = await serve_web(h, replicas=1)
    await h.settled()
    reloads, dynamic = h.reloads, h.dynamic_updates
    more = pod_addresses(2)
    extra = EchoPods({a: f"web-{i + 1}" for i, a in enumerate(more)}, h.pods[0].port)
    await extra.start()
    h.pods.append(extra)
    h.api.update(slice_with(h, "web", addresses + more))

    async def all_three() -> None:
        seen = {(await h.get("/", host="web.example")).pod for _ in range(12)}
        assert seen == {"web-0", "web-1", "web-2"}, seen

    await h.eventually(all_three)
    await h.settled()
    assert h.reloads == reloads
    assert h.dynamic_updates > dynamic


@pytest.mark.nginx
async def test_a_watch_dropped_mid_stream_loses_and_doubles_nothing(
    kube_harness: KubeHarness,
) -> None:
    h = kube_harness
    addresses = await serve_web(h)
    baseline = len(h.events)
    expected: list[EventKey] = []
    async with traffic(h, "web.example") as sent:
        for step in range(30):
            updated = h.api.update(slice_with(h, "web", alternate(addresses, step)))
            expected.append(changed(updated))
            if step % 6 == 5:
                h.api.drop_watches()
            await asyncio.sleep(0.01)
        await h.caught_up()
    got = [event_key(e) for e in h.events[baseline:]]
    lost, doubled = lost_and_doubled(got, expected)
    print(
        f"\nFAULT watch-dropped x5: changes={len(expected)} events={len(got)} lost={lost} "
        f"doubled={doubled}; requests ok={sent.ok} failed={sent.failed}"
    )
    assert got == expected
    reconnects = h.kube_source.stats()["EndpointSlice"].reconnects
    assert reconnects >= 1
    assert sent.failed == 0 and sent.ok > 0
    # Operators see the same counters on /metrics, per kind.
    assert h.metric("ingressd_informer_reconnects_total", kind="EndpointSlice") == reconnects
    assert h.metric("ingressd_informer_lists_total", kind="Ingress") >= 1
    assert h.metric("ingressd_informer_events_total", kind="EndpointSlice") >= 30


@pytest.mark.nginx
async def test_410_gone_relists_and_emits_each_difference_once(
    kube_harness: KubeHarness,
) -> None:
    h = kube_harness
    addresses = await serve_web(h)
    cert, key = self_signed_certificate("old.example")
    h.write("old.yaml", service("old"), tls_secret("old", cert_pem=cert, key_pem=key))
    api_pods, api_port = await h.start_pods(1, prefix="api")
    await h.caught_up()
    baseline = len(h.events)

    async with traffic(h, "web.example") as sent:
        await h.api.set_down(True)
        h.api.update(slice_with(h, "web", addresses[:1]))
        web_slice = h.api.update(slice_with(h, "web", addresses[1:]))  # coalesces with the above
        api_service = h.api.create(
            service("api", ports=[service_port(80, "http", target_port=api_port)])
        )
        api_slice = h.api.create(
            endpoint_slice("api", endpoints=api_pods, port=api_port, port_name="http")
        )
        api_ingress = h.api.create(ingress("api", rules=[rule("api.example", path("/", "api"))]))
        old_service = h.api.get("Service", "old")
        old_secret = h.api.get("Secret", "old")
        h.remove("old.yaml")
        h.api.compact()
        await asyncio.sleep(0.3)
        await h.api.set_down(False)
        await h.caught_up()
        await expect(h, "/", host="api.example", service="api")
    got = [event_key(e) for e in h.events[baseline:]]
    expected = [
        changed(web_slice),
        changed(api_service, "ADDED"),
        changed(api_slice, "ADDED"),
        changed(api_ingress, "ADDED"),
        # A relist knows a deleted object only by its last state.
        changed(old_service, "DELETED"),
        changed(old_secret, "DELETED"),
    ]
    lost, doubled = lost_and_doubled(got, expected)
    print(
        f"\nFAULT 410-gone: changed objects={len(expected)} events={len(got)} lost={lost} "
        f"doubled={doubled}; requests ok={sent.ok} failed={sent.failed}"
    )
    assert sorted(got) == sorted(expected)
    stats = h.kube_source.stats()
    assert all(
        stats[kind].relists >= 1 for kind in ("Service", "EndpointSlice", "Secret", "Ingress")
    )
    assert sent.failed == 0 and sent.ok > 0


@pytest.mark.nginx
async def test_with_the_api_server_down_nginx_keeps_serving_and_no_change_is_lost(
    kube_harness: KubeHarness,
) -> None:
    h = kube_harness
    addresses = await serve_web(h)
    baseline = len(h.events)
    expected: list[EventKey] = []
    async with traffic(h, "web.example") as sent:
        await h.api.set_down(True)
        down_at = time.monotonic()
        for step in range(3):  # changes the API server holds but cannot send meanwhile
            await asyncio.sleep(1.0)
            expected.append(changed(h.api.update(slice_with(h, "web", alternate(addresses, step)))))
        ok_while_down, failed_while_down = sent.ok, sent.failed
        await h.api.set_down(False)
        down_for = time.monotonic() - down_at
        for step in range(3, 6):
            expected.append(changed(h.api.update(slice_with(h, "web", alternate(addresses, step)))))
        await h.caught_up()
    got = [event_key(e) for e in h.events[baseline:]]
    lost, doubled = lost_and_doubled(got, expected)
    print(
        f"\nFAULT api-down: down {down_for:.1f} s, requests meanwhile ok={ok_while_down} "
        f"failed={failed_while_down}; changes={len(expected)} events={len(got)} lost={lost} "
        f"doubled={doubled}; all requests ok={sent.ok} failed={sent.failed}"
    )
    assert got == expected
    assert failed_while_down == 0 and ok_while_down > 0
    assert sent.failed == 0
    assert h.kube_source.stats()["EndpointSlice"].reconnects >= 1


# -- the command line ----------------------------------------------------------------------------


@pytest.fixture
def ingressd_env() -> Iterator[dict[str, str]]:
    yield {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.nginx
async def test_ingressd_run_with_kubeconfig_serves_what_the_api_holds(
    fake_api: FakeApiServer, world_readable_tmp: Path, ingressd_env: dict[str, str]
) -> None:
    addresses = pod_addresses(1)
    pod_port = free_port()
    http_port = free_port()
    async with EchoPods({addresses[0]: "web-0"}, pod_port):
        fake_api.create(service("web", ports=[service_port(80, "http", target_port=pod_port)]))
        fake_api.create(endpoint_slice("web", endpoints=addresses, port=pod_port, port_name="http"))
        fake_api.create(ingress("web", rules=[rule("web.example", path("/", "web"))]))
        kubeconfig = fake_api.write_kubeconfig(world_readable_tmp / "kubeconfig")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ingressd.cli",
            "--log-format",
            "json",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--http-port",
            str(http_port),
            "--https-port",
            str(free_port()),
            "--status-port",
            str(free_port()),
            "--status-address",
            "127.0.0.1",
            "--work-dir",
            str(world_readable_tmp / "work"),
            "--worker-processes",
            "1",
            "--allow-loopback-endpoints",
            env=ingressd_env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with aiohttp.ClientSession() as session:

                async def answer(host: str) -> tuple[int, str | None]:
                    try:
                        async with session.get(
                            f"http://127.0.0.1:{http_port}/", headers={"Host": host}
                        ) as response:
                            return response.status, response.headers.get("X-Pod")
                    except aiohttp.ClientError:
                        return 0, None

                async def until_answers(host: str, wanted: tuple[int, str | None]) -> None:
                    async with asyncio.timeout(30):
                        while await answer(host) != wanted:
                            assert process.returncode is None, "ingressd exited"
                            await asyncio.sleep(0.05)

                await until_answers("web.example", (200, "web-0"))
                fake_api.update(ingress("web", rules=[rule("new.example", path("/", "web"))]))
                await until_answers("new.example", (200, "web-0"))
                assert (await answer("web.example"))[0] == 404
            assert ("watch", "ingresses.networking.k8s.io", "") in fake_api.requests
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                _, stderr = await process.communicate()
        assert process.returncode == 0, stderr.decode()[-2000:]


async def test_an_object_over_the_limits_is_skipped_and_the_watch_goes_on(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    events: list[WatchEvent] = []
    async with source_for(fake_api, tmp_path) as source:
        await source.load_once(events.append)
        async with running(source, events):
            await fake_api.wait_for_watches(len(source.informers))
            deep = service("deep")
            deep["spec"]["extra"] = json.loads("[" * 150 + "]" * 150)
            with structlog.testing.capture_logs() as logs:
                fake_api.create(deep)
                after = fake_api.create(service("after"))
                await until(lambda: any(event_key(e) == changed(after, "ADDED") for e in events))
    assert all(e.object["metadata"]["name"] != "deep" for e in events)
    skipped = [e for e in logs if e["event"] == "watch event over the limits skipped"]
    assert skipped and "nested deeper than 100" in skipped[0]["limit"]
