"""ingress-nginx details migrating users rely on, through a real nginx: the affinity cookie's
attributes, canaries that keep the sessions they started, and the HTTPS redirect's URI."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, Response
from tests.support.objects import ingress, path, rule, self_signed_certificate, tls, tls_secret

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"


def web(
    name: str, host: str, svc: str, *, created: str = "2024-01-01T00:00:00Z", **kw: str
) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, path("/", svc, 80))],
        annotations={P + k: v for k, v in kw.items()},
        created=created,
    )


def cookie_of(resp: Response) -> str:
    """``name=value`` of the response's Set-Cookie."""
    return resp.headers["Set-Cookie"].split(";", 1)[0]


async def test_affinity_cookie_is_secure_on_https_and_names_its_domain(harness: Harness) -> None:
    h = harness
    await deploy(h, "web", replicas=2)
    await deploy(h, "strict")  # a backend's affinity is one Ingress's: another Service
    h.write(
        "ing.yaml",
        web("app", "app.test", "web", affinity="cookie", **{"session-cookie-domain": ".app.test"}),
        web(
            "strict",
            "strict.test",
            "strict",
            affinity="cookie",
            **{"session-cookie-secure": "true"},
        ),
    )
    await expect(h, "/", host="app.test", service="web")
    plain = (await h.get("/", host="app.test")).headers["Set-Cookie"]
    secure = (await h.get("/", host="app.test", https=True)).headers["Set-Cookie"]
    attributes = [a.strip() for a in plain.split(";")]
    assert "Domain=.app.test" in attributes and "Secure" not in attributes, plain
    assert "Secure" in [a.strip() for a in secure.split(";")], secure
    # session-cookie-secure: Secure on plain HTTP too
    forced = (await h.get("/", host="strict.test")).headers["Set-Cookie"]
    assert "Secure" in [a.strip() for a in forced.split(";")], forced


async def test_canary_keeps_the_sessions_it_started_unless_legacy(harness: Harness) -> None:
    h = harness
    for name in ("main", "canary", "old", "oldcanary"):
        await deploy(h, name)
    canary = {"canary": "true", "canary-weight": "50"}
    h.write(
        "ing.yaml",
        web("main", "app.test", "main", affinity="cookie"),
        web("app-canary", "app.test", "canary", created="2024-02-01T00:00:00Z", **canary),
        web("old", "old.test", "old", affinity="cookie"),
        web(
            "old-canary",
            "old.test",
            "oldcanary",
            created="2024-02-01T00:00:00Z",
            **canary,
            **{"affinity-canary-behavior": "legacy"},
        ),
    )
    await expect(h, "/", host="app.test", service="main", headers={"Cookie": "x=1"}, timeout=10)

    async def served(host: str, cookie: str | None = None) -> tuple[str, Response]:
        resp = await h.get("/", host=host, headers={"Cookie": cookie} if cookie else None)
        assert resp.status == 200, resp.body[:200]
        return (resp.pod or "").rsplit("-", 1)[0], resp

    # sticky (the default): whichever backend a session starts on, it stays there
    started = [await served("app.test") for _ in range(30)]
    assert {svc for svc, _ in started} == {"main", "canary"}
    for svc, resp in started:
        cookie = cookie_of(resp)
        again = {(await served("app.test", cookie))[0] for _ in range(6)}
        assert again == {svc}, (svc, cookie, again)

    # legacy: the canary sets no cookie of its own, and a session of the main backend stays
    # on it (the canary's weight applies to requests without one)
    started = [await served("old.test") for _ in range(30)]
    assert {svc for svc, _ in started} == {"old", "oldcanary"}
    for svc, resp in started:
        if svc == "oldcanary":
            assert "Set-Cookie" not in resp.headers
        else:
            again = {(await served("old.test", cookie_of(resp)))[0] for _ in range(6)}
            assert again == {"old"}


async def test_https_redirect_drops_a_trailing_slash_unless_preserve_trailing_slash(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    cert, key = self_signed_certificate("strip.test", "keep.test")

    def secured(name: str, **annotations: str) -> dict[str, Any]:
        return ingress(
            name,
            rules=[rule(f"{name}.test", path("/", "web", 80))],
            tls_entries=[tls(f"{name}.test", secret_name="site")],
            annotations={P + k: v for k, v in annotations.items()},
        )

    h.write(
        "ing.yaml",
        tls_secret("site", cert_pem=cert, key_pem=key),
        secured("strip"),
        secured("keep", **{"preserve-trailing-slash": "true"}),
    )
    await expect(h, "/a/", host="strip.test", status=308)
    base = f"https://strip.test:{h.https_port}"
    for uri, target in (("/a/", "/a"), ("/a/b/", "/a/b"), ("/a/?q=1", "/a/?q=1"), ("/a", "/a")):
        resp = await h.get(uri, host="strip.test")
        assert (resp.status, resp.headers["Location"]) == (308, base + target), uri
    resp = await h.get("/a/", host="keep.test")
    assert resp.headers["Location"] == f"https://keep.test:{h.https_port}/a/"
