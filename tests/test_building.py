"""Building: Ingress semantics from a snapshot of raw objects to the Configuration model."""

from __future__ import annotations

import base64
import copy
import datetime
import hashlib
import random
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from ingressd.build.building import BuildOptions, BuildResult, build_configuration
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Endpoint,
    Location,
    ObjectKey,
    PathType,
    Problem,
    Server,
)
from ingressd.store.snapshot import KubeObject, Snapshot
from tests.support import objects as o

OPTIONS = BuildOptions()


def build(*objects: KubeObject, options: BuildOptions = OPTIONS) -> BuildResult:
    return build_configuration(o.snapshot(*objects), options)


def server(result: BuildResult, hostname: str) -> Server:
    found = [s for s in result.configuration.servers if s.hostname == hostname]
    assert found, f"no server {hostname}: {[s.hostname for s in result.configuration.servers]}"
    return found[0]


def routes(result: BuildResult, hostname: str) -> list[tuple[str, str, str | None]]:
    """(path, pathType, backend) of a server's locations, in model order."""
    return [
        (loc.path, loc.path_type.value, loc.backend) for loc in server(result, hostname).locations
    ]


def hostnames(result: BuildResult) -> list[str]:
    return [s.hostname for s in result.configuration.servers]


def fields(result: BuildResult) -> list[tuple[str, str, str]]:
    return [(p.kind, p.key, p.field) for p in result.problems]


def web(name: str = "web", namespace: str = "default", *addresses: str) -> list[KubeObject]:
    """A Service with one unnamed port 80 and a slice with ``addresses`` on 8080."""
    return [
        o.service(name, namespace),
        o.endpoint_slice(name, namespace, endpoints=addresses or ("10.0.0.1",)),
    ]


def simple(
    name: str, host: str | None, *paths: str, created: str = o.DEFAULT_TIMESTAMP, **kw: Any
) -> KubeObject:
    return o.ingress(
        name, rules=[o.rule(host, *(o.path(p) for p in paths or ("/",)))], created=created, **kw
    )


@pytest.fixture(scope="module")
def pem() -> tuple[str, str]:
    return o.self_signed_certificate("www.a.com", "*.a.com")


@pytest.fixture(scope="module")
def other_pem() -> tuple[str, str]:
    return o.self_signed_certificate("www.b.com")


# --- ingress class -------------------------------------------------------------------------

CLASS_CASES: list[tuple[str, dict[str, Any], list[KubeObject], bool]] = [
    ("class-name-equals-option", {"ingress_class_name": "ingressd"}, [], True),
    (
        "class-name-names-our-controller",
        {"ingress_class_name": "public"},
        [o.ingress_class("public")],
        True,
    ),
    (
        "class-name-names-other-controller",
        {"ingress_class_name": "nginx"},
        [o.ingress_class("nginx", "k8s.io/ingress-nginx")],
        False,
    ),
    ("class-name-unknown", {"ingress_class_name": "nginx"}, [], False),
    (
        "class-name-beats-annotation",
        {"ingress_class_name": "nginx", "annotations": {"kubernetes.io/ingress.class": "ingressd"}},
        [],
        False,
    ),
    (
        "legacy-annotation-ours",
        {"ingress_class_name": None, "annotations": {"kubernetes.io/ingress.class": "ingressd"}},
        [],
        True,
    ),
    (
        "legacy-annotation-other",
        {"ingress_class_name": None, "annotations": {"kubernetes.io/ingress.class": "nginx"}},
        [o.ingress_class("ingressd", default=True)],
        False,
    ),
    ("no-class-no-default", {"ingress_class_name": None}, [o.ingress_class("ingressd")], False),
    (
        "no-class-our-default",
        {"ingress_class_name": None},
        [o.ingress_class("ingressd", default=True)],
        True,
    ),
    (
        "no-class-other-default",
        {"ingress_class_name": None},
        [o.ingress_class("nginx", "k8s.io/ingress-nginx", default=True)],
        False,
    ),
]


@pytest.mark.parametrize(
    ("kwargs", "classes", "ours"),
    [c[1:] for c in CLASS_CASES],
    ids=[c[0] for c in CLASS_CASES],
)
def test_ingress_class_selects_ingresses(
    kwargs: dict[str, Any], classes: list[KubeObject], ours: bool
) -> None:
    ing = o.ingress("app", rules=[o.rule("www.a.com", o.path("/"))], **kwargs)
    result = build(ing, *classes, *web())
    assert ("www.a.com" in hostnames(result)) is ours
    assert result.ignored == (() if ours else (ObjectKey("default/app"),))
    assert result.problems == ()


def test_options_choose_class_and_controller() -> None:
    options = BuildOptions(ingress_class="edge", controller="example.com/edge")
    result = build(
        simple("a", "a.com", ingress_class_name="edge"),
        simple("b", "b.com", ingress_class_name="gold"),
        simple("c", "c.com", ingress_class_name="ingressd"),
        o.ingress_class("gold", "example.com/edge"),
        *web(),
        options=options,
    )
    assert hostnames(result) == [CATCH_ALL, "a.com", "b.com"]
    assert result.ignored == (ObjectKey("default/c"),)


# --- rules, paths, servers -----------------------------------------------------------------


def test_rules_become_servers_sorted_with_catch_all_first() -> None:
    result = build(
        o.ingress(
            "app",
            rules=[
                o.rule("zz.com", o.path("/")),
                o.rule("*.a.com", o.path("/")),
                o.rule("aa.com", o.path("/")),
                o.rule(None, o.path("/x")),
            ],
        ),
        *web(),
    )
    assert hostnames(result) == [CATCH_ALL, "*.a.com", "aa.com", "zz.com"]
    assert server(result, "*.a.com").is_wildcard


PATH_CASES: list[tuple[str, dict[str, Any], tuple[str, str]]] = [
    ("exact-kept-as-written", {"path": "/api/", "path_type": "Exact"}, ("/api/", "Exact")),
    (
        "prefix-trailing-slash-stripped",
        {"path": "/api/", "path_type": "Prefix"},
        ("/api", "Prefix"),
    ),
    ("prefix-root-kept", {"path": "/", "path_type": "Prefix"}, ("/", "Prefix")),
    (
        "implementation-specific-is-prefix",
        {"path": "/img/", "path_type": "ImplementationSpecific"},
        ("/img", "Prefix"),
    ),
    ("missing-path-type-is-prefix", {"path": "/docs", "path_type": None}, ("/docs", "Prefix")),
    ("missing-path-is-root", {"path": None, "path_type": "Prefix"}, ("/", "Prefix")),
    ("empty-path-is-root", {"path": "", "path_type": "Exact"}, ("/", "Exact")),
]


@pytest.mark.parametrize(
    ("path_kwargs", "expected"), [c[1:] for c in PATH_CASES], ids=[c[0] for c in PATH_CASES]
)
def test_path_types_resolve(path_kwargs: dict[str, Any], expected: tuple[str, str]) -> None:
    result = build(o.ingress("app", rules=[o.rule("a.com", o.path(**path_kwargs))]), *web())
    got = [(p, t) for p, t, _ in routes(result, "a.com")]
    assert expected in got
    assert result.problems == ()


def test_exact_and_prefix_on_same_path_are_both_kept_and_sorted() -> None:
    result = build(
        o.ingress(
            "app",
            rules=[
                o.rule(
                    "a.com",
                    o.path("/b", path_type="Prefix"),
                    o.path("/a", path_type="Prefix"),
                    o.path("/a", path_type="Exact"),
                    o.path("/", path_type="Prefix"),
                )
            ],
        ),
        *web(),
    )
    assert routes(result, "a.com") == [
        ("/", "Prefix", "default-web-80"),
        ("/a", "Exact", "default-web-80"),
        ("/a", "Prefix", "default-web-80"),
        ("/b", "Prefix", "default-web-80"),
    ]


def test_host_without_root_answers_404_at_root() -> None:
    result = build(simple("app", "a.com", "/api"), *web())
    assert server(result, "a.com").locations[0] == Location(
        "/", PathType.PREFIX, backend=None, ingress=ObjectKey(""), status=404
    )


def test_rule_without_http_still_makes_a_server() -> None:
    result = build(o.ingress("app", rules=[o.rule("a.com")]), *web())
    assert routes(result, "a.com") == [("/", "Prefix", None)]


def test_rules_of_one_host_merge_across_ingresses() -> None:
    result = build(simple("one", "a.com", "/one"), simple("two", "a.com", "/two"), *web())
    by_path = {loc.path: loc.ingress for loc in server(result, "a.com").locations}
    assert by_path == {"/": "", "/one": "default/one", "/two": "default/two"}


# --- conflicts and order --------------------------------------------------------------------

CONFLICT_CASES: list[tuple[str, str, str, str]] = [
    # (id, created of "first", created of "second", expected winner)
    ("older-wins", "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z", "default/first"),
    (
        "older-wins-whatever-the-name",
        "2024-06-01T00:00:00Z",
        "2024-01-01T00:00:00Z",
        "default/second",
    ),
    ("same-age-name-decides", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "default/first"),
    ("fractional-seconds", "2024-01-01T00:00:00.5Z", "2024-01-01T00:00:00.25Z", "default/second"),
    (
        "offsets-compared-as-instants",
        "2024-01-01T01:00:00+02:00",
        "2024-01-01T00:00:00Z",
        "default/first",
    ),
    ("missing-sorts-last", "", "2030-01-01T00:00:00Z", "default/second"),
    ("garbage-sorts-last", "yesterday", "2030-01-01T00:00:00Z", "default/second"),
]


@pytest.mark.parametrize(
    ("first_created", "second_created", "winner"),
    [c[1:] for c in CONFLICT_CASES],
    ids=[c[0] for c in CONFLICT_CASES],
)
def test_oldest_ingress_wins_a_conflict(
    first_created: str, second_created: str, winner: str
) -> None:
    def make(name: str, created: str, service: str) -> KubeObject:
        ing = o.ingress(name, rules=[o.rule("a.com", o.path("/api", service))], created=created)
        if not created:
            del ing["metadata"]["creationTimestamp"]
        return ing

    result = build(
        make("first", first_created, "one"),
        make("second", second_created, "two"),
        *web("one"),
        *web("two"),
    )
    api = [loc for loc in server(result, "a.com").locations if loc.path == "/api"]
    assert [loc.ingress for loc in api] == [winner]
    loser = "default/second" if winner == "default/first" else "default/first"
    assert result.problems == (
        Problem(
            "Ingress",
            ObjectKey(loser),
            "spec.rules[0].http.paths[0].path",
            f"/api (Prefix) of host a.com is already defined by Ingress {winner}",
            winner=winner,
        ),
    )


def test_prefix_with_and_without_trailing_slash_conflict() -> None:
    result = build(simple("a", "a.com", "/api"), simple("b", "a.com", "/api/"), *web())
    assert fields(result) == [("Ingress", "default/b", "spec.rules[0].http.paths[0].path")]


def test_exact_and_prefix_do_not_conflict() -> None:
    result = build(
        o.ingress("a", rules=[o.rule("a.com", o.path("/api", path_type="Exact"))]),
        o.ingress("b", rules=[o.rule("a.com", o.path("/api", path_type="Prefix"))]),
        *web(),
    )
    assert result.problems == ()


def test_conflict_on_catch_all_names_it() -> None:
    result = build(simple("a", None, "/x"), simple("b", None, "/x"), *web())
    assert "of the catch-all server is already defined by Ingress default/a" in (
        result.problems[0].reason
    )


def test_a_skipped_path_does_not_claim_its_route() -> None:
    older = o.ingress("old", rules=[o.rule("a.com", o.path("/api", "missing"))])
    newer = o.ingress(
        "new", rules=[o.rule("a.com", o.path("/api"))], created="2025-01-01T00:00:00Z"
    )
    result = build(older, newer, *web())
    assert ("/api", "Prefix", "default-web-80") in routes(result, "a.com")
    assert fields(result) == [
        ("Ingress", "default/old", "spec.rules[0].http.paths[0].backend.service.name")
    ]


def test_result_does_not_depend_on_dict_order(pem: tuple[str, str]) -> None:
    objects = [
        simple("a", "a.com", "/", "/x"),
        simple("b", "a.com", "/x", "/y"),
        simple("c", None, "/", created="2023-01-01T00:00:00Z"),
        o.ingress(
            "d",
            rules=[o.rule("www.a.com", o.path("/"))],
            tls_entries=[o.tls("www.a.com", secret_name="tls")],
            default_backend=o.backend("web", 80),
        ),
        o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]),
        o.service("web"),
        o.endpoint_slice("web", name="s1", endpoints=["10.0.0.2", "10.0.0.1"]),
        o.endpoint_slice("web", name="s2", endpoints=["10.0.0.3", "10.0.0.1"]),
    ]
    first = build(*objects)
    again = build(*reversed(objects))
    assert first == again
    assert build(*objects) == first


# --- backends and endpoints ------------------------------------------------------------------


def test_backend_by_port_number_and_name() -> None:
    svc = o.service(
        "web", ports=[o.service_port(80, "http", target_port=8080), o.service_port(9000, "admin")]
    )
    slice_ = o.endpoint_slice(
        "web",
        endpoints=["10.0.0.1"],
        ports=[{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "admin", "port": 9999}],
    )
    result = build(
        o.ingress(
            "app",
            rules=[o.rule("a.com", o.path("/", "web", 80), o.path("/admin", "web", "admin"))],
        ),
        svc,
        slice_,
    )
    assert result.configuration.backends == (
        Backend(
            BackendName("default-web-80"), "default", "web", "80", (Endpoint("10.0.0.1", 8080),)
        ),
        Backend(
            BackendName("default-web-admin"),
            "default",
            "web",
            "admin",
            (Endpoint("10.0.0.1", 9999),),
        ),
    )


ENDPOINT_CASES: list[tuple[str, list[KubeObject], list[tuple[str, int]]]] = [
    (
        "ready-endpoints-sorted",
        [o.endpoint_slice("web", endpoints=["10.0.0.9", "10.0.0.10", "10.0.0.1"])],
        [("10.0.0.1", 8080), ("10.0.0.10", 8080), ("10.0.0.9", 8080)],
    ),
    (
        "not-ready-skipped",
        [o.endpoint_slice("web", endpoints=["10.0.0.1", o.endpoint("10.0.0.2", ready=False)])],
        [("10.0.0.1", 8080)],
    ),
    (
        "terminating-skipped",
        [
            o.endpoint_slice(
                "web",
                endpoints=[o.endpoint("10.0.0.2", ready=True, terminating=True), "10.0.0.1"],
            )
        ],
        [("10.0.0.1", 8080)],
    ),
    (
        "unknown-readiness-counts-as-ready",
        [o.endpoint_slice("web", endpoints=[o.endpoint("10.0.0.3", ready=None, terminating=None)])],
        [("10.0.0.3", 8080)],
    ),
    (
        "every-address-of-an-endpoint",
        [o.endpoint_slice("web", endpoints=[o.endpoint("10.0.0.1", "10.0.0.2")])],
        [("10.0.0.1", 8080), ("10.0.0.2", 8080)],
    ),
    (
        "slices-merged-and-deduplicated",
        [
            o.endpoint_slice("web", name="web-a", endpoints=["10.0.0.1", "10.0.0.2"]),
            o.endpoint_slice("web", name="web-b", endpoints=["10.0.0.2", "10.0.0.3"]),
        ],
        [("10.0.0.1", 8080), ("10.0.0.2", 8080), ("10.0.0.3", 8080)],
    ),
    (
        "ipv6-slice",
        [o.endpoint_slice("web", endpoints=["fd00::1"], address_type="IPv6")],
        [("fd00::1", 8080)],
    ),
    (
        "fqdn-slice-skipped",
        [o.endpoint_slice("web", endpoints=["pod.example.com"], address_type="FQDN")],
        [],
    ),
    (
        "slice-port-with-other-name-skipped",
        [o.endpoint_slice("web", endpoints=["10.0.0.1"], port_name="metrics")],
        [],
    ),
    ("no-slices-empty-backend", [], []),
    ("slice-without-endpoints", [o.endpoint_slice("web")], []),
]


@pytest.mark.parametrize(
    ("slices", "expected"), [c[1:] for c in ENDPOINT_CASES], ids=[c[0] for c in ENDPOINT_CASES]
)
def test_endpoints_come_from_ready_slices(
    slices: list[KubeObject], expected: list[tuple[str, int]]
) -> None:
    result = build(simple("app", "a.com"), o.service("web"), *slices)
    (backend,) = result.configuration.backends
    assert [(e.address, e.port) for e in backend.endpoints] == expected
    assert result.problems == ()


def test_service_port_name_selects_slice_port() -> None:
    svc = o.service(
        "web", ports=[o.service_port(80, "http"), o.service_port(443, "https", target_port=8443)]
    )
    slice_ = o.endpoint_slice(
        "web",
        endpoints=["10.0.0.1"],
        ports=[{"name": "https", "port": 8443}, {"name": "http", "port": 8080}],
    )
    result = build(o.ingress("app", rules=[o.rule("a.com", o.path("/", "web", 443))]), svc, slice_)
    assert result.configuration.backends[0].endpoints == (Endpoint("10.0.0.1", 8443),)


def test_unnamed_service_port_matches_unnamed_slice_port() -> None:
    slice_ = o.endpoint_slice("web", endpoints=["10.0.0.1"], ports=[{"port": 8080, "name": ""}])
    result = build(simple("app", "a.com"), o.service("web"), slice_)
    assert result.configuration.backends[0].endpoints == (Endpoint("10.0.0.1", 8080),)


def test_one_backend_for_many_paths_and_ingresses() -> None:
    result = build(simple("a", "a.com", "/", "/x"), simple("b", "b.com", "/y"), *web())
    assert [b.name for b in result.configuration.backends] == ["default-web-80"]


def test_backends_are_named_per_namespace_and_sorted() -> None:
    result = build(
        o.ingress("app", "prod", rules=[o.rule("a.com", o.path("/", "web"), o.path("/z", "api"))]),
        *web("web", "prod"),
        *web("api", "prod"),
    )
    assert [b.name for b in result.configuration.backends] == ["prod-api-80", "prod-web-80"]


def test_backend_name_collision_is_a_problem() -> None:
    result = build(
        o.ingress("one", "a-b", rules=[o.rule("a.com", o.path("/", "c"))]),
        o.ingress(
            "two",
            "a",
            rules=[o.rule("b.com", o.path("/", "b-c"))],
            created="2025-01-01T00:00:00Z",
        ),
        *web("c", "a-b"),
        *web("b-c", "a"),
    )
    assert [b.service for b in result.configuration.backends] == ["c"]
    assert result.problems[0].key == "a/two"
    assert "backend name a-b-c-80 is already used" in result.problems[0].reason


BACKEND_PROBLEMS: list[tuple[str, dict[str, Any], list[KubeObject], str, str]] = [
    (
        "service-missing",
        {"backend": o.backend("nope", 80)},
        [],
        "backend.service.name",
        "service default/nope not found",
    ),
    (
        "port-number-missing",
        {"backend": o.backend("web", 8080)},
        web(),
        "backend.service.port.number",
        "service default/web has no port 8080",
    ),
    (
        "port-name-missing",
        {"backend": o.backend("web", "grpc")},
        web(),
        "backend.service.port.name",
        "service default/web has no port named grpc",
    ),
    (
        "external-name",
        {"backend": o.backend("ext", 80)},
        [o.service("ext", type="ExternalName")],
        "backend.service.name",
        "ExternalName",
    ),
    (
        "resource-backend",
        {"backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}},
        [],
        "backend.resource",
        "resource backends are not supported",
    ),
    ("no-service", {"backend": {}}, [], "backend.service", "must be set"),
    (
        "both-port-number-and-name",
        {"backend": {"service": {"name": "web", "port": {"number": 80, "name": "http"}}}},
        web(),
        "backend.service.port",
        "must set one of number and name",
    ),
    (
        "no-port",
        {"backend": {"service": {"name": "web"}}},
        web(),
        "backend.service.port",
        "must set one of number and name",
    ),
    (
        "invalid-service-name",
        {"backend": o.backend("Web;", 80)},
        [],
        "backend.service.name",
        "lowercase",
    ),
    (
        "invalid-port-name",
        {"backend": o.backend("web", "HTTP")},
        web(),
        "backend.service.port.name",
        "only lowercase",
    ),
    (
        "port-number-out-of-range",
        {"backend": o.backend("web", 70000)},
        web(),
        "backend.service.port.number",
        "between 1 and 65535",
    ),
    (
        "malformed-service",
        {"backend": o.backend("bad", 80)},
        [{**o.service("bad"), "spec": {"ports": [{"port": "80"}]}}],
        "backend.service.name",
        "service default/bad is malformed: spec.ports[0].port",
    ),
    ("invalid-path", {"path": "/a;b"}, web(), "path", "must not contain ';'"),
    ("invalid-path-type", {"pathType": "Regex"}, web(), "pathType", "not 'Regex'"),
]


@pytest.mark.parametrize(
    ("override", "extra", "field", "reason"),
    [c[1:] for c in BACKEND_PROBLEMS],
    ids=[c[0] for c in BACKEND_PROBLEMS],
)
def test_bad_path_is_skipped_with_a_problem(
    override: dict[str, Any], extra: list[KubeObject], field: str, reason: str
) -> None:
    bad = {**o.path("/bad"), **override}
    ing = o.ingress("app", rules=[o.rule("a.com", o.path("/good", "good"), bad)])
    result = build(ing, *web("good"), *extra)
    assert [p for p, _, _ in routes(result, "a.com")] == ["/", "/good"]
    (problem,) = result.problems
    assert (problem.kind, problem.key) == ("Ingress", "default/app")
    assert problem.field == f"spec.rules[0].http.paths[1].{field}"
    assert reason in problem.reason


def test_service_without_ready_endpoints_still_has_a_backend() -> None:
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice("web", endpoints=[o.endpoint("10.0.0.1", ready=False)]),
    )
    assert result.configuration.backends[0].endpoints == ()
    assert routes(result, "a.com") == [("/", "Prefix", "default-web-80")]
    assert result.problems == ()


def test_bad_slice_address_is_a_slice_problem() -> None:
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice(
            "web", name="web-x", endpoints=[o.endpoint("10.0.0.1", "10.0.0.256", "::1")]
        ),
    )
    assert result.configuration.backends[0].endpoints == (Endpoint("10.0.0.1", 8080),)
    assert fields(result) == [
        ("EndpointSlice", "default/web-x", "endpoints[0].addresses[1]"),
        ("EndpointSlice", "default/web-x", "endpoints[0].addresses[2]"),
    ]


def refused(result: BuildResult) -> list[tuple[str, str, str, str]]:
    """(key, field, address, why) of each EndpointSlice problem."""
    return [
        (p.key, p.field, p.reason.split(" ", 1)[0], p.reason.split(" ", 1)[1])
        for p in result.problems
        if p.kind == "EndpointSlice"
    ]


LOOPBACK = "may not be in the loopback range (127.0.0.0/8, ::1/128)"
LINK_LOCAL = "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
UNSPECIFIED = "may not be unspecified (0.0.0.0, ::)"
LINK_LOCAL_MULTICAST = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/16)"


def test_loopback_link_local_and_unspecified_endpoints_are_refused_the_rest_served() -> None:
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice(
            "web",
            name="web-x",
            endpoints=[
                o.endpoint("10.0.0.1", "127.0.0.1"),
                o.endpoint("169.254.169.254"),
                o.endpoint("0.0.0.0", "10.0.0.2", "127.255.0.9", "224.0.0.251"),
            ],
        ),
    )
    assert result.configuration.backends[0].endpoints == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("10.0.0.2", 8080),
    )
    assert refused(result) == [
        ("default/web-x", "endpoints[0].addresses[1]", "'127.0.0.1'", LOOPBACK),
        ("default/web-x", "endpoints[1].addresses[0]", "'169.254.169.254'", LINK_LOCAL),
        ("default/web-x", "endpoints[2].addresses[0]", "'0.0.0.0'", UNSPECIFIED),
        ("default/web-x", "endpoints[2].addresses[2]", "'127.255.0.9'", LOOPBACK),
        ("default/web-x", "endpoints[2].addresses[3]", "'224.0.0.251'", LINK_LOCAL_MULTICAST),
    ]
    # The Ingress itself still routes to the Service: only the addresses are refused.
    assert routes(result, "a.com") == [("/", "Prefix", "default-web-80")]


def test_addresses_next_to_the_refused_ranges_are_served() -> None:
    near = [
        "126.255.255.255",
        "128.0.0.1",
        "169.253.0.1",
        "169.255.0.1",
        "0.0.0.1",
        "224.0.1.1",
        "10.127.0.1",
        "1.27.0.1",
    ]
    result = build(
        simple("app", "a.com"), o.service("web"), o.endpoint_slice("web", endpoints=near)
    )
    assert result.problems == ()
    assert {e.address for e in result.configuration.backends[0].endpoints} == set(near)


def test_ipv6_loopback_link_local_unspecified_and_mapped_loopback_are_refused() -> None:
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice(
            "web",
            name="web-6",
            address_type="IPv6",
            endpoints=[
                o.endpoint("::1", "fe80::1", "::", "::ffff:127.0.0.1", "ff02::fb", "fd00::1"),
            ],
        ),
    )
    assert result.configuration.backends[0].endpoints == (Endpoint("fd00::1", 8080),)
    assert [(f, a, why) for _, f, a, why in refused(result)] == [
        ("endpoints[0].addresses[0]", "'::1'", LOOPBACK),
        ("endpoints[0].addresses[1]", "'fe80::1'", LINK_LOCAL),
        ("endpoints[0].addresses[2]", "'::'", UNSPECIFIED),
        ("endpoints[0].addresses[3]", "'::ffff:127.0.0.1'", LOOPBACK),
        ("endpoints[0].addresses[4]", "'ff02::fb'", LINK_LOCAL_MULTICAST),
    ]


def test_allow_loopback_endpoints_accepts_loopback_only() -> None:
    options = BuildOptions(allow_loopback_endpoints=True)
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice(
            "web",
            name="web-x",
            endpoints=[
                "127.0.1.1",
                "127.0.1.2",
                "169.254.1.1",
                "0.0.0.0",
                "10.0.0.1",
            ],
        ),
        o.service("web6"),
        o.endpoint_slice(
            "web6", name="web6-x", address_type="IPv6", endpoints=["::1", "fe80::1", "::"]
        ),
        o.ingress("app6", rules=[o.rule("b.com", o.path("/", "web6"))]),
        options=options,
    )
    endpoints = {str(b.name): b.endpoints for b in result.configuration.backends}
    assert endpoints["default-web-80"] == (
        Endpoint("10.0.0.1", 8080),
        Endpoint("127.0.1.1", 8080),
        Endpoint("127.0.1.2", 8080),
    )
    assert endpoints["default-web6-80"] == (Endpoint("::1", 8080),)
    assert [(k, f, why) for k, f, _, why in refused(result)] == [
        ("default/web-x", "endpoints[2].addresses[0]", LINK_LOCAL),
        ("default/web-x", "endpoints[3].addresses[0]", UNSPECIFIED),
        ("default/web6-x", "endpoints[1].addresses[0]", LINK_LOCAL),
        ("default/web6-x", "endpoints[2].addresses[0]", UNSPECIFIED),
    ]


def test_refused_address_of_an_endpoint_that_is_not_ready_is_no_problem() -> None:
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        o.endpoint_slice("web", endpoints=[o.endpoint("127.0.0.1", ready=False), "10.0.0.1"]),
    )
    assert result.configuration.backends[0].endpoints == (Endpoint("10.0.0.1", 8080),)
    assert result.problems == ()


def test_malformed_slice_is_skipped_with_a_problem() -> None:
    bad = o.endpoint_slice("web", name="web-bad", endpoints=["10.0.0.9"])
    bad["endpoints"][0]["conditions"]["ready"] = "yes"
    result = build(
        simple("app", "a.com"),
        o.service("web"),
        bad,
        o.endpoint_slice("web", name="web-ok", endpoints=["10.0.0.1"]),
    )
    assert result.configuration.backends[0].endpoints == (Endpoint("10.0.0.1", 8080),)
    assert fields(result) == [("EndpointSlice", "default/web-bad", "endpoints[0].conditions.ready")]


# --- validation of rules ----------------------------------------------------------------------


def test_invalid_host_skips_only_that_rule() -> None:
    result = build(
        o.ingress(
            "app",
            rules=[
                o.rule("a.com", o.path("/")),
                o.rule("Bad_Host", o.path("/")),
                o.rule("*.com", o.path("/")),
                o.rule("b.com", o.path("/")),
            ],
        ),
        *web(),
    )
    assert hostnames(result) == [CATCH_ALL, "a.com", "b.com"]
    assert fields(result) == [
        ("Ingress", "default/app", "spec.rules[1].host"),
        ("Ingress", "default/app", "spec.rules[2].host"),
    ]


def test_invalid_ingress_key_skips_the_ingress() -> None:
    ing = simple("app", "a.com")
    snap = Snapshot(
        ingresses={ObjectKey("Default/app"): ing},
        services={ObjectKey("Default/web"): o.service("web")},
    )
    result = build_configuration(snap, OPTIONS)
    assert hostnames(result) == [CATCH_ALL]
    assert fields(result) == [("Ingress", "Default/app", "metadata.namespace")]


# --- default backend ------------------------------------------------------------------------


def test_no_default_backend_catch_all_answers_404() -> None:
    result = build()
    assert result.configuration.servers == (
        Server(
            CATCH_ALL,
            (Location("/", PathType.PREFIX, backend=None, ingress=ObjectKey(""), status=404),),
        ),
    )
    assert result.configuration.backends == ()


def test_catch_all_root_goes_to_oldest_default_backend() -> None:
    result = build(
        o.ingress("new", default_backend=o.backend("two", 80), created="2025-01-01T00:00:00Z"),
        o.ingress("old", default_backend=o.backend("one", 80)),
        *web("one"),
        *web("two"),
    )
    assert routes(result, CATCH_ALL) == [("/", "Prefix", "default-one-80")]
    assert server(result, CATCH_ALL).locations[0].ingress == "default/old"
    assert [b.name for b in result.configuration.backends] == ["default-one-80"]


def test_host_less_root_rule_beats_default_backend() -> None:
    result = build(
        o.ingress("old", default_backend=o.backend("one", 80)),
        o.ingress("new", rules=[o.rule(None, o.path("/", "two"))], created="2025-01-01T00:00:00Z"),
        *web("one"),
        *web("two"),
    )
    assert routes(result, CATCH_ALL) == [("/", "Prefix", "default-two-80")]


def test_default_backend_fills_root_of_own_hosts_only() -> None:
    result = build(
        o.ingress(
            "app",
            rules=[o.rule("a.com", o.path("/api", "api")), o.rule("b.com", o.path("/", "api"))],
            default_backend=o.backend("web", 80),
        ),
        simple("other", "c.com", "/api"),
        *web(),
        *web("api"),
    )
    assert routes(result, "a.com") == [
        ("/", "Prefix", "default-web-80"),
        ("/api", "Prefix", "default-api-80"),
    ]
    assert routes(result, "b.com") == [("/", "Prefix", "default-api-80")]
    assert routes(result, "c.com")[0] == ("/", "Prefix", None)


def test_rule_root_from_younger_ingress_beats_default_backend() -> None:
    result = build(
        o.ingress(
            "old",
            rules=[o.rule("a.com", o.path("/api"))],
            default_backend=o.backend("fallback", 80),
        ),
        o.ingress(
            "new", rules=[o.rule("a.com", o.path("/", "web"))], created="2025-01-01T00:00:00Z"
        ),
        *web(),
        *web("fallback"),
    )
    assert routes(result, "a.com")[0] == ("/", "Prefix", "default-web-80")


def test_unresolvable_default_backend_falls_to_next_oldest() -> None:
    result = build(
        o.ingress("old", default_backend=o.backend("missing", 80)),
        o.ingress("new", default_backend=o.backend("web", 80), created="2025-01-01T00:00:00Z"),
        *web(),
    )
    assert routes(result, CATCH_ALL) == [("/", "Prefix", "default-web-80")]
    assert fields(result) == [("Ingress", "default/old", "spec.defaultBackend.service.name")]


# --- TLS ----------------------------------------------------------------------------------


def test_problems_name_the_missing_object_so_check_needs_no_text_matching() -> None:
    result = build(
        o.ingress(
            "app",
            rules=[o.rule("a.com", o.path("/", "nope"))],
            tls_entries=[o.tls("a.com", secret_name="gone")],
            annotations={
                "nginx.ingress.kubernetes.io/auth-type": "basic",
                "nginx.ingress.kubernetes.io/auth-secret": "htpasswd",
            },
        ),
        *web(),
    )
    assert sorted((p.field, p.missing) for p in result.problems) == [
        (
            "metadata.annotations[nginx.ingress.kubernetes.io/auth-secret]",
            "Secret default/htpasswd",
        ),
        ("spec.rules[0].http.paths[0].backend.service.name", "Service default/nope"),
        ("spec.tls[0].secretName", "Secret default/gone"),
    ]
    assert all(p.winner == "" for p in result.problems)


def tls_ingress(
    *hosts: str, secret: str | None = "tls", name: str = "app", **kw: Any
) -> KubeObject:
    return o.ingress(
        name,
        rules=[o.rule(h, o.path("/")) for h in hosts],
        tls_entries=[o.tls(*hosts, secret_name=secret)],
        **kw,
    )


def test_tls_host_gets_certificate_and_redirect(pem: tuple[str, str]) -> None:
    cert_pem, key_pem = pem
    result = build(
        tls_ingress("www.a.com", "*.a.com"),
        o.tls_secret("tls", cert_pem=cert_pem, key_pem=key_pem),
        *web(),
    )
    for host in ("www.a.com", "*.a.com"):
        s = server(result, host)
        assert s.ssl_redirect
        assert s.certificate is not None
        assert s.certificate.secret == "default/tls"
        combined = cert_pem.strip() + "\n" + key_pem.strip() + "\n"
        assert s.certificate.pem == combined
        assert s.certificate.sha256 == hashlib.sha256(combined.encode()).hexdigest()
        assert s.certificate.not_after == 1735603200.0  # 2024-01-01 + 365 days
    assert result.problems == ()


def test_default_ssl_redirect_option(pem: tuple[str, str]) -> None:
    result = build(
        tls_ingress("www.a.com"),
        o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]),
        *web(),
        options=BuildOptions(default_ssl_redirect=False),
    )
    s = server(result, "www.a.com")
    assert s.certificate is not None
    assert not s.ssl_redirect


def test_tls_without_secret_name_uses_default_certificate_with_redirect() -> None:
    result = build(tls_ingress("www.a.com", secret=None), *web())
    s = server(result, "www.a.com")
    assert (s.certificate, s.ssl_redirect) == (None, True)


def test_tls_host_without_rules_gets_no_server(pem: tuple[str, str]) -> None:
    ing = o.ingress(
        "app",
        rules=[o.rule("www.a.com", o.path("/"))],
        tls_entries=[o.tls("www.a.com", "api.a.com", secret_name="tls")],
    )
    result = build(ing, o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]), *web())
    assert hostnames(result) == [CATCH_ALL, "www.a.com"]


def test_tls_applies_only_to_hosts_of_the_same_ingress(pem: tuple[str, str]) -> None:
    result = build(
        simple("rules", "www.a.com"),
        o.ingress("tls-only", tls_entries=[o.tls("www.a.com", secret_name="tls")]),
        o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]),
        *web(),
    )
    assert server(result, "www.a.com").certificate is None


def test_oldest_certificate_wins_and_a_different_one_is_a_problem(
    pem: tuple[str, str], other_pem: tuple[str, str]
) -> None:
    result = build(
        tls_ingress("www.a.com", secret="one", name="old"),
        tls_ingress("www.a.com", secret="two", name="new", created="2025-01-01T00:00:00Z"),
        o.tls_secret("one", cert_pem=pem[0], key_pem=pem[1]),
        o.tls_secret("two", cert_pem=other_pem[0], key_pem=other_pem[1]),
        *web(),
    )
    cert = server(result, "www.a.com").certificate
    assert cert is not None and cert.secret == "default/one"
    assert fields(result)[-1] == ("Ingress", "default/new", "spec.tls[0].hosts[0]")


def test_good_certificate_of_younger_ingress_replaces_a_broken_one(pem: tuple[str, str]) -> None:
    result = build(
        tls_ingress("www.a.com", secret="missing", name="old"),
        tls_ingress("www.a.com", secret="tls", name="new", created="2025-01-01T00:00:00Z"),
        o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]),
        *web(),
    )
    s = server(result, "www.a.com")
    assert s.certificate is not None and s.ssl_redirect


def _secret_with(**changes: Any) -> Callable[[tuple[str, str], tuple[str, str]], KubeObject]:
    def make(pem: tuple[str, str], other: tuple[str, str]) -> KubeObject:
        secret = o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1])
        if changes.get("swap_key"):
            secret["data"]["tls.key"] = base64.b64encode(other[1].encode()).decode()
        for name, value in changes.get("data", {}).items():
            if value is None:
                del secret["data"][name]
            else:
                secret["data"][name] = value
        for name, value in changes.get("top", {}).items():
            secret[name] = value
        return secret

    return make


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


SECRET_CASES: list[tuple[str, Callable[..., KubeObject] | None, str, str]] = [
    ("secret-missing", None, "", "secret default/tls not found"),
    ("wrong-type", _secret_with(top={"type": "kubernetes.io/basic-auth"}), "type", "must be"),
    ("no-data", _secret_with(top={"data": None}), "data", "must be a mapping"),
    ("crt-missing", _secret_with(data={"tls.crt": None}), "data.tls.crt", "missing"),
    ("key-missing", _secret_with(data={"tls.key": None}), "data.tls.key", "missing"),
    ("crt-not-base64", _secret_with(data={"tls.crt": "!!!"}), "data.tls.crt", "base64"),
    ("crt-not-string", _secret_with(data={"tls.crt": 5}), "data.tls.crt", "base64 string"),
    ("crt-not-pem", _secret_with(data={"tls.crt": _b64("hello")}), "data.tls.crt", "PEM"),
    ("key-not-pem", _secret_with(data={"tls.key": _b64("hello")}), "data.tls.key", "PEM"),
    ("key-not-matching", _secret_with(swap_key=True), "data.tls.key", "does not match"),
    (
        "crt-holds-key",
        _secret_with(data={"tls.crt": "KEY"}),
        "data.tls.crt",
        "PEM certificate",
    ),
]


@pytest.mark.parametrize(
    ("make", "secret_field", "reason"),
    [c[1:] for c in SECRET_CASES],
    ids=[c[0] for c in SECRET_CASES],
)
def test_unusable_secret_means_default_certificate_and_no_redirect(
    make: Callable[..., KubeObject] | None,
    secret_field: str,
    reason: str,
    pem: tuple[str, str],
    other_pem: tuple[str, str],
) -> None:
    extra = []
    if make is not None:
        secret = make(pem, other_pem)
        if secret.get("data") and secret["data"].get("tls.crt") == "KEY":
            secret["data"]["tls.crt"] = secret["data"]["tls.key"]
        extra.append(secret)
    result = build(tls_ingress("www.a.com"), *extra, *web())
    s = server(result, "www.a.com")
    assert (s.certificate, s.ssl_redirect) == (None, False)
    ingress_problem = result.problems[-1]
    assert (ingress_problem.kind, ingress_problem.field) == ("Ingress", "spec.tls[0].secretName")
    assert reason in ingress_problem.reason
    if secret_field:
        assert fields(result)[0] == ("Secret", "default/tls", secret_field)
        assert reason in result.problems[0].reason


def _certificate(host: str, key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> tuple[str, str]:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def _sha1_certificate() -> tuple[str, str]:
    """cryptography no longer signs with SHA-1; the openssl command line still does."""
    with tempfile.TemporaryDirectory() as tmp:
        key, cert = Path(tmp) / "key.pem", Path(tmp) / "cert.pem"
        command = ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt"]
        command += ["ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert)]
        command += ["-sha1", "-days", "10", "-subj", "/CN=www.a.com"]
        subprocess.run(command, check=True, capture_output=True)
        return cert.read_text(), key.read_text()


@pytest.mark.parametrize(
    ("make", "field", "reason"),
    [
        (
            lambda: _certificate(
                "www.a.com", rsa.generate_private_key(public_exponent=65537, key_size=1024)
            ),
            "data.tls.key",
            "1024-bit key",
        ),
        (_sha1_certificate, "data.tls.crt", "signed with SHA1"),
    ],
    ids=["rsa-1024", "sha1-signature"],
)
def test_a_certificate_openssl_would_refuse_is_a_problem_before_nginx_sees_it(
    make: Callable[[], tuple[str, str]], field: str, reason: str
) -> None:
    cert_pem, key_pem = make()
    result = build(
        tls_ingress("www.a.com"), o.tls_secret("tls", cert_pem=cert_pem, key_pem=key_pem)
    )
    assert server(result, "www.a.com").certificate is None
    assert ("Secret", "default/tls", field) in fields(result)
    assert any(reason in p.reason for p in result.problems)


def test_only_the_parsed_chain_and_key_are_written_out(
    pem: tuple[str, str], other_pem: tuple[str, str]
) -> None:
    cert_pem, key_pem = pem
    # A private key block before the certificate: nginx would load that key, not tls.key.
    crt = other_pem[1] + "# comment\n" + cert_pem
    result = build(tls_ingress("www.a.com"), o.tls_secret("tls", cert_pem=crt, key_pem=key_pem))
    certificate = server(result, "www.a.com").certificate
    assert certificate is not None
    assert certificate.pem.count("PRIVATE KEY-----") == 2  # BEGIN and END of tls.key's only
    assert other_pem[1].strip() not in certificate.pem
    assert certificate.pem.startswith(cert_pem.strip())
    assert "# comment" not in certificate.pem


def test_opaque_secret_with_tls_keys_is_accepted(pem: tuple[str, str]) -> None:
    secret = o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1], type="Opaque")
    result = build(tls_ingress("www.a.com"), secret, *web())
    assert server(result, "www.a.com").certificate is not None


def test_broken_secret_reported_once_per_build(pem: tuple[str, str]) -> None:
    secret = o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1], type="kubernetes.io/dockercfg")
    result = build(
        tls_ingress("www.a.com", name="a"),
        tls_ingress("www.b.com", name="b"),
        secret,
        *web(),
    )
    assert [k for k, _, _ in fields(result)].count("Secret") == 1
    assert [f for _, _, f in fields(result)].count("spec.tls[0].secretName") == 2


def test_invalid_tls_entries_are_problems() -> None:
    ing = o.ingress(
        "app",
        rules=[o.rule("www.a.com", o.path("/"))],
        tls_entries=[o.tls("WWW", "www.a.com", secret_name="Bad_Name")],
    )
    result = build(ing, *web())
    assert fields(result) == [
        ("Ingress", "default/app", "spec.tls[0].hosts[0]"),
        ("Ingress", "default/app", "spec.tls[0].secretName"),
    ]
    assert not server(result, "www.a.com").ssl_redirect


# --- malformed input never raises -------------------------------------------------------------


def _mutated(path: str, value: Any) -> KubeObject:
    """The standard Ingress with the value at a dotted path (``[n]`` = list index) replaced."""
    ing = copy.deepcopy(STANDARD)
    target: Any = ing
    parts = path.replace("[", ".").replace("]", "").split(".")
    for part in parts[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    last = parts[-1]
    if last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value
    return ing


STANDARD = o.ingress(
    "app",
    rules=[o.rule("www.a.com", o.path("/"), o.path("/api", "web", "http"))],
    tls_entries=[o.tls("www.a.com", secret_name="tls")],
    default_backend=o.backend("web", 80),
)

MALFORMED: list[tuple[str, KubeObject, str]] = [
    ("spec-is-a-list", _mutated("spec", []), "spec"),
    ("rules-is-a-string", _mutated("spec.rules", "x"), "spec.rules"),
    ("rule-is-a-number", _mutated("spec.rules[0]", 5), "spec.rules[0]"),
    ("host-is-a-number", _mutated("spec.rules[0].host", 5), "spec.rules[0].host"),
    ("http-is-a-list", _mutated("spec.rules[0].http", []), "spec.rules[0].http"),
    ("paths-is-a-mapping", _mutated("spec.rules[0].http.paths", {}), "spec.rules[0].http.paths"),
    ("path-is-none", _mutated("spec.rules[0].http.paths[0]", None), "spec.rules[0].http.paths[0]"),
    (
        "backend-missing",
        _mutated("spec.rules[0].http.paths[0].backend", None),
        "spec.rules[0].http.paths[0].backend",
    ),
    (
        "port-number-is-a-string",
        _mutated("spec.rules[0].http.paths[0].backend.service.port.number", "80"),
        "spec.rules[0].http.paths[0].backend.service.port.number",
    ),
    (
        "port-number-is-a-bool",
        _mutated("spec.rules[0].http.paths[0].backend.service.port.number", True),
        "spec.rules[0].http.paths[0].backend.service.port.number",
    ),
    ("tls-is-a-mapping", _mutated("spec.tls", {"hosts": []}), "spec.tls"),
    ("tls-hosts-is-a-string", _mutated("spec.tls[0].hosts", "www.a.com"), "spec.tls[0].hosts"),
    ("default-backend-is-a-string", _mutated("spec.defaultBackend", "web"), "spec.defaultBackend"),
    ("metadata-is-a-list", _mutated("metadata", []), "metadata"),
    ("annotations-are-a-list", _mutated("metadata.annotations", ["a"]), "metadata.annotations"),
]


@pytest.mark.parametrize(
    ("ing", "field"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_ingress_is_skipped_naming_the_field(ing: KubeObject, field: str) -> None:
    base = o.snapshot(o.ingress_class(default=True), *web())
    snap = Snapshot(
        ingresses={ObjectKey("default/app"): ing},
        ingress_classes=base.ingress_classes,
        services=base.services,
        endpoint_slices=base.endpoint_slices,
    )
    result = build_configuration(snap, OPTIONS)
    assert hostnames(result) == [CATCH_ALL]
    assert len(result.problems) == 1
    assert (result.problems[0].key, result.problems[0].field) == ("default/app", field)


@pytest.mark.parametrize(
    "raw",
    [None, [], "ingress", 5, {}, {"spec": None}, {"metadata": None, "spec": {"rules": None}}],
    ids=["none", "list", "string", "number", "empty", "null-spec", "null-rules"],
)
def test_garbage_ingress_objects_never_raise(raw: Any) -> None:
    snap = Snapshot(
        ingresses={ObjectKey("default/x"): raw},
        ingress_classes={ObjectKey("ingressd"): o.ingress_class(default=True)},
    )
    result = build_configuration(snap, OPTIONS)
    assert hostnames(result) == [CATCH_ALL]


@pytest.mark.parametrize(
    "raw",
    [None, [], {"kind": "IngressClass", "spec": []}, {"spec": {"controller": 5}}],
    ids=["none", "list", "spec-list", "controller-number"],
)
def test_garbage_ingress_classes_are_problems(raw: Any) -> None:
    snap = Snapshot(ingress_classes={ObjectKey("bad"): raw})
    result = build_configuration(snap, OPTIONS)
    assert [p.kind for p in result.problems] == ["IngressClass"]


def _garbage(rng: random.Random) -> Any:
    return rng.choice(
        [None, 0, -1, 1.5, True, "", "x", "/a;b", "*", [], [None], {}, {"a": 1}, "10.0.0.1"]
    )


def _mutate(value: Any, rng: random.Random) -> Any:
    """Replace one random node of a JSON tree with garbage (recursively, in place)."""
    if isinstance(value, dict) and value and rng.random() < 0.8:
        key = rng.choice(sorted(value))
        value[key] = _mutate(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.8:
        i = rng.randrange(len(value))
        value[i] = _mutate(value[i], rng)
        return value
    return _garbage(rng)


@pytest.mark.parametrize("seed", range(60))
def test_randomly_corrupted_objects_never_raise(seed: int, pem: tuple[str, str]) -> None:
    rng = random.Random(seed)
    objects: list[KubeObject] = [
        copy.deepcopy(STANDARD),
        o.service("web", ports=[o.service_port(80, "http", target_port=8080)]),
        o.endpoint_slice("web", endpoints=["10.0.0.1", "10.0.0.2"], port_name="http"),
        o.tls_secret("tls", cert_pem=pem[0], key_pem=pem[1]),
        o.ingress_class(default=True),
    ]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(objects))
        kind, meta = objects[i]["kind"], copy.deepcopy(objects[i]["metadata"])
        objects[i] = _mutate(objects[i], rng)
        if not isinstance(objects[i], dict) or not isinstance(objects[i].get("metadata"), dict):
            objects[i] = {"kind": kind, "metadata": meta, "junk": objects[i]}
        objects[i]["kind"], objects[i]["metadata"] = kind, meta
    result = build(*objects)
    assert result.configuration.servers[0].hostname == CATCH_ALL
    assert build(*objects) == result
