"""TLS through real handshakes: certificates by SNI, the default certificate, the 308 redirect."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest
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


def common_name(port: int, server_name: str) -> str:
    cert = peer_certificate(port, server_name)
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


async def test_tls_hosts_get_their_certificate_by_sni_and_others_the_default(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "shop")
    web_cert, web_key = self_signed_certificate("web.test")
    shop_cert, shop_key = self_signed_certificate("shop.test")
    h.write(
        "secrets.yaml",
        tls_secret("web-tls", cert_pem=web_cert, key_pem=web_key),
        tls_secret("shop-tls", cert_pem=shop_cert, key_pem=shop_key),
    )
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/", "web"))],
            tls_entries=[tls("web.test", secret_name="web-tls")],
        ),
        ingress(
            "shop",
            rules=[rule("shop.test", path("/", "shop"))],
            tls_entries=[tls("shop.test", secret_name="shop-tls")],
        ),
        ingress("plain", rules=[rule("plain.test", path("/", "web"))]),
    )
    await expect(h, "/", host="web.test", https=True, service="web")
    await expect(h, "/", host="shop.test", https=True, service="shop")
    assert await asyncio.to_thread(common_name, h.https_port, "web.test") == "web.test"
    assert await asyncio.to_thread(common_name, h.https_port, "shop.test") == "shop.test"
    default = await asyncio.to_thread(common_name, h.https_port, "plain.test")
    assert default == "ingressd default certificate"
    await expect(h, "/", host="plain.test", https=True, service="web")
    # Key files are private to the controller.
    for cert_file in (h.options.work_dir / "certs").glob("*.pem"):
        assert stat.S_IMODE(os.stat(cert_file).st_mode) == 0o600


async def test_tls_hosts_redirect_http_to_https_with_308(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    cert, key = self_signed_certificate("web.test")
    h.write("secret.yaml", tls_secret("web-tls", cert_pem=cert, key_pem=key))
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/", "web")), rule("plain.test", path("/", "web"))],
            tls_entries=[tls("web.test", secret_name="web-tls")],
        ),
    )
    resp = await expect(h, "/a/b?c=d", host="web.test", status=308)
    assert resp.headers["Location"] == f"https://web.test:{h.https_port}/a/b?c=d"
    # ACME HTTP-01 challenges are not redirected; hosts without TLS are not either.
    await expect(h, "/.well-known/acme-challenge/token", host="web.test", service="web")
    await expect(h, "/", host="plain.test", service="web")


async def test_rotated_certificate_is_served_after_the_change(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    cert, key = self_signed_certificate("web.test")
    h.write("secret.yaml", tls_secret("web-tls", cert_pem=cert, key_pem=key))
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/", "web"))],
            tls_entries=[tls("web.test", secret_name="web-tls")],
        ),
    )
    await expect(h, "/", host="web.test", https=True, service="web")
    first = await asyncio.to_thread(peer_certificate, h.https_port, "web.test")
    cert2, key2 = self_signed_certificate("web.test")
    h.write("secret.yaml", tls_secret("web-tls", cert_pem=cert2, key_pem=key2))

    async def rotated() -> None:
        now = await asyncio.to_thread(peer_certificate, h.https_port, "web.test")
        assert now.serial_number != first.serial_number

    await h.eventually(rotated)


async def test_missing_or_malformed_secret_falls_back_to_the_default_certificate(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    cert, _ = self_signed_certificate("bad.test")
    _, other_key = self_signed_certificate("other.test")
    h.write("secret.yaml", tls_secret("mismatched", cert_pem=cert, key_pem=other_key))
    h.write(
        "ing.yaml",
        ingress(
            "missing",
            rules=[rule("missing.test", path("/", "web"))],
            tls_entries=[tls("missing.test", secret_name="nope")],
        ),
        ingress(
            "bad",
            rules=[rule("bad.test", path("/", "web"))],
            tls_entries=[tls("bad.test", secret_name="mismatched")],
        ),
    )
    await expect(h, "/", host="missing.test", https=True, service="web")
    await expect(h, "/", host="bad.test", https=True, service="web")
    await expect(h, "/", host="bad.test", service="web")  # no redirect without a certificate
    assert await asyncio.to_thread(common_name, h.https_port, "bad.test") == (
        "ingressd default certificate"
    )
    build = h.ingressd.worker.last_build
    assert build is not None
    fields = {(p.key, p.field) for p in build.problems}
    assert ("default/missing", "spec.tls[0].secretName") in fields
