"""Ingress v1 semantics through a real nginx: hosts, paths, classes, default backends, headers."""

from __future__ import annotations

import collections

import pytest

from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, free_port
from tests.support.objects import (
    backend,
    endpoint,
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    service,
    service_port,
)

pytestmark = pytest.mark.nginx


async def test_exact_and_wildcard_hosts_and_rules_without_host(harness: Harness) -> None:
    h = harness
    for name in ("exact", "wild", "nohost"):
        await deploy(h, name)
    h.write(
        "ing.yaml",
        ingress("exact", rules=[rule("www.zkj.com", path("/", "exact"))]),
        ingress("wild", rules=[rule("*.foo.com", path("/", "wild"))]),
        ingress("nohost", rules=[rule(None, path("/", "nohost"))]),
    )
    await expect(h, "/", host="www.zkj.com", service="exact")
    await expect(h, "/", host="WWW.ZKJ.COM", service="exact")
    await expect(h, "/", host="bar.foo.com", service="wild")
    # A wildcard matches exactly one label: deeper names and the bare domain fall through.
    await expect(h, "/", host="baz.bar.foo.com", service="nohost")
    await expect(h, "/", host="foo.com", service="nohost")
    await expect(h, "/", host="unknown.example", service="nohost")


async def test_prefix_is_element_wise_and_longest_match_wins(harness: Harness) -> None:
    h = harness
    for name in ("root", "aaa", "aaab", "deep"):
        await deploy(h, name)
    h.write(
        "ing.yaml",
        ingress(
            "paths",
            rules=[
                rule(
                    "paths.test",
                    path("/", "root"),
                    path("/aaa/", "aaa"),  # trailing slash ignored
                    path("/aaa/bbb", "aaab"),
                    path("/aaa/bbb/ccc", "deep", path_type="ImplementationSpecific"),
                )
            ],
        ),
    )
    table = {
        "/": "root",
        "/aaa": "aaa",
        "/aaa/": "aaa",
        "/aaa/x": "aaa",
        "/aaaccc": "root",
        "/aaa/bbb": "aaab",
        "/aaa/bbbx": "aaa",
        "/aaa/bbb/": "aaab",
        "/aaa/bbb/ccc/d": "deep",
        "/aaa/bbb/cccd": "aaab",
    }
    for request_path, svc in table.items():
        await expect(h, request_path, host="paths.test", service=svc)


async def test_exact_matches_only_its_path_and_beats_prefix(harness: Harness) -> None:
    h = harness
    for name in ("prefix", "exact", "slash"):
        await deploy(h, name)
    h.write(
        "ing.yaml",
        ingress(
            "exact",
            rules=[
                rule(
                    "exact.test",
                    path("/api", "prefix"),
                    path("/api", "exact", path_type="Exact"),
                    path("/only", "exact", path_type="Exact"),
                    path("/only/", "slash", path_type="Exact"),
                )
            ],
        ),
    )
    await expect(h, "/api", host="exact.test", service="exact")
    await expect(h, "/api/v1", host="exact.test", service="prefix")
    await expect(h, "/only", host="exact.test", service="exact")
    await expect(h, "/only/", host="exact.test", service="slash")
    await expect(h, "/only/x", host="exact.test", status=404)
    await expect(h, "/onlyx", host="exact.test", status=404)


async def test_unmatched_requests_get_404_without_a_default_backend(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/app", "web"))]))
    await expect(h, "/app", host="web.test", service="web")
    await expect(h, "/other", host="web.test", status=404)
    await expect(h, "/", host="nobody.test", status=404)


async def test_default_backend_serves_unmatched_hosts_and_paths(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "fallback")
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/app", "web"))],
            default_backend=backend("fallback", 80),
        ),
    )
    await expect(h, "/app", host="web.test", service="web")
    await expect(h, "/other", host="web.test", service="fallback")
    await expect(h, "/", host="nobody.test", service="fallback")


async def test_ingresses_of_other_classes_are_ignored(harness: Harness) -> None:
    h = harness
    for name in ("ours", "legacy", "theirs", "defaulted"):
        await deploy(h, name)
    h.write(
        "classes.yaml",
        ingress_class("ingressd", default=True),
        ingress_class("other", controller="k8s.io/ingress-nginx"),
    )
    legacy = ingress(
        "legacy",
        rules=[rule("legacy.test", path("/", "legacy"))],
        ingress_class_name=None,
        annotations={"kubernetes.io/ingress.class": "ingressd"},
    )
    legacy_other = ingress(
        "legacy-other",
        rules=[rule("legacy-other.test", path("/", "theirs"))],
        ingress_class_name=None,
        annotations={"kubernetes.io/ingress.class": "nginx"},
    )
    h.write(
        "ing.yaml",
        ingress("ours", rules=[rule("ours.test", path("/", "ours"))]),
        ingress(
            "theirs", rules=[rule("theirs.test", path("/", "theirs"))], ingress_class_name="other"
        ),
        ingress(
            "defaulted",
            rules=[rule("defaulted.test", path("/", "defaulted"))],
            ingress_class_name=None,
        ),
        legacy,
        legacy_other,
    )
    await expect(h, "/", host="ours.test", service="ours")
    await expect(h, "/", host="legacy.test", service="legacy")
    await expect(h, "/", host="defaulted.test", service="defaulted")
    await expect(h, "/", host="theirs.test", status=404)
    await expect(h, "/", host="legacy-other.test", status=404)
    # Without the default marker, an Ingress without a class is not ours any more.
    h.write("classes.yaml", ingress_class("ingressd"), ingress_class("other", controller="x/y"))
    await expect(h, "/", host="defaulted.test", status=404)
    await expect(h, "/", host="ours.test", service="ours")


async def test_named_service_port_resolves_through_the_slice_port_name(harness: Harness) -> None:
    h = harness
    addresses, port = await h.start_pods(2, prefix="multi")
    other_port = free_port()  # nothing listens there: picking the wrong port would fail
    h.write(
        "svc.yaml",
        service(
            "multi",
            ports=[
                service_port(80, "http", target_port=port),
                service_port(9090, "metrics", target_port=other_port),
            ],
        ),
        endpoint_slice(
            "multi",
            endpoints=[endpoint(a) for a in addresses],
            ports=[
                {"name": "http", "port": port, "protocol": "TCP"},
                {"name": "metrics", "port": other_port, "protocol": "TCP"},
            ],
        ),
    )
    h.write(
        "ing.yaml",
        ingress(
            "multi",
            rules=[
                rule(
                    "multi.test",
                    path("/by-name", "multi", "http"),
                    path("/by-number", "multi", 80),
                )
            ],
        ),
    )
    await expect(h, "/by-name", host="multi.test", service="multi")
    await expect(h, "/by-number", host="multi.test", service="multi")


async def test_only_ready_endpoints_of_every_slice_get_traffic(harness: Harness) -> None:
    h = harness
    addresses, port = await h.start_pods(4, prefix="web")
    h.write(
        "svc.yaml",
        service("web", ports=[service_port(80, "http", target_port=port)]),
        endpoint_slice(
            "web",
            name="web-aaaaa",
            port=port,
            port_name="http",
            endpoints=[endpoint(addresses[0]), endpoint(addresses[1], ready=False)],
        ),
        endpoint_slice(
            "web",
            name="web-bbbbb",
            port=port,
            port_name="http",
            endpoints=[
                endpoint(addresses[2]),
                endpoint(addresses[3], ready=False, serving=True, terminating=True),
            ],
        ),
    )
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    seen: collections.Counter[str | None] = collections.Counter()
    for _ in range(40):
        resp = await h.get("/", host="web.test")
        assert resp.status == 200
        seen[resp.pod] += 1
    assert set(seen) == {"web-0", "web-2"}


async def test_load_spreads_over_every_endpoint(harness: Harness) -> None:
    h = harness
    await deploy(h, "web", replicas=5)
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    seen: collections.Counter[str | None] = collections.Counter()
    for _ in range(100):
        resp = await h.get("/", host="web.test")
        seen[resp.pod] += 1
    assert set(seen) == {f"web-{i}" for i in range(5)}
    assert min(seen.values()) >= 10, seen


async def test_service_without_ready_endpoints_answers_503(harness: Harness) -> None:
    h = harness
    h.write(
        "svc.yaml",
        service("empty", ports=[service_port(80, "http", target_port=8080)]),
        endpoint_slice("empty", endpoints=[endpoint("127.0.99.1", ready=False)], port_name="http"),
    )
    h.write("ing.yaml", ingress("empty", rules=[rule("empty.test", path("/", "empty"))]))
    await expect(h, "/", host="empty.test", status=503)


async def test_upstream_request_carries_forwarding_headers(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    resp = await expect(h, "/echo?x=1", host="web.test", service="web")
    seen = resp.json()
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert seen["path"] == "/echo?x=1"
    assert headers["host"] == "web.test"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-host"] == "web.test"
    assert headers["x-forwarded-port"] == str(h.http_port)
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-request-id"]
    # HTTP/1.1 with keepalive to the pods: nginx must not ask them to close.
    assert headers.get("connection", "").lower() != "close"
