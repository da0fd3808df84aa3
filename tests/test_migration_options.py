"""Annotations and ConfigMap keys that migrating clusters use, through a real nginx.

proxy-redirect-*, proxy-cookie-*, service-upstream (annotations); server-tokens,
allow-backend-server-header, ssl-protocols, ssl-ciphers, large-client-header-buffers
(ConfigMap).  Each test checks what a client or a pod sees; both routing modes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.backends import EchoPods
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, free_port, pod_addresses, running_harness
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port
from tests.test_configmap import CONFIGMAP, config_map

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def annotated(name: str, host: str, svc: str, port: int = 80, **annotations: str) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, path("/", svc, port))],
        annotations={P + k.replace("_", "-"): v for k, v in annotations.items()},
    )


@pytest.fixture
async def h(world_readable_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """ingressd reading the ConfigMap ingressd/ingressd-controller."""
    async with running_harness(world_readable_tmp, request, configmap=CONFIGMAP) as harness:
        yield harness


# --- annotations ---------------------------------------------------------------------------


async def test_proxy_redirect_rewrites_the_location_of_redirects(h: Harness) -> None:
    await deploy(h, "web")
    h.write(
        "ing.yaml",
        annotated(
            "moved",
            "moved.test",
            "web",
            proxy_redirect_from="http://internal.svc:8080/",
            proxy_redirect_to="https://moved.test/app/",
        ),
        annotated("plain", "plain.test", "web"),
    )
    target = "/x?status=302&location=http://internal.svc:8080/login"
    resp = await expect(h, target, host="moved.test", status=302, service="web")
    assert resp.headers["Location"] == "https://moved.test/app/login"
    # without the annotations the pod's Location is passed as it is (proxy_redirect off)
    resp = await expect(h, target, host="plain.test", status=302, service="web")
    assert resp.headers["Location"] == "http://internal.svc:8080/login"


async def test_proxy_cookie_domain_and_path_rewrite_set_cookie(h: Harness) -> None:
    await deploy(h, "web")
    h.write(
        "ing.yaml",
        annotated(
            "shop",
            "shop.test",
            "web",
            proxy_cookie_domain="internal.svc shop.test",
            proxy_cookie_path="/internal /",
        ),
    )
    cookie = "sid=42; Domain=internal.svc; Path=/internal"
    resp = await expect(h, f"/?cookie={cookie}", host="shop.test", service="web")
    assert resp.headers["Set-Cookie"] == "sid=42; Domain=shop.test; Path=/"


async def test_service_upstream_proxies_to_the_cluster_ip(h: Harness) -> None:
    # the pods of the Service, and a server on its "cluster IP" (a loopback address of its
    # own, on the Service's port, as kube-proxy would answer there)
    pod_ips, target = await h.start_pods(2, prefix="pod")
    cluster_ip = pod_addresses(1)[0]
    port = free_port()
    kube_proxy = EchoPods({cluster_ip: "clusterip-0"}, port)
    await kube_proxy.start()
    h.pods.append(kube_proxy)
    svc = service("mesh", ports=[service_port(port, "http", target_port=target)])
    svc["spec"]["clusterIP"] = cluster_ip
    h.write(
        "svc.yaml",
        svc,
        endpoint_slice("mesh", endpoints=pod_ips, port=target, port_name="http"),
    )
    h.write(
        "ing.yaml",
        annotated("linkerd", "mesh.test", "mesh", port, service_upstream="true"),
        ingress("direct", rules=[rule("direct.test", path("/", "mesh", port))]),
    )
    for _ in range(4):
        await expect(h, "/", host="mesh.test", service="clusterip")
    # another Ingress on the same Service without the annotation keeps the pods
    await expect(h, "/", host="direct.test", service="pod")
    # the pods' endpoints change: the cluster IP route is untouched, no reload
    await h.settled()
    reloads = h.reloads
    h.write(
        "svc.yaml",
        svc,
        endpoint_slice("mesh", endpoints=pod_ips[:1], port=target, port_name="http"),
    )
    await h.settled()
    await expect(h, "/", host="mesh.test", service="clusterip")
    assert h.reloads == reloads


async def test_from_to_www_redirect_both_directions(h: Harness) -> None:
    await deploy(h, "web")
    # first without the annotation: then adding it to a served host (an existing settings
    # class) must still bring the redirect (--routing lua: its server block reloads nginx)
    h.write("ing.yaml", annotated("apex", "apex.test", "web"))
    await expect(h, "/", host="apex.test", service="web")
    await expect(h, "/", host="www.apex.test", status=404)
    h.write(
        "ing.yaml",
        annotated("apex", "apex.test", "web", from_to_www_redirect="true"),
        annotated("www", "www.other.test", "web", from_to_www_redirect="true"),
        # both names are hosts: no redirect (a Problem says so)
        annotated("taken", "taken.test", "web", from_to_www_redirect="true"),
        annotated("taken-www", "www.taken.test", "web"),
    )
    resp = await expect(h, "/a/b?q=1", host="www.apex.test", status=308)
    assert resp.headers["Location"] == f"http://apex.test:{h.http_port}/a/b?q=1"
    resp = await expect(h, "/", host="other.test", status=308)
    assert resp.headers["Location"] == f"http://www.other.test:{h.http_port}/"
    resp = await expect(h, "/x", host="www.apex.test", status=308, https=True)
    assert resp.headers["Location"] == f"https://apex.test:{h.https_port}/x"
    await expect(h, "/", host="apex.test", service="web")
    await expect(h, "/", host="www.taken.test", service="web")
    build = h.ingressd.worker.last_build
    assert build is not None
    problems = [str(p) for p in build.problems]
    assert any("www.taken.test is a host or alias of its own" in p for p in problems), problems


async def test_ssl_ciphers_annotation_applies_to_its_host_only(h: Harness) -> None:
    await deploy(h, "web")
    aes256 = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    aes128 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    h.write(
        "ing.yaml",
        annotated(
            "strict", "strict.test", "web", ssl_ciphers=aes256, ssl_prefer_server_ciphers="true"
        ),
        annotated("web", "web.test", "web"),
    )
    await expect(h, "/", host="strict.test", service="web", https=True)
    tls12 = ssl.TLSVersion.TLSv1_2
    assert await _handshake(h, version=tls12, ciphers=aes128, name="strict.test") is None
    assert await _handshake(h, version=tls12, ciphers=aes256, name="strict.test") == "TLSv1.2"
    assert await _handshake(h, version=tls12, ciphers=aes128, name="web.test") == "TLSv1.2"


# --- ConfigMap -----------------------------------------------------------------------------


async def test_server_header_is_hidden_unless_server_tokens_or_the_backend_s_is_allowed(
    h: Harness,
) -> None:
    await deploy(h, "web")
    h.write("ing.yaml", annotated("web", "web.test", "web"))
    resp = await expect(h, "/?server=podsrv", host="web.test", service="web")
    assert "Server" not in resp.headers  # ingress-nginx's default: no Server header at all

    h.write("cm.yaml", config_map({"server-tokens": "true"}))

    async def version_shown() -> None:
        resp = await h.get("/", host="web.test")
        assert resp.headers.get("Server", "").startswith("nginx/1.")

    await h.eventually(version_shown)

    h.write("cm.yaml", config_map({"allow-backend-server-header": "true"}))

    async def backend_shown() -> None:
        resp = await h.get("/?server=podsrv", host="web.test")
        assert resp.headers.get("Server") == "podsrv"

    await h.eventually(backend_shown)


async def _handshake(
    h: Harness, *, version: ssl.TLSVersion, ciphers: str | None = None, name: str = "web.test"
) -> str | None:
    """The protocol negotiated with nginx's HTTPS port, or None when the handshake fails."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = context.maximum_version = version
    if ciphers is not None:
        context.set_ciphers(ciphers)
    try:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", h.https_port, ssl=context, server_hostname=name
        )
    except (ssl.SSLError, ConnectionResetError):
        return None
    ssl_object = writer.get_extra_info("ssl_object")
    negotiated = ssl_object.version() if ssl_object is not None else None
    writer.close()
    return negotiated


async def test_tls_handshakes_follow_ssl_protocols_and_ssl_ciphers(h: Harness) -> None:
    await deploy(h, "web")
    h.write("ing.yaml", annotated("web", "web.test", "web"))
    await expect(h, "/", host="web.test", service="web")
    assert await _handshake(h, version=ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert await _handshake(h, version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"

    h.write("cm.yaml", config_map({"ssl-protocols": "TLSv1.3"}))

    async def only_tls13() -> None:
        assert await _handshake(h, version=ssl.TLSVersion.TLSv1_2) is None

    await h.eventually(only_tls13)
    assert await _handshake(h, version=ssl.TLSVersion.TLSv1_3) == "TLSv1.3"

    aes256 = "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
    aes128 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
    h.write("cm.yaml", config_map({"ssl-ciphers": aes256}))

    async def tls12_again() -> None:
        negotiated = await _handshake(h, version=ssl.TLSVersion.TLSv1_2, ciphers=aes256)
        assert negotiated == "TLSv1.2"

    await h.eventually(tls12_again)
    assert await _handshake(h, version=ssl.TLSVersion.TLSv1_2, ciphers=aes128) is None


async def test_large_client_header_buffers_limit_a_request_header(h: Harness) -> None:
    await deploy(h, "web")
    h.write("ing.yaml", annotated("web", "web.test", "web"))
    big = {"X-Big": "x" * 3000}
    await expect(h, "/", host="web.test", service="web", headers=big)

    h.write("cm.yaml", config_map({"large-client-header-buffers": "4 2k"}))

    async def refused() -> None:
        resp = await h.get("/", host="web.test", headers=big)
        assert resp.status == 400

    await h.eventually(refused)
    await expect(h, "/", host="web.test", service="web", headers={"X-Small": "x" * 1500})
