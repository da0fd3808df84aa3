"""Client certificates (``auth-tls-*``) through a real nginx: real TLS handshakes with good,
foreign, revoked and missing client certificates, and what the pods are told.

Each host of one ingressd tests one setting; ``INGRESSD_TEST_ROUTING=lua`` runs the same
requests with Lua routing, where these hosts keep server blocks of their own.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, peer_certificate
from tests.support.objects import ingress, path, rule, self_signed_certificate, tls, tls_secret
from tests.support.pki import CertificateAuthority, client_context

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def secret(name: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def guarded(
    name: str, secret_name: str, *, tls_secret_name: str | None = None, **more: str
) -> dict[str, Any]:
    """Ingress ``name``: host ``<name>.test`` -> Service web, client certificates from
    ``secret_name``, more ``auth-tls-*`` annotations unprefixed."""
    annotations = {P + "auth-tls-secret": f"default/{secret_name}"}
    annotations.update({P + k: v for k, v in more.items()})
    return ingress(
        name,
        rules=[rule(f"{name}.test", path("/", "web", 80))],
        annotations=annotations,
        tls_entries=[tls(f"{name}.test", secret_name=tls_secret_name)] if tls_secret_name else (),
    )


def resumed_elsewhere(
    port: int, first: str, second: str, context: ssl.SSLContext
) -> tuple[bool, int]:
    """Handshake (TLS 1.2) for ``first``, then resume that session for ``second`` and GET /
    there: (was the session resumed, status)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=first) as tls:
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {first}\r\nConnection: close\r\n\r\n".encode())
            while tls.recv(65536):
                pass
            session = tls.session
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=second, session=session) as tls:
            reused = bool(tls.session_reused)
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {second}\r\nConnection: close\r\n\r\n".encode())
            head = tls.recv(64).decode(errors="replace")
    return reused, int(head.split()[1])


async def test_client_certificates_are_checked_at_the_handshake_and_described_to_the_pod(
    harness: Harness, world_readable_tmp: Path
) -> None:
    h = harness
    await deploy(h, "web")
    good, foreign = CertificateAuthority("good ca"), CertificateAuthority("foreign ca")
    client_a = good.issue("client-a")
    revoked = good.issue("client-r")
    good.revoke(revoked[0])
    stranger = foreign.issue("client-a")
    site_cert, site_key = self_signed_certificate("on.test")
    others = (
        # a CRL the CA did not sign: refused, and the Ingress fails closed
        secret("forged-crl", {"ca.crt": good.pem, "ca.crl": foreign.crl()}),
        secret("foreign-ca", {"ca.crt": foreign.pem}),
        tls_secret("site", cert_pem=site_cert, key_pem=site_key),
    )
    h.write(
        "secrets.yaml", secret("client-ca", {"ca.crt": good.pem, "ca.crl": good.crl()}), *others
    )
    h.write(
        "ing.yaml",
        guarded(
            "on",
            "client-ca",
            tls_secret_name="site",
            **{"auth-tls-pass-certificate-to-upstream": "true"},
        ),
        guarded("optional", "client-ca", **{"auth-tls-verify-client": "optional"}),
        guarded("cn", "client-ca", **{"auth-tls-match-cn": "CN=client-b"}),
        guarded("cn-ok", "client-ca", **{"auth-tls-match-cn": "CN=client-(a|z)$"}),
        guarded(
            "errpage",
            "client-ca",
            **{"auth-tls-error-page": "https://login.example.com/certificate"},
        ),
        guarded("forged", "forged-crl"),
        guarded("foreign", "foreign-ca"),
        ingress("open", rules=[rule("open.test", path("/", "web", 80))]),
    )
    tmp = world_readable_tmp
    with_a = client_context(*client_a, tmp)
    with_revoked = client_context(*revoked, tmp)
    with_stranger = client_context(*stranger, tmp)
    without = client_context(None, None, tmp)

    # a good certificate: served, and the pod learns what the handshake found
    resp = await expect(h, "/", host="on.test", https=True, ssl_context=with_a, service="web")
    seen = {k.lower(): v for k, v in resp.json()["headers"].items()}
    assert seen["ssl-client-verify"] == "SUCCESS"
    assert seen["ssl-client-subject-dn"] == "CN=client-a"
    assert seen["ssl-client-issuer-dn"] == "CN=good ca"
    assert urllib.parse.unquote(seen["ssl-client-cert"]).strip() == client_a[0].strip()
    # the host's own certificate is still served by SNI
    assert peer_certificate(h.https_port, "on.test").subject.rfc4514_string() == "CN=on.test"
    # a foreign CA, a revoked certificate, none: 400 from nginx, never the pod
    for context in (with_stranger, with_revoked, without):
        resp = await h.get("/", host="on.test", https=True, ssl_context=context)
        assert resp.status == 400 and resp.pod is None, (resp.status, resp.body[:200])
    # plain HTTP on a TLS host redirects to HTTPS first (ssl-redirect)
    resp = await h.get("/x/", host="on.test")
    assert resp.status == 308
    assert resp.headers["Location"] == f"https://on.test:{h.https_port}/x"

    # optional: no certificate is fine, the pod is told; a good one is verified; the
    # certificate itself is not passed without auth-tls-pass-certificate-to-upstream
    resp = await h.get("/", host="optional.test", https=True, ssl_context=without)
    assert resp.status == 200
    assert resp.json()["headers"]["ssl-client-verify"] == "NONE"
    resp = await h.get("/", host="optional.test", https=True, ssl_context=with_a)
    assert resp.status == 200
    headers = resp.json()["headers"]
    assert headers["ssl-client-verify"] == "SUCCESS" and "ssl-client-cert" not in headers
    resp = await h.get("/", host="optional.test", https=True, ssl_context=with_stranger)
    assert resp.status == 400

    # auth-tls-match-cn: a subject that does not match is refused after the handshake
    resp = await h.get("/", host="cn.test", https=True, ssl_context=with_a)
    assert resp.status == 403 and resp.pod is None
    resp = await h.get("/", host="cn-ok.test", https=True, ssl_context=with_a)
    assert resp.status == 200

    # auth-tls-error-page: a failed verification redirects there
    resp = await h.get("/", host="errpage.test", https=True, ssl_context=without)
    assert resp.status == 302
    assert resp.headers["Location"] == "https://login.example.com/certificate"
    # a host without TLS: plain HTTP carries no certificate and verification is on
    resp = await h.get("/", host="cn-ok.test")
    assert resp.status == 400 and resp.pod is None
    resp = await h.get("/", host="errpage.test")
    assert resp.status == 302
    # ... except ACME HTTP-01 challenges (cert-manager)
    resp = await h.get("/.well-known/acme-challenge/token", host="errpage.test")
    assert resp.status == 200 and resp.pod is not None
    # optional verification lets plain HTTP through
    resp = await h.get("/", host="optional.test")
    assert resp.status == 200

    # an unusable Secret: the Ingress answers 503, the problem names the Secret
    resp = await h.get("/", host="forged.test", https=True, ssl_context=with_a)
    assert resp.status == 503
    problems = [str(p) for p in h.ingressd.worker.last_build.problems]  # type: ignore[union-attr]
    assert any("Secret default/forged-crl" in p and "data.ca.crl" in p for p in problems), problems
    # other hosts ask for no certificate
    resp = await h.get("/", host="open.test", https=True, ssl_context=without)
    assert resp.status == 200
    assert "ssl-client-verify" not in resp.json()["headers"]
    # a handshake for another host's name does not open a guarded one: nginx answers 421
    # when that name has a server block, else 400 (no certificate was asked for)
    assert h.session is not None
    async with h.session.get(
        f"https://127.0.0.1:{h.https_port}/",
        headers={"Host": "on.test"},
        ssl=without,
        server_hostname="open.test",
    ) as raw:
        assert raw.status in (400, 421) and "X-Pod" not in raw.headers

    # nor does a TLS session of another host, resumed: one without a certificate still has
    # none, one verified against another host's CA is not taken here (in a thread: the pods
    # answer on this event loop)
    tls12 = client_context(*client_a, tmp, maximum_version=ssl.TLSVersion.TLSv1_2)
    for first, second in (("open.test", "on.test"), ("on.test", "foreign.test")):
        _, status = await asyncio.to_thread(resumed_elsewhere, h.https_port, first, second, tls12)
        # 421: nginx takes a resumed session's name from the session
        assert status in (400, 421), (first, second, status)
    # (the same host: the session and its verified certificate are good there)
    reused, status = await asyncio.to_thread(
        resumed_elsewhere, h.https_port, "on.test", "on.test", tls12
    )
    assert (reused, status) == (True, 200)  # sessions do resume here: the cases above count

    # the CA rotates: the new CA's clients get in, the old one's do not (after a reload)
    reloads = h.reloads
    h.write("secrets.yaml", secret("client-ca", {"ca.crt": foreign.pem}), *others)
    await expect(h, "/", host="on.test", https=True, ssl_context=with_stranger, service="web")
    resp = await h.get("/", host="on.test", https=True, ssl_context=with_a)
    assert resp.status == 400

    async def reloaded() -> None:
        assert h.reloads > reloads

    await h.eventually(reloaded)
