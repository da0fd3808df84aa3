"""The default backend and custom error pages, through a real nginx (both routing modes).

``--default-backend-service``: unknown hosts and unmatched paths reach its pods instead of the
built-in 404; ``custom-http-errors`` (ConfigMap key, or annotation without ``default-backend``)
sends those codes to it with the X-* headers ingress-nginx sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ingressd.build import BuildOptions, build_configuration
from ingressd.model import ObjectKey
from ingressd.store.snapshot import Snapshot
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, running_harness
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    service_port,
)
from tests.test_configmap import CONFIGMAP, config_map

P = "nginx.ingress.kubernetes.io/"
FALLBACK = ObjectKey("default/fallback")


@pytest.fixture
async def h(world_readable_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """ingressd with ``--default-backend-service default/fallback`` and its ConfigMap."""
    async with running_harness(
        world_readable_tmp, request, configmap=CONFIGMAP, default_backend_service=FALLBACK
    ) as harness:
        yield harness


@pytest.mark.nginx
async def test_unknown_hosts_and_unmatched_paths_reach_the_default_backend_service(
    h: Harness,
) -> None:
    await deploy(h, "web")
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[
                rule("web.test", path("/app", "web"), path("/exact/", "web", path_type="Exact"))
            ],
        ),
    )
    await expect(h, "/app/x", host="web.test", service="web")
    # no Service yet: the built-in 404
    await expect(h, "/", host="unknown.test", status=404)
    await expect(h, "/other", host="web.test", status=404)

    await deploy(h, "fallback")
    await expect(h, "/", host="unknown.test", service="fallback")
    await expect(h, "/other", host="web.test", service="fallback")
    await expect(h, "/exact/", host="web.test", service="web")
    # Exact /exact/ does not match /exact: the rest of the rules (here the default backend)
    resp = await expect(h, "/exact", host="web.test", service="fallback")
    assert resp.json()["path"] == "/exact"
    await expect(h, "/app", host="web.test", service="web")
    # the default backend's pods change without a reload
    await h.settled()
    reloads = h.reloads
    addresses, target = await h.start_pods(1, prefix="fallback2")
    h.write(
        "svc-default-fallback.yaml",
        service("fallback", "default", ports=[service_port(80, "http", target_port=target)]),
        endpoint_slice("fallback", "default", endpoints=addresses, port=target, port_name="http"),
    )
    await expect(h, "/", host="unknown.test", service="fallback2")
    assert h.reloads == reloads


@pytest.mark.nginx
async def test_configmap_custom_http_errors_send_the_headers_to_the_default_backend(
    h: Harness,
) -> None:
    await deploy(h, "web")
    await deploy(h, "fallback")
    await deploy(h, "own")
    h.write("cm.yaml", config_map({"custom-http-errors": "404,503"}))
    h.write(
        "ing.yaml",
        ingress("shop", rules=[rule("shop.test", path("/", "web"))]),
        # its default-backend serves when web has no endpoint; the ConfigMap's codes still go
        # to the global default backend (ingress-nginx's http-level error_page)
        ingress(
            "own",
            rules=[rule("own.test", path("/", "web"))],
            annotations={P + "default-backend": "own"},
        ),
    )
    await expect(h, "/ok", host="shop.test", service="web")
    await expect(h, "/ok", host="own.test", service="web")
    # the pod's 404 is intercepted: the default backend answers (echoing the status it got)
    resp = await expect(
        h,
        "/missing?status=404",
        host="shop.test",
        status=404,
        service="fallback",
        headers={"Accept": "application/json", "X-Request-ID": "req-1234"},
    )
    seen = resp.json()
    assert seen["path"] == "/?status=404"
    headers = seen["headers"]
    assert {
        name: headers.get(name)
        for name in (
            "X-Code",
            "X-Format",
            "X-Original-URI",
            "X-Namespace",
            "X-Ingress-Name",
            "X-Service-Name",
            "X-Service-Port",
            "X-Request-ID",
        )
    } == {
        "X-Code": "404",
        "X-Format": "application/json",
        "X-Original-URI": "/missing?status=404",
        "X-Namespace": "default",
        "X-Ingress-Name": "shop",
        "X-Service-Name": "web",
        "X-Service-Port": "80",
        "X-Request-ID": "req-1234",
    }
    # codes not listed pass through from the pod
    await expect(h, "/x?status=500", host="shop.test", status=500, service="web")
    await expect(h, "/x?status=404", host="own.test", status=404, service="fallback")


@pytest.mark.nginx
async def test_annotation_custom_http_errors_without_default_backend_use_the_global_one(
    h: Harness,
) -> None:
    await deploy(h, "web")
    await deploy(h, "fallback")
    h.write(
        "ing.yaml",
        ingress(
            "api",
            rules=[rule("api.test", path("/", "web"))],
            annotations={P + "custom-http-errors": "418"},
        ),
        ingress("plain", rules=[rule("plain.test", path("/", "web"))]),
    )
    # (the default backend answers unknown hosts: wait for the Ingresses first)
    await expect(h, "/", host="api.test", service="web")
    await expect(h, "/", host="plain.test", service="web")
    resp = await expect(h, "/tea?status=418", host="api.test", status=418, service="fallback")
    assert resp.json()["headers"]["X-Code"] == "418"
    assert resp.json()["headers"]["X-Ingress-Name"] == "api"
    # another Ingress without the annotation (and no ConfigMap codes): untouched
    await expect(h, "/tea?status=418", host="plain.test", status=418, service="web")
    await expect(h, "/tea?status=404", host="api.test", status=404, service="web")


def test_without_the_service_unmatched_paths_answer_404_and_a_problem_names_it() -> None:
    options = BuildOptions(default_backend_service=FALLBACK)
    result = build_configuration(Snapshot(), options)
    root = result.configuration.servers[0].locations[0]
    assert (root.path, root.backend, root.status) == ("/", None, 404)
    assert [str(p) for p in result.problems] == [
        "Service default/fallback: --default-backend-service: not found: unmatched requests get 404"
    ]


@pytest.mark.nginx
async def test_a_log_format_reading_the_route_variables_logs_them(h: Harness) -> None:
    """The router writes $namespace and $ingress_name only when nginx.conf reads them: a
    log-format-upstream that does gets them (and one that does not costs no write)."""
    await deploy(h, "web")
    h.write(
        "cm.yaml",
        config_map(
            {"log-format-upstream": "route $namespace/$ingress_name [$proxy_upstream_name]"}
        ),
    )
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    await expect(h, "/logged", host="web.test", service="web")
    log = Path(h.ingressd.nginx.paths.access_log)
    for _ in range(100):  # the access log is written in buffers, flushed every second
        if "route default/web [default-web-80]" in log.read_text():
            break
        await asyncio.sleep(0.05)
    assert "route default/web [default-web-80]" in log.read_text()
