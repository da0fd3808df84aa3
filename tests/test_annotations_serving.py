"""ingress-nginx annotations through a real nginx: what clients and pods see, not config text.

Each test starts one ingressd and groups the annotations of one concern (proxy tuning, routing,
TLS, access), one Ingress per behaviour, so that a failure names the annotation at fault.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import ssl
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.backends import EchoPods
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, Response, free_port
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    service_port,
    tls,
    tls_secret,
)

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def annotated(name: str, host: str, svc: str, p: str = "/", **kw: Any) -> dict[str, Any]:
    """An Ingress: ``host`` + ``p`` -> ``svc`` port 80, ``annotations`` given unprefixed."""
    annotations = {P + k: v for k, v in kw.pop("annotations", {}).items()}
    path_type = kw.pop("path_type", "Prefix")
    port = kw.pop("port", 80)
    return ingress(
        name,
        rules=[rule(host, path(p, svc, port, path_type=path_type))],
        annotations=annotations,
        **kw,
    )


async def request(
    h: Harness,
    method: str,
    url_path: str,
    *,
    host: str,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
) -> Response:
    assert h.session is not None
    all_headers = {"Host": host, **(headers or {})}
    if auth is not None:
        all_headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    async with h.session.request(
        method,
        f"http://127.0.0.1:{h.http_port}{url_path}",
        headers=all_headers,
        data=data,
        allow_redirects=False,
    ) as resp:
        return Response(resp.status, await resp.text(), dict(resp.headers))


def secret(name: str, data: dict[str, bytes], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


# --- proxy tuning ----------------------------------------------------------------------------


async def test_proxy_tuning_annotations_change_limits_timeouts_buffers_and_retries(
    harness: Harness,
) -> None:
    h = harness
    addresses, port = await h.start_pods(1, prefix="web")
    dead = addresses[0].rsplit(".", 1)[0] + ".99"  # nothing listens there: refused at once
    h.write(
        "svc.yaml",
        service("web", ports=[service_port(80, "http", target_port=port)]),
        endpoint_slice("web", endpoints=addresses, port=port, port_name="http"),
        service("flaky", ports=[service_port(80, "http", target_port=port)]),
        endpoint_slice("flaky", endpoints=[addresses[0], dead], port=port, port_name="http"),
    )
    h.write(
        "ing.yaml",
        annotated(
            "tuned",
            "tuned.test",
            "web",
            annotations={
                "proxy-body-size": "1k",
                "proxy-read-timeout": "1",
                "proxy-buffer-size": "16k",
            },
        ),
        annotated("plain", "plain.test", "web"),
        annotated("once", "once.test", "flaky", annotations={"proxy-next-upstream-tries": "1"}),
        annotated("never", "never.test", "flaky", annotations={"proxy-next-upstream": "off"}),
        annotated("retry", "retry.test", "flaky"),
    )
    for host in ("tuned.test", "plain.test", "once.test", "never.test", "retry.test"):
        await expect(h, "/", host=host)

    body = b"x" * 2048
    assert (await request(h, "POST", "/", host="tuned.test", data=body)).status == 413
    assert (await request(h, "POST", "/", host="plain.test", data=body)).status == 200
    assert (await request(h, "POST", "/", host="tuned.test", data=b"x" * 512)).status == 200

    # A pod answering after 1.5 s: past proxy-read-timeout 1 (504), within the default 60.
    slow, fine = await asyncio.gather(
        request(h, "GET", "/?sleep=1.5", host="tuned.test"),
        request(h, "GET", "/?sleep=1.5", host="plain.test"),
    )
    assert (slow.status, fine.status) == (504, 200)

    # A 6000-byte response header does not fit nginx's default 4k buffer, but fits 16k.
    assert (await request(h, "GET", "/?header_bytes=6000", host="tuned.test")).status == 200
    assert (await request(h, "GET", "/?header_bytes=6000", host="plain.test")).status == 502

    # Half the endpoints refuse connections: the default retries hide it; one try or
    # proxy-next-upstream off do not.
    for host, failures_expected in (
        ("retry.test", False),
        ("once.test", True),
        ("never.test", True),
    ):
        statuses = Counter([(await request(h, "GET", "/", host=host)).status for _ in range(12)])
        assert set(statuses) <= {200, 502}, statuses
        assert (statuses[502] > 0) is failures_expected, (host, statuses)


# --- routing and rewriting -------------------------------------------------------------------


async def test_routing_annotations_rewrite_redirect_alias_and_set_headers(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    h.write(
        "ing.yaml",
        annotated(
            "rewrite",
            "rewrite.test",
            "web",
            "/something(/|$)(.*)",
            path_type="ImplementationSpecific",
            annotations={"rewrite-target": "/$2", "use-regex": "true"},
        ),
        annotated("approot", "approot.test", "web", annotations={"app-root": "/app1"}),
        annotated(
            "moved",
            "moved.test",
            "web",
            annotations={"permanent-redirect": "https://example.com/new?from=moved"},
        ),
        annotated(
            "moved308",
            "moved308.test",
            "web",
            annotations={
                "permanent-redirect": "https://example.com/",
                "permanent-redirect-code": "308",
            },
        ),
        annotated(
            "temp",
            "temp.test",
            "web",
            annotations={"temporal-redirect": "http://example.org/later"},
        ),
        annotated(
            "temp307",
            "temp307.test",
            "web",
            annotations={
                "temporal-redirect": "http://example.org/later",
                "temporal-redirect-code": "307",
            },
        ),
        annotated(
            "alias",
            "main.test",
            "web",
            annotations={"server-alias": "alias.test, *.wild-alias.test"},
        ),
        annotated(
            "vhost",
            "vhost.test",
            "web",
            annotations={"upstream-vhost": "internal.example.com", "x-forwarded-prefix": "/prefix"},
        ),
    )
    await expect(h, "/", host="approot.test", status=302)

    for asked, received in (
        ("/something/abc?x=1", "/abc?x=1"),
        ("/something", "/"),
        ("/SOMETHING/deep/er", "/deep/er"),
    ):
        resp = await expect(h, asked, host="rewrite.test", service="web")
        assert resp.json()["path"] == received, asked
        assert resp.json()["headers"]["X-Original-URI"] == asked
    await expect(h, "/other", host="rewrite.test", status=404)

    resp = await request(h, "GET", "/", host="approot.test")
    assert (resp.status, resp.headers["Location"]) == (302, "http://approot.test/app1")
    await expect(h, "/app1", host="approot.test", service="web")

    for host, code, location in (
        ("moved.test", 301, "https://example.com/new?from=moved"),
        ("moved308.test", 308, "https://example.com/"),
        ("temp.test", 302, "http://example.org/later"),
        ("temp307.test", 307, "http://example.org/later"),
    ):
        resp = await request(h, "GET", "/anything", host=host)
        assert (resp.status, resp.headers.get("Location")) == (code, location), host

    for host in ("main.test", "alias.test", "x.wild-alias.test"):
        await expect(h, "/", host=host, service="web")
    await expect(h, "/", host="a.b.wild-alias.test", status=404)

    seen = (await expect(h, "/v", host="vhost.test", service="web")).json()["headers"]
    assert seen["Host"] == "internal.example.com"
    assert seen["X-Forwarded-Prefix"] == "/prefix"
    # The location's own proxy_set_header keeps the standard ones.
    assert seen["X-Forwarded-Host"] == "vhost.test"
    assert seen["X-Real-IP"] == "127.0.0.1"
    assert seen.get("Connection", "").lower() != "close"


async def test_default_backend_serves_when_pods_are_gone_and_takes_custom_errors(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "fallback")
    h.write(
        "empty.yaml",
        service("empty", ports=[service_port(80, "http", target_port=8080)]),
        endpoint_slice("empty", endpoints=[], port_name="http"),
    )
    h.write(
        "ing.yaml",
        annotated("gone", "gone.test", "empty", annotations={"default-backend": "fallback"}),
        annotated(
            "errors",
            "errors.test",
            "web",
            annotations={"default-backend": "fallback", "custom-http-errors": "404,418"},
        ),
        annotated("bare", "bare.test", "empty"),
    )
    await expect(h, "/x", host="gone.test", service="fallback")
    await expect(h, "/x", host="bare.test", status=503)

    await expect(h, "/ok", host="errors.test", service="web")
    # The pod's 404 is intercepted; the default backend answers (here echoing the status).
    resp = await expect(
        h, "/missing?status=404", host="errors.test", status=404, service="fallback"
    )
    seen = resp.json()
    assert seen["path"] == "/?status=404"
    assert seen["headers"]["X-Code"] == "404"
    assert seen["headers"]["X-Original-URI"] == "/missing?status=404"
    # Codes not listed pass through from the pod.
    await expect(h, "/x?status=500", host="errors.test", status=500, service="web")
    log = (h.options.work_dir / "logs" / "error.log").read_text(errors="replace")
    assert "runtime error" not in log and "lua entry thread aborted" not in log


# --- TLS -------------------------------------------------------------------------------------


def _ca_and_leaf(host: str) -> tuple[str, str, str]:
    """A CA certificate and a leaf for ``host`` it signed: (ca_pem, leaf_pem, leaf_key_pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return ca.public_bytes(pem).decode(), leaf.public_bytes(pem).decode(), key_pem


async def test_tls_annotations_redirects_and_https_pods_verified_against_a_secret_ca(
    harness: Harness, world_readable_tmp: Path
) -> None:
    h = harness
    await deploy(h, "web")
    ca_pem, leaf_pem, key_pem = _ca_and_leaf("secure.default.svc")
    other_ca, _, _ = _ca_and_leaf("secure.default.svc")
    cert_file = world_readable_tmp / "pod.pem"
    cert_file.write_text(leaf_pem + key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    port = free_port()
    address = "127.0.77.1"
    pods = EchoPods({address: "secure-0"}, port, ssl_context=context)
    await pods.start()
    h.pods.append(pods)
    site_cert, site_key = _ca_and_leaf("tls.test")[1:]
    h.write(
        "svc.yaml",
        service("secure", ports=[service_port(443, "https", target_port=port)]),
        endpoint_slice("secure", endpoints=[address], port=port, port_name="https"),
        secret("backend-ca", {"ca.crt": ca_pem.encode()}),
        secret("wrong-ca", {"ca.crt": other_ca.encode()}),
        tls_secret("site", cert_pem=site_cert, key_pem=site_key),
    )

    def secure(name: str, **annotations: str) -> dict[str, Any]:
        return ingress(
            name,
            rules=[rule(f"{name}.test", path("/", "secure", 443))],
            annotations={P + k: v for k, v in annotations.items()},
        )

    h.write(
        "ing.yaml",
        ingress(
            "tls",
            rules=[rule("tls.test", path("/", "web", 80))],
            tls_entries=[tls("tls.test", secret_name="site")],
        ),
        ingress(
            "tls-plain",
            rules=[rule("tls-plain.test", path("/", "web", 80))],
            tls_entries=[tls("tls-plain.test", secret_name="site")],
            annotations={P + "ssl-redirect": "false"},
        ),
        annotated("forced", "forced.test", "web", annotations={"force-ssl-redirect": "true"}),
        secure("https", **{"backend-protocol": "HTTPS"}),
        secure(
            "verified",
            **{
                "backend-protocol": "HTTPS",
                "proxy-ssl-verify": "on",
                "proxy-ssl-secret": "default/backend-ca",
            },
        ),
        secure(
            "mistrusted",
            **{
                "backend-protocol": "HTTPS",
                "proxy-ssl-verify": "on",
                "proxy-ssl-secret": "wrong-ca",
            },
        ),
        secure("unverifiable", **{"backend-protocol": "HTTPS", "proxy-ssl-verify": "on"}),
    )
    await expect(h, "/", host="https.test", service="secure")

    resp = await request(h, "GET", "/p?q=1", host="tls.test")
    assert resp.status == 308
    assert resp.headers["Location"] == f"https://tls.test:{h.https_port}/p?q=1"
    await expect(h, "/p", host="tls-plain.test", service="web")
    resp = await request(h, "GET", "/p", host="forced.test")
    assert (resp.status, resp.headers["Location"]) == (308, f"https://forced.test:{h.https_port}/p")

    await expect(h, "/", host="verified.test", service="secure")
    # The pod's certificate is not signed by that CA: nginx refuses to talk to it.
    await expect(h, "/", host="mistrusted.test", status=502)
    # Verification asked for without a CA to verify against: refused, not served unverified.
    await expect(h, "/", host="unverifiable.test", status=503)
    problems = [str(p) for p in h.ingressd.worker.last_build.problems]  # type: ignore[union-attr]
    assert any("unverifiable" in p and "proxy-ssl-verify" in p for p in problems), problems


async def test_proxy_ssl_secret_client_certificate_is_presented_to_a_pod_that_requires_one(
    harness: Harness, world_readable_tmp: Path
) -> None:
    h = harness
    ca_pem, leaf_pem, key_pem = _ca_and_leaf("mtls.default.svc")
    client_ca, client_pem, client_key = _ca_and_leaf("ingressd-client")
    cert_file = world_readable_tmp / "mtls-pod.pem"
    cert_file.write_text(leaf_pem + key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file)
    context.verify_mode = ssl.CERT_REQUIRED  # the pod refuses clients without a certificate
    context.load_verify_locations(cadata=client_ca)
    port, address = free_port(), "127.0.77.2"
    pods = EchoPods({address: "mtls-0"}, port, ssl_context=context)
    await pods.start()
    h.pods.append(pods)
    h.write(
        "svc.yaml",
        service("mtls", ports=[service_port(443, "https", target_port=port)]),
        endpoint_slice("mtls", endpoints=[address], port=port, port_name="https"),
        secret(
            "with-client",
            {
                "ca.crt": ca_pem.encode(),
                "tls.crt": client_pem.encode(),
                "tls.key": client_key.encode(),
            },
        ),
        secret("ca-only", {"ca.crt": ca_pem.encode()}),
    )

    def mtls(name: str, secret_name: str) -> dict[str, Any]:
        return ingress(
            name,
            rules=[rule(f"{name}.test", path("/", "mtls", 443))],
            annotations={
                P + "backend-protocol": "HTTPS",
                P + "proxy-ssl-verify": "on",
                P + "proxy-ssl-secret": secret_name,
            },
        )

    h.write("ing.yaml", mtls("client", "with-client"), mtls("anonymous", "ca-only"))
    await expect(h, "/", host="client.test", service="mtls")
    # Same pod, same CA, no client certificate: the pod ends the handshake, nginx answers 502.
    await expect(h, "/", host="anonymous.test", status=502)


# --- access ----------------------------------------------------------------------------------


def _htpasswd(user: str, password: str) -> bytes:
    digest = base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()
    return f"{user}:{{SHA}}{digest}\n".encode()


async def test_access_annotations_source_ranges_rate_limits_basic_auth_and_cors(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    h.write(
        "auth.yaml",
        secret("users", {"auth": _htpasswd("alice", "s3cret")}),
        secret("user-map", {"bob": _htpasswd("bob", "hunter2").split(b":", 1)[1].strip()}),
    )
    h.write(
        "ing.yaml",
        annotated(
            "allowed",
            "allowed.test",
            "web",
            annotations={"whitelist-source-range": "10.0.0.0/8, 127.0.0.0/8"},
        ),
        annotated(
            "elsewhere",
            "elsewhere.test",
            "web",
            annotations={"allowlist-source-range": "10.0.0.0/8"},
        ),
        annotated(
            "denied",
            "denied.test",
            "web",
            annotations={"denylist-source-range": "192.168.0.0/16,127.0.0.1"},
        ),
        annotated("rps", "rps.test", "web", annotations={"limit-rps": "1"}),
        annotated("conns", "conns.test", "web", annotations={"limit-connections": "1"}),
        annotated(
            "auth",
            "auth.test",
            "web",
            annotations={"auth-type": "basic", "auth-secret": "users", "auth-realm": "Staff only"},
        ),
        annotated(
            "authmap",
            "authmap.test",
            "web",
            annotations={
                "auth-type": "basic",
                "auth-secret": "user-map",
                "auth-secret-type": "auth-map",
            },
        ),
        annotated(
            "nosecret",
            "nosecret.test",
            "web",
            annotations={"auth-type": "basic", "auth-secret": "missing"},
        ),
        annotated("cors", "cors.test", "web", annotations={"enable-cors": "true"}),
        annotated(
            "cors-list",
            "cors-list.test",
            "web",
            annotations={
                "enable-cors": "true",
                "cors-allow-origin": "https://app.example.com, https://*.example.org",
                "cors-allow-methods": "GET, POST",
                "cors-allow-headers": "X-Token",
                "cors-expose-headers": "X-Pod",
                "cors-allow-credentials": "false",
                "cors-max-age": "600",
            },
        ),
    )
    await expect(h, "/", host="allowed.test", service="web")
    await expect(h, "/", host="elsewhere.test", status=403)
    await expect(h, "/", host="denied.test", status=403)

    # limit-rps 1 with ingress-nginx's burst multiplier 5: a quick series is cut off with 503.
    statuses = Counter([(await request(h, "GET", "/", host="rps.test")).status for _ in range(15)])
    assert set(statuses) == {200, 503}, statuses
    assert 5 <= statuses[200] <= 8, statuses

    # limit-connections 1: of concurrent slow requests from one address, only one is let in.
    results = await asyncio.gather(
        *(request(h, "GET", "/?sleep=0.4", host="conns.test") for _ in range(4))
    )
    assert sorted(r.status for r in results) == [200, 503, 503, 503]

    resp = await request(h, "GET", "/", host="auth.test")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="Staff only"'
    bad = ("alice", "wrong")
    assert (await request(h, "GET", "/", host="auth.test", auth=bad)).status == 401
    good = ("alice", "s3cret")
    resp = await request(h, "GET", "/", host="auth.test", auth=good)
    assert (resp.status, resp.pod) == (200, "web-0")
    # The password stays at nginx: the pod gets no Authorization header, and the rest of the
    # usual request headers still.
    received = {k.lower(): v for k, v in resp.json()["headers"].items()}
    assert "authorization" not in received
    assert received["x-forwarded-host"] == "auth.test" and "x-real-ip" in received
    # cert-manager's HTTP-01 solver is reached without credentials (no-auth-locations)
    resp = await request(h, "GET", "/.well-known/acme-challenge/token", host="auth.test")
    assert (resp.status, resp.pod) == (200, "web-0")
    assert (await request(h, "GET", "/.well-known/acme-challengeX", host="auth.test")).status == 401
    assert (await request(h, "GET", "/", host="authmap.test")).status == 401
    bob = ("bob", "hunter2")
    assert (await request(h, "GET", "/", host="authmap.test", auth=bob)).status == 200
    # auth-type basic with a Secret that does not exist: refused, never served open.
    assert (await request(h, "GET", "/", host="nosecret.test", auth=good)).status == 503

    origin = {"Origin": "https://app.example.com"}
    preflight = {**origin, "Access-Control-Request-Method": "POST"}
    resp = await request(h, "OPTIONS", "/", host="cors.test", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "*"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, PUT, POST, DELETE, PATCH, OPTIONS"
    assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
    assert resp.headers["Access-Control-Allow-Credentials"] == "true"
    assert resp.headers["Access-Control-Max-Age"] == "1728000"
    assert resp.pod is None  # answered by nginx
    resp = await request(h, "GET", "/", host="cors.test", headers=origin)
    assert (resp.pod, resp.headers["Access-Control-Allow-Origin"]) == ("web-0", "*")

    resp = await request(h, "OPTIONS", "/", host="cors-list.test", headers=preflight)
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert resp.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert resp.headers["Access-Control-Allow-Headers"] == "X-Token"
    assert resp.headers["Access-Control-Max-Age"] == "600"
    assert "Access-Control-Allow-Credentials" not in resp.headers
    wild = {"Origin": "https://shop.example.org"}
    resp = await request(h, "GET", "/", host="cors-list.test", headers=wild)
    assert resp.headers["Access-Control-Allow-Origin"] == "https://shop.example.org"
    assert resp.headers["Access-Control-Expose-Headers"] == "X-Pod"
    resp = await request(
        h, "GET", "/", host="cors-list.test", headers={"Origin": "https://evil.example.net"}
    )
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers


# --- gRPC ------------------------------------------------------------------------------------


async def _h2c_pod(
    root: Path, address: str, port: int, *, certificate: str | None = None
) -> asyncio.subprocess.Process:
    """A pod that speaks only HTTP/2, as gRPC servers do: a tiny nginx; without TLS (h2c), or
    with TLS when given a ``certificate`` (PEM chain + key)."""
    root.mkdir()
    conf = root / "nginx.conf"
    tls = ""
    if certificate is not None:
        (root / "pod.pem").write_text(certificate)
        tls = f" ssl; ssl_certificate {root}/pod.pem; ssl_certificate_key {root}/pod.pem"
    conf.write_text(
        f"daemon off; master_process off; pid {root}/nginx.pid; error_log {root}/error.log;\n"
        "events {}\n"
        "http { access_log off;\n"
        f"  server {{ listen {address}:{port} http2{tls};\n"
        '    location / { add_header X-Pod "grpc-0" always; return 200 "h2c pod\\n"; } } }\n'
    )
    process = await asyncio.create_subprocess_exec(
        "nginx", "-p", str(root), "-c", str(conf), stderr=asyncio.subprocess.DEVNULL
    )
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection(address, port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        return process
    process.kill()
    raise AssertionError("the h2c pod did not start")


async def _curl_h2(h: Harness, host: str) -> tuple[str, str]:
    """``curl --http2`` through nginx's HTTPS port: (status line, response head)."""
    process = await asyncio.create_subprocess_exec(
        "curl",
        "-sk",
        "--http2",
        "--resolve",
        f"{host}:{h.https_port}:127.0.0.1",
        "-D",
        "-",
        "-o",
        "/dev/null",
        f"https://{host}:{h.https_port}/helloworld.Greeter/Hi",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    head = out.decode()
    return head.split("\r\n", 1)[0].strip(), head


async def test_grpc_backend_protocol_speaks_http2_to_the_pods(
    harness: Harness, world_readable_tmp: Path
) -> None:
    h = harness
    address, port = "127.0.78.1", free_port()
    pod = await _h2c_pod(world_readable_tmp / "h2c", address, port)
    try:
        h.write(
            "svc.yaml",
            service("greeter", ports=[service_port(50051, "grpc", target_port=port)]),
            endpoint_slice("greeter", endpoints=[address], port=port, port_name="grpc"),
        )
        h.write(
            "ing.yaml",
            annotated(
                "greeter",
                "grpc.test",
                "greeter",
                port=50051,
                annotations={"backend-protocol": "GRPC"},
            ),
            ingress("plain", rules=[rule("plain.test", path("/", "greeter", 50051))]),
        )

        async def served() -> None:
            status, head = await _curl_h2(h, "grpc.test")
            assert status == "HTTP/2 200", head
            assert "x-pod: grpc-0" in head.lower()

        await h.eventually(served)
        # Without the annotation nginx speaks HTTP/1.1 to a pod that only knows HTTP/2.
        status, head = await _curl_h2(h, "plain.test")
        assert status != "HTTP/2 200" and "x-pod" not in head.lower(), head
    finally:
        pod.terminate()
        await pod.wait()


async def test_grpcs_backend_protocol_speaks_http2_over_tls_verified_against_the_secret_ca(
    harness: Harness, world_readable_tmp: Path
) -> None:
    h = harness
    address, port = "127.0.78.2", free_port()
    ca_pem, leaf_pem, key_pem = _ca_and_leaf("greeter.default.svc")
    other_ca, _, _ = _ca_and_leaf("greeter.default.svc")
    pod = await _h2c_pod(
        world_readable_tmp / "h2tls", address, port, certificate=leaf_pem + key_pem
    )
    try:
        h.write(
            "svc.yaml",
            service("greeter", ports=[service_port(50051, "grpcs", target_port=port)]),
            endpoint_slice("greeter", endpoints=[address], port=port, port_name="grpcs"),
            secret("greeter-ca", {"ca.crt": ca_pem.encode()}),
            secret("other-ca", {"ca.crt": other_ca.encode()}),
        )

        def grpcs(name: str, **more: str) -> dict[str, Any]:
            return annotated(
                name,
                f"{name}.test",
                "greeter",
                port=50051,
                annotations={"backend-protocol": "GRPCS", **more},
            )

        h.write(
            "ing.yaml",
            grpcs("grpcs"),
            grpcs("verified", **{"proxy-ssl-verify": "on", "proxy-ssl-secret": "greeter-ca"}),
            grpcs("mistrusted", **{"proxy-ssl-verify": "on", "proxy-ssl-secret": "other-ca"}),
            annotated(
                "grpc-plain",
                "grpc-plain.test",
                "greeter",
                port=50051,
                annotations={"backend-protocol": "GRPC"},
            ),
        )

        async def served(host: str) -> None:
            status, head = await _curl_h2(h, host)
            assert status == "HTTP/2 200", head
            assert "x-pod: grpc-0" in head.lower()

        await h.eventually(lambda: served("grpcs.test"))
        await h.eventually(lambda: served("verified.test"))
        # Not signed by that CA: nginx refuses the pod's certificate (502, nothing from the pod).
        status, head = await _curl_h2(h, "mistrusted.test")
        assert status == "HTTP/2 502" and "x-pod" not in head.lower(), head
        # h2c to a pod that only speaks TLS: no answer from the pod.
        status, head = await _curl_h2(h, "grpc-plain.test")
        assert status != "HTTP/2 200" and "x-pod" not in head.lower(), head
    finally:
        pod.terminate()
        await pod.wait()
