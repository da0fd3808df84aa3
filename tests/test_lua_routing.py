"""``--routing lua`` through a real nginx: hosts, paths and certificates change without reload."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, peer_certificate
from tests.support.objects import (
    ingress,
    path,
    rule,
    self_signed_certificate,
    tls,
    tls_secret,
)

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def common_name(port: int, server_name: str) -> str:
    cert = peer_certificate(port, server_name)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_new_hosts_and_paths_are_served_without_a_reload(lua_harness: Harness) -> None:
    h = lua_harness
    await deploy(h, "web")
    await deploy(h, "api")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    reloads = h.reloads
    h.write(
        "api.yaml",
        ingress(
            "api",
            rules=[
                rule("api.test", path("/v1", "api"), path("/v1/admin", "web")),
                rule("*.wild.test", path("/", "api")),
            ],
        ),
    )
    await expect(h, "/v1/users", host="api.test", service="api")
    await expect(h, "/v1/admin/x", host="api.test", service="web")
    await expect(h, "/v1", host="api.test", service="api")
    await expect(h, "/v1x", host="api.test", status=404)  # element-wise prefix
    await expect(h, "/", host="one.wild.test", service="api")
    await expect(h, "/", host="two.one.wild.test", status=404)  # one label only
    await expect(h, "/", host="unknown.test", status=404)
    await h.settled()
    assert h.reloads == reloads
    assert h.metric("ingressd_dynamic_updates_total", result="success", kind="routes") >= 1
    assert h.session is not None
    debug = f"http://127.0.0.1:{h.options.status_port}/debug/routes"
    async with h.session.get(debug) as resp:
        held = {entry["host"] for entry in await resp.json()}
    assert {"web.test", "api.test", "*.wild.test"} <= held
    # a removed Ingress stops being served, still without reload
    h.remove("api.yaml")
    await expect(h, "/v1/users", host="api.test", status=404)
    await h.settled()
    assert h.reloads == reloads


async def test_a_new_settings_class_reloads_once_and_its_limits_hold(
    lua_harness: Harness,
) -> None:
    h = lua_harness
    await deploy(h, "web")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    reloads = h.reloads
    small = {P + "proxy-body-size": "1k"}
    h.write(
        "small.yaml",
        ingress("small", rules=[rule("small.test", path("/", "web"))], annotations=small),
    )
    await expect(h, "/", host="small.test", service="web")
    await h.settled()
    assert h.reloads == reloads + 1
    assert h.session is not None
    url = f"http://127.0.0.1:{h.http_port}/upload"
    async with h.session.post(url, data=b"x" * 4096, headers={"Host": "small.test"}) as resp:
        assert resp.status == 413
    async with h.session.post(url, data=b"x" * 512, headers={"Host": "small.test"}) as resp:
        assert resp.status == 200
    # the default limit (1m) still lets 4 KiB through elsewhere
    async with h.session.post(url, data=b"x" * 4096, headers={"Host": "web.test"}) as resp:
        assert resp.status == 200
    # a second Ingress of the same class: no reload
    h.write(
        "small2.yaml",
        ingress("small2", rules=[rule("small2.test", path("/", "web"))], annotations=small),
    )
    await expect(h, "/", host="small2.test", service="web")
    await h.settled()
    assert h.reloads == reloads + 1


async def test_certificates_are_served_by_sni_and_rotate_without_a_reload(
    lua_harness: Harness,
) -> None:
    h = lua_harness
    await deploy(h, "web")
    first_cert, first_key = self_signed_certificate("web.test")
    h.write("tls.yaml", tls_secret("web-tls", cert_pem=first_cert, key_pem=first_key))
    h.write(
        "web.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/", "web")), rule("plain.test", path("/", "web"))],
            tls_entries=[tls("web.test", secret_name="web-tls")],
        ),
    )
    await expect(h, "/", host="web.test", https=True, service="web")
    assert await asyncio.to_thread(common_name, h.https_port, "web.test") == "web.test"
    default = await asyncio.to_thread(common_name, h.https_port, "plain.test")
    assert default == "ingressd default certificate"
    # HTTP on a TLS host redirects, HSTS on HTTPS only
    resp = await expect(h, "/a?b=c", host="web.test", status=308)
    assert resp.headers["Location"] == f"https://web.test:{h.https_port}/a?b=c"
    resp = await expect(h, "/", host="web.test", https=True, service="web")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    resp = await expect(h, "/", host="plain.test", https=True, service="web")
    assert "Strict-Transport-Security" not in resp.headers
    # no key of a Lua-served certificate is on disk
    assert not [p for p in (h.options.work_dir / "certs").glob("*.pem") if p.name != "default.pem"]
    await h.settled()
    reloads = h.reloads

    second_cert, second_key = self_signed_certificate("web.test", "rotated.web.test")
    h.write("tls.yaml", tls_secret("web-tls", cert_pem=second_cert, key_pem=second_key))

    async def rotated() -> None:
        cert = await asyncio.to_thread(peer_certificate, h.https_port, "web.test")
        assert cert.public_bytes(serialization.Encoding.PEM).decode() == second_cert

    await h.eventually(rotated)
    await h.settled()
    assert h.reloads == reloads
    assert h.metric("ingressd_dynamic_updates_total", result="success", kind="certificates") >= 1


async def test_body_limits_hold_for_the_home_class_whatever_the_largest_limit(
    lua_harness: Harness,
) -> None:
    """The catch-all's location / serves the home class (default settings, 1m) with the
    largest limit of all classes, which nginx checks first: the router refuses a body over the
    route's own limit, and one of unknown length (chunked) goes to the class's named location,
    whose limit nginx counts as it reads."""
    h = lua_harness
    await deploy(h, "web")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    big = {P + "proxy-body-size": "8m"}
    h.write("big.yaml", ingress("big", rules=[rule("big.test", path("/", "web"))], annotations=big))
    await expect(h, "/", host="web.test", service="web")
    await expect(h, "/", host="big.test", service="web")
    await h.settled()
    assert h.session is not None
    url = f"http://127.0.0.1:{h.http_port}/upload"

    async def chunked(size: int) -> AsyncIterator[bytes]:
        for _ in range(size // 65536):
            yield b"x" * 65536

    async def status(host: str, data: object) -> int:
        assert h.session is not None
        async with h.session.post(url, data=data, headers={"Host": host}) as resp:
            return resp.status

    assert await status("web.test", io.BytesIO(b"x" * (2 << 20))) == 413
    assert await status("web.test", chunked(2 << 20)) == 413
    assert await status("web.test", chunked(512 << 10)) == 200
    assert await status("big.test", io.BytesIO(b"x" * (2 << 20))) == 200
    assert await status("big.test", chunked(2 << 20)) == 200
    assert await status("big.test", io.BytesIO(b"x" * (9 << 20))) == 413
