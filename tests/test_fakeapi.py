"""The fake API server speaks the protocol the real kubernetes-asyncio client expects.

kubernetes-asyncio (typed APIs, over HTTP) --> FakeApiServer <-- Python-side control
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes_asyncio.client
import pytest
from kubernetes_asyncio.client import ApiException

from ingressd.cluster.client import api_client
from tests.support.fakeapi import ApiError, ApiRequest, FakeApiServer
from tests.support.objects import endpoint_slice, ingress, path, rule, service

JSON = dict[str, Any]
#: The typed API classes want model objects; these tests hand them dicts, as callers may.
client: Any = kubernetes_asyncio.client


@pytest.fixture
async def kube(fake_api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Any]:
    """A kubernetes-asyncio ApiClient configured from the fake API's kubeconfig."""
    api = await api_client(fake_api.write_kubeconfig(tmp_path / "kubeconfig"))
    try:
        yield api
    finally:
        await api.close()


def status_of(exc: ApiException) -> JSON:
    assert exc.body is not None
    body: JSON = json.loads(exc.body)
    return body


async def read_events(response: Any, count: int, timeout: float = 5.0) -> list[JSON]:
    events: list[JSON] = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            line = await response.content.readline()
            assert line, f"stream ended after {events}"
            events.append(json.loads(line))
    return events


async def watch(api: Any, **kwargs: Any) -> Any:
    core = client.CoreV1Api(api)
    return await core.list_namespaced_service(
        "default", watch=True, _preload_content=False, **kwargs
    )


# -- objects: create, get, update, patch, delete -------------------------------------------------


async def test_create_sets_what_the_api_server_sets(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    created = await core.create_namespaced_service("default", service("web"))
    got = await core.read_namespaced_service("web", "default")
    assert got.metadata.uid == created.metadata.uid and got.metadata.uid
    assert got.metadata.creation_timestamp is not None
    assert got.metadata.generation == 1
    assert got.metadata.resource_version.isdigit()


async def test_create_of_a_taken_name_is_409_already_exists(kube: Any) -> None:
    core = client.CoreV1Api(kube)
    await core.create_namespaced_service("default", service("web"))
    with pytest.raises(ApiException) as caught:
        await core.create_namespaced_service("default", service("web"))
    assert caught.value.status == 409
    body = status_of(caught.value)
    assert (body["kind"], body["apiVersion"], body["status"]) == ("Status", "v1", "Failure")
    assert body["reason"] == "AlreadyExists"
    assert body["details"] == {"name": "web", "kind": "services"}


async def test_update_with_a_stale_resource_version_is_409_conflict(
    kube: Any, fake_api: FakeApiServer
) -> None:
    leases = client.CoordinationV1Api(kube)
    lease: JSON = {"metadata": {"name": "ingressd"}, "spec": {"holderIdentity": "a"}}
    first = await leases.create_namespaced_lease("default", lease)
    fake_api.update(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "ingressd", "namespace": "default"},
            "spec": {"holderIdentity": "b"},
        }
    )
    stale = {
        "metadata": {"name": "ingressd", "resourceVersion": first.metadata.resource_version},
        "spec": {"holderIdentity": "c"},
    }
    with pytest.raises(ApiException) as caught:
        await leases.replace_namespaced_lease("ingressd", "default", stale)
    assert caught.value.status == 409
    assert status_of(caught.value)["reason"] == "Conflict"
    assert fake_api.get("Lease", "ingressd")["spec"]["holderIdentity"] == "b"

    current = fake_api.get("Lease", "ingressd")
    current["spec"]["holderIdentity"] = "c"
    updated = await leases.replace_namespaced_lease("ingressd", "default", current)
    assert updated.spec.holder_identity == "c"
    assert int(updated.metadata.resource_version) > int(current["metadata"]["resourceVersion"])
    assert updated.metadata.generation == 3


async def test_an_update_that_changes_nothing_keeps_the_resource_version(
    fake_api: FakeApiServer,
) -> None:
    created = fake_api.create(service("web"))
    again = fake_api.update(created)
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert fake_api.store.changes_since(0) is not None
    assert len(fake_api.store.changes_since(0) or []) == 1


async def test_status_subresource_changes_only_the_status(
    kube: Any, fake_api: FakeApiServer
) -> None:
    net = client.NetworkingV1Api(kube)
    fake_api.create(ingress("web", rules=[rule("a.example", path("/"))]))
    patched = await net.patch_namespaced_ingress_status(
        "web",
        "default",
        {"spec": {"rules": []}, "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}}},
    )
    assert patched.status.load_balancer.ingress[0].ip == "10.0.0.1"
    assert patched.spec.rules[0].host == "a.example"
    assert patched.metadata.generation == 1

    whole = fake_api.get("Ingress", "web")
    whole["status"] = {"loadBalancer": {}}
    whole["spec"]["rules"][0]["host"] = "b.example"
    replaced = await net.replace_namespaced_ingress("web", "default", whole)
    assert replaced.spec.rules[0].host == "b.example"
    assert replaced.status.load_balancer.ingress[0].ip == "10.0.0.1"
    assert replaced.metadata.generation == 2


async def test_patches_merge_and_json_patch(kube: Any, fake_api: FakeApiServer) -> None:
    core = client.CoreV1Api(kube)
    fake_api.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default"},
            "data": {"a": "1", "b": "2"},
        }
    )
    merged = await core.patch_namespaced_config_map(
        "cfg", "default", {"data": {"a": None, "c": "3"}}
    )
    assert merged.data == {"b": "2", "c": "3"}
    patched = await core.patch_namespaced_config_map(
        "cfg",
        "default",
        [
            {"op": "replace", "path": "/data/b", "value": "20"},
            {"op": "add", "path": "/data/d", "value": "4"},
        ],
    )
    assert patched.data == {"b": "20", "c": "3", "d": "4"}


async def test_delete_then_get_is_404_not_found(kube: Any, fake_api: FakeApiServer) -> None:
    core = client.CoreV1Api(kube)
    fake_api.create(service("web"))
    await core.delete_namespaced_service("web", "default")
    with pytest.raises(ApiException) as caught:
        await core.read_namespaced_service("web", "default")
    assert caught.value.status == 404
    assert status_of(caught.value)["reason"] == "NotFound"
    with pytest.raises(ApiError) as python_side:
        fake_api.get("Service", "web")
    assert python_side.value.code == 404


# -- list ----------------------------------------------------------------------------------------


async def test_list_pages_through_one_snapshot_with_limit_and_continue(
    kube: Any, fake_api: FakeApiServer
) -> None:
    core = client.CoreV1Api(kube)
    for i in range(7):
        fake_api.create(service(f"web-{i}"))
    first = await core.list_namespaced_service("default", limit=3)
    assert [s.metadata.name for s in first.items] == ["web-0", "web-1", "web-2"]
    assert first.metadata.remaining_item_count == 4
    fake_api.create(service("web-7"))
    names = [s.metadata.name for s in first.items]
    token = first.metadata._continue
    while token:
        page = await core.list_namespaced_service("default", limit=3, _continue=token)
        assert page.metadata.resource_version == first.metadata.resource_version
        names += [s.metadata.name for s in page.items]
        token = page.metadata._continue
    assert names == [f"web-{i}" for i in range(7)]


async def test_list_items_carry_no_kind_and_the_list_has_a_resource_version(
    kube: Any, fake_api: FakeApiServer
) -> None:
    fake_api.create(service("web"))
    response = await client.CoreV1Api(kube).list_namespaced_service(
        "default", _preload_content=False
    )
    body = await response.json()
    assert body["kind"] == "ServiceList"
    assert body["metadata"]["resourceVersion"] == fake_api.resource_version
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]


async def test_list_filters_by_namespace_and_selectors(kube: Any, fake_api: FakeApiServer) -> None:
    core = client.CoreV1Api(kube)
    fake_api.create(service("web", "default"))
    fake_api.create(service("web", "other"))
    fake_api.create(service("api", "other"))
    everywhere = await core.list_service_for_all_namespaces()
    assert len(everywhere.items) == 3
    named = await core.list_service_for_all_namespaces(field_selector="metadata.name=web")
    assert sorted(s.metadata.namespace for s in named.items) == ["default", "other"]
    one = await core.list_namespaced_service("other", field_selector="metadata.name!=web")
    assert [s.metadata.name for s in one.items] == ["api"]
    discovery = client.DiscoveryV1Api(kube)
    fake_api.create(endpoint_slice("web", "default"))
    fake_api.create(endpoint_slice("api", "default"))
    sliced = await discovery.list_namespaced_endpoint_slice(
        "default", label_selector="kubernetes.io/service-name in (web, db)"
    )
    assert [s.metadata.name for s in sliced.items] == ["web-abcde"]


async def test_a_list_newer_than_the_server_is_504_too_large(kube: Any) -> None:
    with pytest.raises(ApiException) as caught:
        await client.CoreV1Api(kube).list_namespaced_service(
            "default", resource_version="1000", resource_version_match="NotOlderThan"
        )
    assert caught.value.status == 504


# -- watch ---------------------------------------------------------------------------------------


async def test_watch_streams_the_changes_after_its_resource_version(
    kube: Any, fake_api: FakeApiServer
) -> None:
    fake_api.create(service("before"))
    start = fake_api.resource_version
    response = await watch(kube, resource_version=start)
    try:
        fake_api.create(service("web"))
        fake_api.create(service("elsewhere", "other"))
        fake_api.create(endpoint_slice("web"))
        changed = fake_api.get("Service", "web")
        changed["spec"]["ports"][0]["port"] = 81
        fake_api.update(changed)
        fake_api.delete("Service", "web")
        events = await read_events(response, 3)
    finally:
        response.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "web"),
        ("MODIFIED", "web"),
        ("DELETED", "web"),
    ]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(start)
    assert events[0]["object"]["kind"] == "Service"


async def test_watch_without_a_resource_version_starts_with_the_current_objects(
    kube: Any, fake_api: FakeApiServer
) -> None:
    fake_api.create(service("web"))
    response = await watch(kube)
    try:
        fake_api.create(service("api"))
        events = await read_events(response, 2)
    finally:
        response.close()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "web"),
        ("ADDED", "api"),
    ]


async def test_a_watch_asking_for_bookmarks_gets_them_and_ends_after_its_timeout(
    kube: Any, fake_api: FakeApiServer
) -> None:
    fake_api.bookmark_interval = 0.1
    fake_api.create(service("web"))
    response = await watch(
        kube,
        resource_version=fake_api.resource_version,
        allow_watch_bookmarks=True,
        timeout_seconds=1,
    )
    lines: list[JSON] = []
    async with asyncio.timeout(5):
        while line := await response.content.readline():
            lines.append(json.loads(line))
    response.close()
    assert len(lines) >= 3
    assert {e["type"] for e in lines} == {"BOOKMARK"}
    assert lines[-1]["object"]["metadata"]["resourceVersion"] == fake_api.resource_version


async def test_a_watch_without_bookmarks_gets_none(kube: Any, fake_api: FakeApiServer) -> None:
    fake_api.bookmark_interval = 0.1
    response = await watch(kube, resource_version=fake_api.resource_version, timeout_seconds=1)
    async with asyncio.timeout(5):
        body = await response.read()
    assert body == b""


async def test_a_watch_from_a_compacted_resource_version_gets_an_error_event_410(
    kube: Any, fake_api: FakeApiServer
) -> None:
    fake_api.create(service("web"))
    old = fake_api.resource_version
    fake_api.create(service("api"))
    fake_api.compact()
    response = await watch(kube, resource_version=old)
    async with asyncio.timeout(5):
        lines = (await response.read()).splitlines()
    assert response.status == 200
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "ERROR"
    gone = event["object"]
    assert (gone["kind"], gone["code"], gone["reason"]) == ("Status", 410, "Expired")
    assert gone["message"].startswith(f"too old resource version: {old}")


async def test_a_watch_with_a_label_selector_sees_objects_leave_and_enter_it(
    kube: Any, fake_api: FakeApiServer
) -> None:
    slice_ = fake_api.create(endpoint_slice("web"))
    response = await client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(
        "default",
        watch=True,
        _preload_content=False,
        resource_version=fake_api.resource_version,
        label_selector="kubernetes.io/service-name=web",
    )
    try:
        slice_["metadata"]["labels"]["kubernetes.io/service-name"] = "api"
        slice_ = fake_api.update(slice_)
        slice_["metadata"]["labels"]["kubernetes.io/service-name"] = "web"
        fake_api.update(slice_)
        events = await read_events(response, 2)
    finally:
        response.close()
    assert [e["type"] for e in events] == ["DELETED", "ADDED"]


async def test_drop_watches_cuts_open_streams_mid_flight(
    kube: Any, fake_api: FakeApiServer
) -> None:
    response = await watch(kube, resource_version=fake_api.resource_version)
    await fake_api.wait_for_watches(1)
    assert fake_api.drop_watches() == 1
    with pytest.raises(aiohttp.ClientPayloadError):
        async with asyncio.timeout(5):
            await response.content.readline()
    response.close()
    assert fake_api.watch_count == 0


# -- faults and bookkeeping ----------------------------------------------------------------------


async def test_set_down_refuses_connections_and_comes_back_on_the_same_port(
    kube: Any, fake_api: FakeApiServer
) -> None:
    core = client.CoreV1Api(kube)
    fake_api.create(service("web"))
    port = fake_api.port
    await fake_api.set_down(True)
    with pytest.raises(aiohttp.ClientConnectionError):
        await core.read_namespaced_service("web", "default")
    fake_api.create(service("api"))
    await fake_api.set_down(False)
    assert fake_api.port == port
    listed = await core.list_namespaced_service("default")
    assert sorted(s.metadata.name for s in listed.items) == ["api", "web"]


async def test_requests_are_recorded_by_verb_resource_and_subresource(
    kube: Any, fake_api: FakeApiServer
) -> None:
    net = client.NetworkingV1Api(kube)
    await client.CoordinationV1Api(kube).create_namespaced_lease(
        "default", {"metadata": {"name": "x"}, "spec": {}}
    )
    fake_api.create(ingress("web"))
    await net.read_namespaced_ingress("web", "default")
    await net.patch_namespaced_ingress_status("web", "default", {"status": {}})
    await net.list_ingress_class()
    await client.EventsV1Api(kube).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "e"},
            "eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "x",
            "reportingInstance": "y",
            "action": "Sync",
            "reason": "Sync",
            "type": "Normal",
        },
    )
    assert fake_api.requests == [
        ApiRequest("create", "leases.coordination.k8s.io", ""),
        ApiRequest("get", "ingresses.networking.k8s.io", ""),
        ApiRequest("patch", "ingresses.networking.k8s.io", "status"),
        ApiRequest("list", "ingressclasses.networking.k8s.io", ""),
        ApiRequest("create", "events.events.k8s.io", ""),
    ]


async def test_requests_without_the_token_are_401(fake_api: FakeApiServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake_api.url}/api/v1/services") as response:
            assert response.status == 401
            assert (await response.json())["reason"] == "Unauthorized"
    assert fake_api.requests == []


async def test_discovery_lists_groups_and_their_resources(fake_api: FakeApiServer) -> None:
    headers = {"Authorization": f"Bearer {fake_api.token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{fake_api.url}/apis") as response:
            groups = {g["name"] for g in (await response.json())["groups"]}
        async with session.get(f"{fake_api.url}/apis/networking.k8s.io/v1") as response:
            resources = {r["name"] for r in (await response.json())["resources"]}
    assert {"networking.k8s.io", "discovery.k8s.io", "coordination.k8s.io"} <= groups
    assert resources == {"ingresses", "ingresses/status", "ingressclasses"}
