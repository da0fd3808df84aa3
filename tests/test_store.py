"""The Store: caches, indexes, relevance (what emits and what does not) and snapshots."""

from __future__ import annotations

from typing import Any

import pytest

from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store import EventType, Kind, Store, StoreEvent, WatchEvent
from ingressd.store.compacting import LAST_APPLIED, Compactor
from ingressd.store.references import (
    ingress_secret_keys,
    ingress_service_keys,
    slice_content,
    slice_service_key,
)
from ingressd.store.snapshot import ChangeLog, LoggedMap, changed_keys

K = ObjectKey
ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


# -- object builders ---------------------------------------------------------------------------


def ingress(
    name: str,
    *,
    services: tuple[str, ...] = ("svc",),
    tls: tuple[str, ...] = (),
    namespace: str = "default",
    annotations: dict[str, str] | None = None,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "resourceVersion": "1"}
    if annotations is not None:
        meta["annotations"] = annotations
    paths = [
        {
            "path": f"/{s}",
            "pathType": "Prefix",
            "backend": {"service": {"name": s, "port": {"number": 80}}},
        }
        for s in services
    ]
    spec: dict[str, Any] = {"rules": [{"host": "foo.com", "http": {"paths": paths}}]}
    if tls:
        spec["tls"] = [{"hosts": ["foo.com"], "secretName": s} for s in tls]
    obj: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta,
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def service(name: str, *, port: int = 80, rv: str = "1", lb_ip: str = "") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "spec": {"ports": [{"port": port}]},
    }
    if lb_ip:
        obj["status"] = {"loadBalancer": {"ingress": [{"ip": lb_ip}]}}
    return obj


def endpoint_slice(
    name: str,
    service_name: str | None = "svc",
    *,
    addresses: tuple[str, ...] = ("10.0.0.1",),
    ready: bool = True,
    rv: str = "1",
    node: str = "node-1",
) -> dict[str, Any]:
    labels = {} if service_name is None else {"kubernetes.io/service-name": service_name}
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default", "labels": labels, "resourceVersion": rv},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [a],
                "conditions": {"ready": ready, "serving": ready, "terminating": False},
                "nodeName": node,
                "targetRef": {"kind": "Pod", "name": f"pod-{a}", "uid": f"uid-{a}-{rv}"},
            }
            for a in addresses
        ],
    }


def secret(name: str, *, cert: str = "Y2VydA==", rv: str = "1") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default", "resourceVersion": rv},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": cert, "tls.key": "a2V5"},
    }


def config_map(name: str, data: dict[str, str], *, namespace: str = "ingress") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def ingress_class(name: str, *, default: bool = False, rv: str = "1") -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations, "resourceVersion": rv},
        "spec": {"controller": "k8s.io/ingress-nginx"},
    }


class Harness:
    def __init__(self, configmap: str | None = None) -> None:
        self.channel = UpdateChannel()
        self.store = Store(
            channel=self.channel,
            configmap=None if configmap is None else K(configmap),
            clock=lambda: 42.0,
        )

    def apply(self, type_: EventType, obj: dict[str, Any]) -> StoreEvent | None:
        """Apply (to set the scene) and drain the channel."""
        event = self.store.apply(WatchEvent(type_, obj))
        self.channel.get_nowait_all()
        return event

    def emitted(self, type_: EventType, obj: dict[str, Any]) -> bool:
        """Apply, check the returned event is the one on the channel, and say if one came."""
        event = self.store.apply(WatchEvent(type_, obj))
        queued = self.channel.get_nowait_all()
        assert queued == ([] if event is None else [event])
        return event is not None


@pytest.fixture
def h() -> Harness:
    return Harness(configmap="ingress/ingressd")


# -- events themselves -------------------------------------------------------------------------


def test_emitted_event_names_kind_type_key_and_receipt_time(h: Harness) -> None:
    event = h.store.apply(WatchEvent(ADDED, ingress("web")))
    assert event == StoreEvent(Kind.INGRESS, ADDED, K("default/web"), 42.0)
    assert h.channel.get_nowait_all() == [event]


def test_received_at_given_by_the_source_is_kept(h: Harness) -> None:
    event = h.store.apply(WatchEvent(ADDED, ingress("web")), received_at=7.5)
    assert event is not None and event.received_at == 7.5


def test_added_of_a_cached_key_is_emitted_as_modified(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    event = h.apply(ADDED, ingress("web", annotations={"a": "b"}))
    assert event is not None and event.type is MODIFIED


def test_modified_of_an_unknown_key_is_emitted_as_added(h: Harness) -> None:
    event = h.apply(MODIFIED, ingress("web"))
    assert event is not None and event.type is ADDED


def test_deleted_of_unknown_object_emits_nothing(h: Harness) -> None:
    for obj in (ingress("x"), ingress_class("x"), service("x"), secret("x")):
        assert not h.emitted(DELETED, obj)
    assert not h.emitted(DELETED, endpoint_slice("x"))
    assert not h.emitted(DELETED, config_map("ingressd", {}))


def test_missing_namespace_means_default(h: Harness) -> None:
    obj = ingress("web")
    del obj["metadata"]["namespace"]
    event = h.apply(ADDED, obj)
    assert event is not None and event.key == "default/web"


def test_unknown_kinds_are_counted_and_ignored(h: Harness) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}
    assert not h.emitted(ADDED, pod)
    assert not h.emitted(ADDED, pod)
    assert not h.emitted(ADDED, {"metadata": {"name": "nokind"}})
    assert h.store.ignored["Pod"] == 2
    assert h.store.ignored["None"] == 1
    assert sum(h.store.counts().values()) == 0


def test_known_kind_in_another_api_version_is_ignored(h: Harness) -> None:
    old = {**ingress("web"), "apiVersion": "extensions/v1beta1"}
    assert not h.emitted(ADDED, old)
    assert h.store.ignored["Ingress (extensions/v1beta1)"] == 1


def test_object_without_name_is_rejected(h: Harness) -> None:
    assert not h.emitted(ADDED, {"apiVersion": "v1", "kind": "Service", "metadata": {}})
    assert not h.emitted(ADDED, {"apiVersion": "v1", "kind": "Service", "metadata": "oops"})
    assert h.store.rejected == 2


# -- relevance: Ingress ------------------------------------------------------------------------


def test_ingress_added_modified_deleted_emit(h: Harness) -> None:
    assert h.emitted(ADDED, ingress("web"))
    assert h.emitted(MODIFIED, ingress("web", services=("other",)))
    assert h.emitted(DELETED, ingress("web"))
    assert h.store.counts()[Kind.INGRESS] == 0


def test_ingress_annotation_change_emits(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    assert h.emitted(MODIFIED, ingress("web", annotations={"nginx.ingress.kubernetes.io/x": "1"}))


def test_ingress_creation_timestamp_change_emits(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    recreated = ingress("web")
    recreated["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
    assert h.emitted(MODIFIED, recreated)


def test_ingress_status_only_update_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    updated = ingress("web", status={"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}})
    updated["metadata"]["resourceVersion"] = "2"
    updated["metadata"]["labels"] = {"team": "a"}
    assert not h.emitted(MODIFIED, updated)
    assert h.store.snapshot().ingresses[K("default/web")] is updated


# -- relevance: IngressClass -------------------------------------------------------------------


def test_ingress_class_is_keyed_by_bare_name_and_emits_on_change(h: Harness) -> None:
    event = h.apply(ADDED, ingress_class("nginx"))
    assert event is not None and event.key == "nginx"
    assert h.emitted(MODIFIED, ingress_class("nginx", default=True))
    assert h.emitted(DELETED, ingress_class("nginx"))


def test_ingress_class_resource_version_bump_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress_class("nginx"))
    assert not h.emitted(MODIFIED, ingress_class("nginx", rv="2"))


# -- relevance: Service ------------------------------------------------------------------------


def test_service_referenced_by_an_ingress_emits(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("svc",)))
    assert h.emitted(ADDED, service("svc"))
    assert h.emitted(MODIFIED, service("svc", port=81))
    assert h.emitted(DELETED, service("svc"))


def test_unreferenced_service_emits_nothing_but_is_cached(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("svc",)))
    assert not h.emitted(ADDED, service("lonely"))
    assert not h.emitted(MODIFIED, service("lonely", port=81))
    assert K("default/lonely") in h.store.snapshot().services
    assert not h.emitted(DELETED, service("lonely"))


def test_service_status_only_update_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    h.apply(ADDED, service("svc"))
    assert not h.emitted(MODIFIED, service("svc", rv="2", lb_ip="1.2.3.4"))


def test_service_in_another_namespace_is_not_referenced(h: Harness) -> None:
    h.apply(ADDED, ingress("web", namespace="team-a", services=("svc",)))
    assert not h.emitted(ADDED, service("svc"))
    assert h.store.ingresses_using_service(K("team-a/svc")) == {K("team-a/web")}


# -- relevance: EndpointSlice ------------------------------------------------------------------


def test_slice_of_referenced_service_emits_on_endpoint_change(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    event = h.apply(ADDED, endpoint_slice("svc-abc"))
    assert event is not None and event.endpoints_only
    assert h.emitted(MODIFIED, endpoint_slice("svc-abc", addresses=("10.0.0.1", "10.0.0.2")))
    assert h.emitted(
        MODIFIED, endpoint_slice("svc-abc", addresses=("10.0.0.1", "10.0.0.2"), ready=False)
    )
    assert h.emitted(DELETED, endpoint_slice("svc-abc"))


def test_slice_update_without_endpoint_change_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    h.apply(ADDED, endpoint_slice("svc-abc"))
    touched = endpoint_slice("svc-abc", rv="2", node="node-2")
    touched["endpoints"][0]["zone"] = "eu-1a"
    touched["endpoints"][0]["hints"] = {"forZones": [{"name": "eu-1a"}]}
    assert not h.emitted(MODIFIED, touched)
    # The cache still holds the newest object.
    assert h.store.snapshot().endpoint_slices[K("default/svc")] == (touched,)


def test_slice_of_unreferenced_service_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("svc",)))
    assert not h.emitted(ADDED, endpoint_slice("other-1", "other"))
    assert not h.emitted(MODIFIED, endpoint_slice("other-1", "other", addresses=("10.9.9.9",)))
    assert not h.emitted(DELETED, endpoint_slice("other-1", "other"))


def test_slice_label_change_moves_it_between_services(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("a", "b")))
    h.apply(ADDED, endpoint_slice("s1", "a"))
    assert h.emitted(MODIFIED, endpoint_slice("s1", "b"))
    slices = h.store.snapshot().endpoint_slices
    assert K("default/a") not in slices
    assert [s["metadata"]["name"] for s in slices[K("default/b")]] == ["s1"]


def test_slice_moving_away_from_a_referenced_service_emits(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("a",)))
    h.apply(ADDED, endpoint_slice("s1", "a"))
    h.apply(ADDED, endpoint_slice("s2", "a"))
    assert h.emitted(MODIFIED, endpoint_slice("s1", "unreferenced"))
    assert h.emitted(MODIFIED, endpoint_slice("s2", None))
    assert list(h.store.snapshot().endpoint_slices) == [K("default/unreferenced")]
    # Neither side of these moves is referenced.
    assert not h.emitted(MODIFIED, endpoint_slice("s1", None))
    assert not h.emitted(DELETED, endpoint_slice("s2", None))
    assert h.store.snapshot().endpoint_slices == {}


def test_snapshot_slices_are_sorted_by_name(h: Harness) -> None:
    for name in ("svc-c", "svc-a", "svc-b"):
        h.apply(ADDED, endpoint_slice(name))
    names = [s["metadata"]["name"] for s in h.store.snapshot().endpoint_slices[K("default/svc")]]
    assert names == ["svc-a", "svc-b", "svc-c"]


# -- relevance: Secret -------------------------------------------------------------------------


def test_tls_secret_referenced_by_an_ingress_emits_on_data_change(h: Harness) -> None:
    h.apply(ADDED, ingress("web", tls=("cert",)))
    assert h.emitted(ADDED, secret("cert"))
    assert h.emitted(MODIFIED, secret("cert", cert="bmV3"))
    assert not h.emitted(MODIFIED, secret("cert", cert="bmV3", rv="3"))
    assert h.emitted(DELETED, secret("cert"))


def test_unreferenced_secret_emits_nothing(h: Harness) -> None:
    h.apply(ADDED, ingress("web", tls=("cert",)))
    assert not h.emitted(ADDED, secret("db-password"))
    assert not h.emitted(MODIFIED, secret("db-password", cert="eA=="))
    assert not h.emitted(DELETED, secret("db-password"))


# -- relevance: ConfigMap ----------------------------------------------------------------------


def test_controller_configmap_emits(h: Harness) -> None:
    assert h.emitted(ADDED, config_map("ingressd", {"a": "1"}))
    assert h.emitted(MODIFIED, config_map("ingressd", {"a": "2"}))
    assert not h.emitted(MODIFIED, config_map("ingressd", {"a": "2"}))
    assert h.emitted(DELETED, config_map("ingressd", {}))


def test_other_configmaps_emit_nothing(h: Harness) -> None:
    assert not h.emitted(ADDED, config_map("ingressd", {"a": "1"}, namespace="default"))
    assert not h.emitted(ADDED, config_map("other", {"a": "1"}))
    assert not h.emitted(MODIFIED, config_map("other", {"a": "2"}))
    assert h.store.counts()[Kind.CONFIG_MAP] == 2


def test_no_configmap_configured_means_none_is_relevant() -> None:
    h = Harness(configmap=None)
    assert not h.emitted(ADDED, config_map("ingressd", {"a": "1"}))


def test_configmaps_named_by_custom_headers_emit_while_an_ingress_names_them(h: Harness) -> None:
    custom = {"nginx.ingress.kubernetes.io/custom-headers": "hdrs"}
    assert not h.emitted(ADDED, config_map("hdrs", {"X-A": "1"}, namespace="default"))
    h.apply(ADDED, ingress("web", annotations=custom))
    assert h.emitted(MODIFIED, config_map("hdrs", {"X-A": "2"}, namespace="default"))
    assert not h.emitted(MODIFIED, config_map("hdrs", {"X-A": "2"}, namespace="default"))
    assert not h.emitted(ADDED, config_map("hdrs", {"X-A": "2"}, namespace="other"))
    h.apply(MODIFIED, ingress("web"))
    assert not h.emitted(MODIFIED, config_map("hdrs", {"X-A": "3"}, namespace="default"))


def test_configmaps_the_controller_configmap_names_emit(h: Harness) -> None:
    h.apply(ADDED, config_map("ingressd", {"add-headers": "ingress/resp"}))
    assert h.emitted(ADDED, config_map("resp", {"X-A": "1"}))
    assert not h.emitted(ADDED, config_map("req", {"X-A": "1"}))
    h.apply(MODIFIED, config_map("ingressd", {"proxy-set-headers": "ingress/req"}))
    assert h.emitted(MODIFIED, config_map("req", {"X-A": "2"}))
    assert not h.emitted(MODIFIED, config_map("resp", {"X-A": "2"}))
    assert h.emitted(DELETED, config_map("req", {}))


# -- indexes follow Ingress edits --------------------------------------------------------------


def test_indexes_follow_ingress_edits(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("a",), tls=("c1",)))
    h.apply(ADDED, ingress("api", services=("a", "b")))
    assert h.store.ingresses_using_service(K("default/a")) == {K("default/web"), K("default/api")}
    assert h.store.ingresses_using_secret(K("default/c1")) == {K("default/web")}

    h.apply(MODIFIED, ingress("web", services=("b",), tls=("c2",)))
    assert h.store.ingresses_using_service(K("default/a")) == {K("default/api")}
    assert h.store.ingresses_using_service(K("default/b")) == {K("default/web"), K("default/api")}
    assert h.store.ingresses_using_secret(K("default/c1")) == frozenset()
    assert h.store.ingresses_using_secret(K("default/c2")) == {K("default/web")}
    # Secret c1 is no longer referenced: its changes no longer matter.
    assert not h.emitted(ADDED, secret("c1"))
    assert h.emitted(ADDED, secret("c2"))


def test_indexes_forget_deleted_ingresses(h: Harness) -> None:
    h.apply(ADDED, ingress("web", services=("a",), tls=("c1",)))
    h.apply(ADDED, endpoint_slice("a-1", "a"))
    h.apply(DELETED, ingress("web"))
    assert h.store.ingresses_using_service(K("default/a")) == frozenset()
    assert h.store.ingresses_using_secret(K("default/c1")) == frozenset()
    assert not h.emitted(MODIFIED, endpoint_slice("a-1", "a", addresses=("10.1.1.1",)))
    assert not h.emitted(ADDED, secret("c1"))


def test_default_backend_service_is_referenced(h: Harness) -> None:
    obj = ingress("web", services=())
    obj["spec"]["defaultBackend"] = {"service": {"name": "fallback", "port": {"number": 80}}}
    h.apply(ADDED, obj)
    assert h.store.ingresses_using_service(K("default/fallback")) == {K("default/web")}


# -- snapshots ---------------------------------------------------------------------------------


def test_snapshot_does_not_see_later_changes(h: Harness) -> None:
    h.apply(ADDED, ingress("web"))
    h.apply(ADDED, service("svc"))
    first = endpoint_slice("svc-1")
    h.apply(ADDED, first)
    before = h.store.snapshot()

    h.apply(ADDED, ingress("api"))
    h.apply(DELETED, service("svc"))
    h.apply(MODIFIED, endpoint_slice("svc-1", addresses=("10.0.0.9",)))
    h.apply(ADDED, endpoint_slice("svc-2"))

    assert set(before.ingresses) == {K("default/web")}
    assert set(before.services) == {K("default/svc")}
    assert before.endpoint_slices == {K("default/svc"): (first,)}
    after = h.store.snapshot()
    assert set(after.ingresses) == {K("default/web"), K("default/api")}
    assert after.services == {}
    assert [s["metadata"]["name"] for s in after.endpoint_slices[K("default/svc")]] == [
        "svc-1",
        "svc-2",
    ]


def test_snapshot_holds_every_kind(h: Harness) -> None:
    objs = [
        ingress("web"),
        ingress_class("nginx"),
        service("svc"),
        endpoint_slice("svc-1"),
        secret("cert"),
        config_map("ingressd", {}),
    ]
    for obj in objs:
        h.apply(ADDED, obj)
    snap = h.store.snapshot()
    assert snap.ingresses[K("default/web")] is objs[0]
    assert snap.ingress_classes[K("nginx")] is objs[1]
    assert snap.services[K("default/svc")] is objs[2]
    assert snap.endpoint_slices[K("default/svc")][0] is objs[3]
    assert snap.secrets[K("default/cert")] is objs[4]
    assert snap.config_maps[K("ingress/ingressd")] is objs[5]
    assert h.store.counts() == dict.fromkeys(Kind, 1)


# -- references: tolerance of malformed objects ------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        None,
        "text",
        {"rules": "x"},
        {"rules": [None, {"http": None}, {"http": {"paths": [1, {"backend": None}]}}]},
        {"rules": [{"http": {"paths": [{"backend": {"service": {"name": 5}}}]}}]},
        {"defaultBackend": {"resource": {"kind": "Bucket"}}, "tls": [None, {"secretName": None}]},
        {"tls": "x"},
    ],
)
def test_malformed_ingress_references_are_ignored(spec: Any, h: Harness) -> None:
    obj = {"kind": "Ingress", "metadata": {"name": "bad"}, "spec": spec}
    assert ingress_service_keys(obj) == frozenset()
    assert ingress_secret_keys(obj) == frozenset()
    assert h.emitted(ADDED, obj)


def test_references_are_namespaced_by_the_ingress() -> None:
    obj = ingress("web", namespace="shop", services=("a", "b", "a"), tls=("t",))
    assert ingress_service_keys(obj) == {K("shop/a"), K("shop/b")}
    assert ingress_secret_keys(obj) == {K("shop/t")}


def test_malformed_slices_are_tolerated(h: Harness) -> None:
    bad = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "s", "labels": "oops"},
        "ports": [None, {"port": 1}],
        "endpoints": [None, {"addresses": "x", "conditions": None}],
    }
    assert slice_service_key(bad) is None
    assert slice_content(bad) == (None, ((None, 1, None),), (((), None, None, None),))
    assert not h.emitted(ADDED, bad)
    assert h.store.counts()[Kind.ENDPOINT_SLICE] == 1


# -- the change log between snapshots ------------------------------------------------------------


def test_the_keys_changed_between_two_snapshots_come_from_the_log(h: Harness) -> None:
    for i in range(5):
        h.apply(ADDED, ingress(f"i{i}"))
        h.apply(ADDED, service(f"s{i}"))
    before = h.store.snapshot()
    h.apply(MODIFIED, ingress("i1", annotations={"a": "b"}))
    h.apply(DELETED, ingress("i2"))
    h.apply(ADDED, ingress("i9"))
    h.apply(ADDED, ingress("i8"))
    h.apply(DELETED, ingress("i8"))  # came and went: the same in both snapshots
    h.apply(MODIFIED, service("s3", port=81))
    after = h.store.snapshot()
    assert changed_keys(before.ingresses, after.ingresses) == {
        K("default/i1"),
        K("default/i2"),
        K("default/i9"),
    }
    assert changed_keys(before.services, after.services) == {K("default/s3")}
    assert changed_keys(before.secrets, after.secrets) == set()


def test_without_the_log_or_past_what_it_keeps_the_keys_are_not_known() -> None:
    log = ChangeLog(limit=4)
    old = LoggedMap({K("a"): 1}, log)
    for n in range(6):
        log.note(K(f"k{n}"))
    assert changed_keys(old, LoggedMap({K("a"): 1}, log)) is None  # forgotten
    assert changed_keys(dict(old), LoggedMap({K("a"): 1}, log)) is None  # a plain copy
    assert changed_keys(LoggedMap({}, ChangeLog()), LoggedMap({}, log)) is None  # another log


# -- compacting --------------------------------------------------------------------------------


def test_the_store_drops_bookkeeping_and_shares_recurring_parts(h: Harness) -> None:
    first = ingress("a", annotations={LAST_APPLIED: "{...}", "x/y": "1"}, status={"a": {}})
    first["metadata"]["managedFields"] = [{"manager": "kubectl"}]
    second = ingress("b", status={"a": {}})
    h.apply(ADDED, first)
    h.apply(ADDED, second)
    h.apply(ADDED, service("s1"))
    h.apply(ADDED, service("s2"))
    snapshot = h.store.snapshot()
    a, b = snapshot.ingresses[K("default/a")], snapshot.ingresses[K("default/b")]
    assert a["metadata"]["annotations"] == {"x/y": "1"}
    assert "managedFields" not in a["metadata"]
    assert a["status"] is b["status"] == {"a": {}}
    s1, s2 = snapshot.services[K("default/s1")], snapshot.services[K("default/s2")]
    assert s1["spec"]["ports"] is s2["spec"]["ports"]


def test_values_that_are_equal_but_of_other_types_are_not_shared() -> None:
    compactor = Compactor()
    one = {"status": {"x": 1}}
    true = {"status": {"x": True}}
    compactor.compact(Kind.INGRESS, one)
    compactor.compact(Kind.INGRESS, true)
    assert true["status"]["x"] is True


def test_an_endpoint_slice_is_kept_with_what_the_build_reads_and_its_recurring_parts_shared(
    h: Harness,
) -> None:
    def real_slice(name: str, address: str) -> dict[str, Any]:
        """A slice as the EndpointSlice controller writes one."""
        made = endpoint_slice(name, "web", addresses=(address,))
        meta = made["metadata"]
        meta["namespace"] = "".join(["def", "ault"])  # a string of its own, as JSON gives
        meta["labels"]["endpointslice.kubernetes.io/managed-by"] = "endpointslice-controller"
        meta["annotations"] = {"endpoints.kubernetes.io/last-change-trigger-time": "2026-01-01"}
        meta["ownerReferences"] = [{"kind": "Service", "name": "web", "uid": "u-1"}]
        meta["uid"], meta["generation"] = f"uid-{name}", 3
        made["endpoints"][0].update(zone="z1", hints={"forZones": [{"name": "z1"}]})
        return made

    h.apply(ADDED, real_slice("web-1", "10.0.0.1"))
    h.apply(ADDED, real_slice("web-2", "10.0.0.2"))
    slices = h.store.snapshot().endpoint_slices[K("default/web")]
    a, b = sorted(slices, key=lambda s: str(s["metadata"]["name"]))
    assert a["metadata"] == {
        "name": "web-1",
        "namespace": "default",
        "resourceVersion": "1",
        "labels": {"kubernetes.io/service-name": "web"},
    }
    ready = {"ready": True, "serving": True, "terminating": False}
    assert a["endpoints"] == [{"addresses": ["10.0.0.1"], "conditions": ready}]
    assert a["endpoints"][0]["conditions"] is b["endpoints"][0]["conditions"]
    assert a["ports"] is b["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    assert a["metadata"]["namespace"] is b["metadata"]["namespace"]


def test_owner_references_are_dropped_and_identity_and_age_kept_for_ingresses_only(
    h: Harness,
) -> None:
    identity = {"uid": "u-1", "creationTimestamp": "2026-01-01T00:00:00Z", "generation": 2}
    owner = {"ownerReferences": [{"kind": "HelmRelease", "name": "web"}]}
    owned_service, owned_ingress = service("web"), ingress("web")
    owned_service["metadata"].update(identity, **owner)
    owned_ingress["metadata"].update(identity, **owner)
    h.apply(ADDED, owned_service)
    h.apply(ADDED, owned_ingress)
    snapshot = h.store.snapshot()
    meta = snapshot.services[K("default/web")]["metadata"]
    assert meta == {"name": "web", "namespace": "default", "resourceVersion": "1"}
    meta = snapshot.ingresses[K("default/web")]["metadata"]
    assert meta == {"name": "web", "namespace": "default", "resourceVersion": "1", **identity}
