"""External authentication (``auth-url`` & co, ``global-auth-*``): grammars, then the whole flow
through a real nginx against a small auth service with oauth2-proxy's contract
(``tests/support/authservice.py``)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from ingressd.annotations import AnnotationOptions, extauth, parse_annotations
from ingressd.annotations.parsing import Status
from ingressd.annotations.values import InvalidValue
from ingressd.model import ObjectKey
from ingressd.model.settings import ExternalAuth
from ingressd.nginx.external_auth import auth_locations, location_auth, system_resolvers
from ingressd.nginx.quoting import DirectiveError, quote_variables
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.configmap import parse_configmap
from tests.support.authservice import COOKIE, AuthService
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, Response, free_port, pod_addresses, running_harness
from tests.support.objects import ingress, path, rule, self_signed_certificate

P = "nginx.ingress.kubernetes.io/"
CONFIGMAP = ObjectKey("ingressd/ingressd-controller")


def parsed(**annotations: str) -> Any:
    return parse_annotations(
        "default/x", {P + k: v for k, v in annotations.items()}, AnnotationOptions()
    )


# --- grammars (pure) -------------------------------------------------------------------------


def test_auth_url_takes_plain_http_and_https_urls_only() -> None:
    assert (
        extauth.auth_url("http://10.0.0.9:4180/oauth2/auth") == "http://10.0.0.9:4180/oauth2/auth"
    )
    assert extauth.auth_url("HTTPS://Auth.Example.com/x?a=b") == "https://auth.example.com/x?a=b"
    for bad in (
        "http://$host/oauth2/auth",  # a variable: nginx would need a resolver per request
        "ftp://a/b",
        "/oauth2/auth",
        "http://u:p@a/b",
        "http://a/b#frag",
        "http://a/b c",
    ):
        with pytest.raises(InvalidValue):
            extauth.auth_url(bad)


#: Values that tried to escape the quoted string in ingress-nginx (CVE-2025-24514 and the like).
INJECTIONS = [
    'http://a/x"; } location /pwn { return 200 "owned',
    "http://a/x;\nload_module /tmp/evil.so;",
    "http://a/x}",
    "http://a/x{",
    "http://a/x#",
    "http://a/x\\",
    "http://a/x'",
    "http://a/$remote_addr",
    "http://a/${ngx_prefix}",
    "http://a/x\r\nX: y",
]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injections_through_auth_annotations_are_refused_and_fail_closed(value: str) -> None:
    names = ["auth-url", "auth-signin", "auth-request-redirect"]
    if value != "http://a/$remote_addr":  # a fine cache key: text and an allowed variable
        names.append("auth-cache-key")
    for name in names:
        result = parsed(**{"auth-url": "http://10.0.0.9/ok", name: value})
        report = {r.key: r for r in result.report}
        assert report[P + name].status is Status.INVALID, (name, value)
    assert parsed(**{"auth-url": value}).settings.denied is not None


def test_signin_url_allows_the_request_variables_and_nothing_else() -> None:
    ok = "https://$host/oauth2/start?rd=$escaped_request_uri"
    assert extauth.signin_url(ok) == ok
    assert (
        extauth.signin_url("https://Login.Example.com/start") == "https://login.example.com/start"
    )
    for bad in (
        "https://$remote_addr/x",
        "https://a/x?$request_body",
        "https://a/x?${request_uri}}",
        "https://$host.evil/x",
        "/relative",
    ):
        with pytest.raises(InvalidValue):
            extauth.signin_url(bad)


def test_cache_key_duration_and_header_values_have_strict_grammars() -> None:
    assert extauth.cache_key("$remote_user$http_authorization") == "$remote_user$http_authorization"
    assert extauth.cache_key("v1-$cookie__oauth2_proxy") == "v1-$cookie__oauth2_proxy"
    for bad in ("$request_body", "a b", "$", "x;y", "$http_"):
        with pytest.raises(InvalidValue):
            extauth.cache_key(bad)
    assert extauth.cache_durations("200 202 10m, 401 30s") == ("200 202 10m", "401 30s")
    assert extauth.cache_durations("any 1m") == ("any 1m",)
    for bad in ("10m 200", "200", "200 10x", "2000 1m", "200 1m;"):
        with pytest.raises(InvalidValue):
            extauth.cache_durations(bad)
    assert extauth.header_value("t=${msec}") == "t=${msec}"
    assert extauth.header_value("static value") == "static value"
    for bad in ('a"b', "a;b", "a{b", "$request_body", "a\nb", "a\\b", "${msec"):
        with pytest.raises(InvalidValue):
            extauth.header_value(bad)


def test_auth_annotations_get_ingress_nginx_defaults() -> None:
    auth = parsed(**{"auth-url": "http://10.0.0.9/oauth2/auth"}).settings.external_auth
    assert auth == ExternalAuth(url="http://10.0.0.9/oauth2/auth")
    assert (auth.signin_redirect_param, auth.cache_duration) == ("rd", ("200 202 401 5m",))
    assert (auth.keepalive, auth.keepalive_requests, auth.keepalive_timeout) == (0, 1000, 60)
    result = parsed(**{"auth-signin": "https://a/start", "auth-method": "GET"})
    report = {r.key: r.status for r in result.report}
    assert report[P + "auth-signin"] is Status.IGNORED
    assert result.settings.external_auth is None
    assert parsed(**{"enable-global-auth": "false"}).global_auth is False
    assert parsed().global_auth is True
    assert parsed(**{"enable-global-auth": "maybe"}).settings.denied is not None


def test_always_set_cookie_sends_the_auth_cookie_on_every_status() -> None:
    plain = location_auth(ExternalAuth(url="http://10.0.0.9/"), ())
    always = location_auth(ExternalAuth(url="http://10.0.0.9/", always_set_cookie=True), ())
    assert plain.add_headers == ("add_header Set-Cookie $ingressd_auth_cookie;",)
    assert always.add_headers == ("add_header Set-Cookie $ingressd_auth_cookie always;",)


def test_resolvers_come_from_resolv_conf_nameservers() -> None:
    text = (
        "search svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver x\n"
    )
    assert system_resolvers(text) == ("10.96.0.10", "[fe80::1]")


def test_the_quoting_layer_refuses_what_slips_past_a_grammar() -> None:
    assert quote_variables("t=${msec} $host") == '"t=${msec} $host"'
    for bad in ('a"', "a;", "a{", "${x", "a\\", "a#", "a\n", "$"):
        with pytest.raises(DirectiveError):
            quote_variables(bad)
    sneaky = ExternalAuth(url='http://a/"; return 200;')
    with pytest.raises(DirectiveError):
        auth_locations([sneaky], proxy_headers=(), no_auth_locations=(), hsts_variable=None)
    sneaky_header = ExternalAuth(url="http://a/", response_headers=("X-A; evil",))
    with pytest.raises(DirectiveError):
        location_auth(sneaky_header, ())


def test_global_auth_keys_parse_and_an_invalid_one_fails_closed() -> None:
    options, problems = parse_configmap(
        {
            "metadata": {"name": "c", "namespace": "ingressd"},
            "data": {
                "global-auth-url": "http://10.0.0.9/oauth2/auth",
                "global-auth-signin": "https://login.test/oauth2/start",
                "global-auth-response-headers": "X-Auth-Request-User",
                "global-auth-cache-key": "$cookie__oauth2_proxy",
                "global-auth-cache-duration": "202 1m",
                "global-auth-always-set-cookie": "true",
            },
        }
    )
    assert problems == ()
    auth = options.global_auth()
    assert auth is not None and auth.response_headers == ("X-Auth-Request-User",)
    assert (auth.cache_duration, auth.always_set_cookie) == (("202 1m",), True)
    options, problems = parse_configmap(
        {"metadata": {"name": "c"}, "data": {"global-auth-url": "http://$host/x"}}
    )
    assert [p.field for p in problems] == ["data.global-auth-url"]
    assert options.global_auth_invalid


# --- through nginx ---------------------------------------------------------------------------


@pytest.fixture
async def h(world_readable_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A running ingressd that reads ConfigMap ingressd/ingressd-controller."""
    async with running_harness(world_readable_tmp, request, configmap=CONFIGMAP) as harness:
        yield harness


@pytest.fixture
async def auth_service() -> AsyncIterator[AuthService]:
    service = AuthService(pod_addresses(1)[0], free_port())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def protected(name: str, host: str, svc: str, **annotations: str) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, path("/", svc))],
        annotations={P + k: v for k, v in annotations.items()},
    )


async def get(
    h: Harness, url_path: str, *, host: str, cookie: str | None = None, https: bool = False
) -> Response:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else None
    return await h.get(url_path, host=host, headers=headers, https=https)


async def follow(url: str, session: aiohttp.ClientSession) -> tuple[str, str]:
    """The sign-in at the auth service: /oauth2/start -> /oauth2/callback -> back to rd.
    Returns the session cookie it set and where it sent the browser back to."""
    async with session.get(url, allow_redirects=False) as start:
        assert start.status == 302
        callback = start.headers["Location"]
    split = urlsplit(url)
    async with session.get(
        f"{split.scheme}://{split.netloc}{callback}", allow_redirects=False
    ) as resp:
        assert resp.status == 302
        return resp.cookies[COOKIE].value, resp.headers["Location"]


@pytest.mark.nginx
async def test_login_round_trip_through_the_auth_service(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    h.write(
        "ing.yaml",
        protected(
            "app",
            "app.test",
            "web",
            **{
                "auth-url": f"{a.base}/oauth2/auth",
                "auth-signin": f"{a.base}/oauth2/start",
                "auth-response-headers": "X-Auth-Request-User, X-Auth-Request-Email",
            },
        ),
        protected("open", "open.test", "web"),
    )
    await expect(h, "/", host="open.test", service="web")
    # No session: 302 to the sign-in, the original URL in rd.
    resp = await h.eventually(lambda: _expect_status(h, "/private?x=1", "app.test", 302))
    signin = resp.headers["Location"]
    assert signin.startswith(f"{a.base}/oauth2/start?rd=")
    assert parse_qs(urlsplit(signin).query)["rd"] == ["http://app.test/private?x=1"]
    # What nginx told the auth service about the request.
    _, sent = a.checks[-1]
    assert sent["X-Original-URL"] == "http://app.test/private?x=1"
    assert sent["X-Original-Method"] == "GET"
    assert sent["X-Sent-From"] == "nginx-ingress-controller"
    assert sent["X-Auth-Request-Redirect"] == "/private?x=1"
    assert sent["X-Real-IP"] == "127.0.0.1" and sent["X-Forwarded-For"] == "127.0.0.1"
    assert sent["Host"] == f"{a.address}:{a.port}"

    assert h.session is not None
    cookie, back = await follow(signin, h.session)
    assert back == "http://app.test/private?x=1"
    resp = await get(h, "/private?x=1", host="app.test", cookie=cookie)
    assert (resp.status, resp.pod) == (200, "web-0")
    received = resp.json()["headers"]
    assert received["X-Auth-Request-User"] == "alice"
    assert received["X-Auth-Request-Email"] == "alice@example.com"
    assert "X-Not-Listed" not in received
    # the usual forwarded headers still reach the pod beside the auth ones
    assert received["X-Forwarded-Host"] == "app.test"
    # the auth service saw the session cookie; a bad cookie is sent to sign in again
    assert (await get(h, "/", host="app.test", cookie="forged")).status == 302
    # an Ingress without auth-url is not asked about
    before = len(a.checks)
    await expect(h, "/", host="open.test", service="web")
    assert len(a.checks) == before


async def _expect_status(h: Harness, url_path: str, host: str, status: int) -> Response:
    resp = await h.get(url_path, host=host)
    assert resp.status == status, (resp.status, resp.body)
    return resp


@pytest.mark.nginx
async def test_auth_service_errors_give_500_and_401_without_signin_is_answered(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    dead = f"http://{pod_addresses(1)[0]}:{free_port()}/oauth2/auth"
    h.write(
        "ing.yaml",
        protected("app", "app.test", "web", **{"auth-url": f"{a.base}/oauth2/auth"}),
        protected("down", "down.test", "web", **{"auth-url": dead}),
        protected("bad", "bad.test", "web", **{"auth-url": "http://$host/oauth2/auth"}),
        # a name resolved per request: one that does not resolve fails its requests only
        protected("named", "named.test", "web", **{"auth-url": "http://auth.invalid/oauth2/auth"}),
        protected("evil", "evil.test", "web", **{"auth-url": 'http://a/"; return 200 "x'}),
    )
    await h.eventually(lambda: _expect_status(h, "/", "app.test", 401))
    cookie = a.login("bob")
    assert (await get(h, "/", host="app.test", cookie=cookie)).status == 200
    a.fail_with = 503
    assert (await get(h, "/", host="app.test", cookie=cookie)).status == 500
    a.fail_with = 403
    assert (await get(h, "/", host="app.test", cookie=cookie)).status == 403
    # an auth service nobody answers at: 500, never the pod
    assert (await get(h, "/", host="down.test")).status == 500
    assert (await get(h, "/", host="named.test")).status == 500
    # invalid auth-url: refused with 503 (fails closed), the others keep serving
    assert (await get(h, "/", host="bad.test")).status == 503
    assert (await get(h, "/", host="evil.test")).status == 503


@pytest.mark.nginx
async def test_auth_service_over_https(h: Harness, world_readable_tmp: Path) -> None:
    await deploy(h, "web")
    cert_pem, key_pem = self_signed_certificate("auth.test")
    cert_file, key_file = world_readable_tmp / "auth.crt", world_readable_tmp / "auth.key"
    cert_file.write_text(cert_pem)
    key_file.write_text(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    a = AuthService(pod_addresses(1)[0], free_port(), ssl_context=context)
    await a.start()
    try:
        h.write(
            "ing.yaml",
            protected(
                "app",
                "app.test",
                "web",
                **{
                    "auth-url": f"{a.base}/oauth2/auth",
                    "auth-response-headers": "X-Auth-Request-User",
                    "auth-method": "POST",
                    "auth-request-redirect": "https://app.test/landing",
                },
            ),
        )
        await h.eventually(lambda: _expect_status(h, "/", "app.test", 401))
        resp = await get(h, "/x?y=1", host="app.test", cookie=a.login("carol"))
        assert (resp.status, resp.json()["headers"]["X-Auth-Request-User"]) == (200, "carol")
        assert a.base.startswith("https://")
        # auth-method and auth-request-redirect, with the headers auth-method adds
        _, sent = a.checks[-1]
        assert a.methods[-1] == "POST" and sent["X-Original-URI"] == "/x?y=1"
        assert sent["X-Auth-Request-Redirect"] == "https://app.test/landing"
    finally:
        await a.stop()


@pytest.mark.nginx
async def test_global_auth_protects_every_ingress_except_those_opting_out(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    h.write(
        "cm.yaml",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ingressd-controller", "namespace": "ingressd"},
            "data": {
                "global-auth-url": f"{a.base}/oauth2/auth",
                "global-auth-signin": f"{a.base}/oauth2/start",
                "global-auth-response-headers": "X-Auth-Request-User",
            },
        },
    )
    h.write(
        "ing.yaml",
        protected("app", "app.test", "web"),
        protected("public", "public.test", "web", **{"enable-global-auth": "false"}),
    )
    resp = await h.eventually(lambda: _expect_status(h, "/a", "app.test", 302))
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["rd"] == ["http://app.test/a"]
    resp = await get(h, "/a", host="app.test", cookie=a.login("dave"))
    assert resp.json()["headers"]["X-Auth-Request-User"] == "dave"
    before = len(a.checks)
    await expect(h, "/", host="public.test", service="web")
    assert len(a.checks) == before
    # ACME HTTP-01 challenges stay reachable without a session (no-auth-locations)
    resp = await get(h, "/.well-known/acme-challenge/token", host="app.test")
    assert (resp.status, resp.pod) == (200, "web-0")
    assert (await get(h, "/.well-known/acme-challengeX", host="app.test")).status == 302
    # an invalid global-auth-url fails closed for the Ingresses it would protect
    h.write(
        "cm.yaml",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ingressd-controller", "namespace": "ingressd"},
            "data": {"global-auth-url": "http://$host/oauth2/auth"},
        },
    )
    await h.eventually(lambda: _expect_status(h, "/", "app.test", 503))
    await expect(h, "/", host="public.test", service="web")


@pytest.mark.nginx
async def test_auth_cache_key_asks_the_auth_service_once(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    h.write(
        "ing.yaml",
        protected(
            "app",
            "app.test",
            "web",
            **{
                "auth-url": f"{a.base}/oauth2/auth",
                "auth-cache-key": "$cookie__oauth2_proxy",
                "auth-cache-duration": "200 202 1m",
                "auth-response-headers": "X-Auth-Request-User",
            },
        ),
    )
    await h.eventually(lambda: _expect_status(h, "/", "app.test", 401))
    cookie = a.login("erin")
    before = len(a.checks)
    for _ in range(5):
        resp = await get(h, "/", host="app.test", cookie=cookie)
        assert (resp.status, resp.json()["headers"]["X-Auth-Request-User"]) == (200, "erin")
    assert len(a.checks) == before + 1
    # another session is another key: asked again
    other = a.login("frank")
    resp = await get(h, "/", host="app.test", cookie=other)
    assert resp.json()["headers"]["X-Auth-Request-User"] == "frank"
    assert len(a.checks) == before + 2


@pytest.mark.nginx
async def test_no_auth_locations_exempt_acme_challenges_from_auth_url(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    h.write(
        "ing.yaml",
        protected("app", "app.test", "web", **{"auth-url": f"{a.base}/oauth2/auth"}),
    )
    await h.eventually(lambda: _expect_status(h, "/", "app.test", 401))
    before = len(a.checks)
    resp = await get(h, "/.well-known/acme-challenge/token", host="app.test")
    assert (resp.status, resp.pod) == (200, "web-0")
    assert len(a.checks) == before
    assert (await get(h, "/.well-known/acme-challenge-not", host="app.test")).status == 401


def config_map(name: str, data: dict[str, str], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


@pytest.mark.nginx
async def test_auth_proxy_set_headers_reach_the_auth_service_and_bad_ones_fail_closed(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    url = f"{a.base}/oauth2/auth"
    h.write(
        "cm.yaml",
        config_map("auth-headers", {"X-Tenant": "blue", "X-Start": "t=${msec}"}),
        # CVE-2025-15566: a value that would end the directive and add its own
        config_map("evil-headers", {"X-A": 'x"; return 200 "owned'}),
    )
    h.write(
        "ing.yaml",
        protected(
            "app", "app.test", "web", **{"auth-url": url, "auth-proxy-set-headers": "auth-headers"}
        ),
        protected(
            "evil",
            "evil.test",
            "web",
            **{"auth-url": url, "auth-proxy-set-headers": "evil-headers"},
        ),
        protected(
            "none", "none.test", "web", **{"auth-url": url, "auth-proxy-set-headers": "missing"}
        ),
        protected(
            "other",
            "other.test",
            "web",
            **{"auth-url": url, "auth-proxy-set-headers": "kube-system/x"},
        ),
    )
    await h.eventually(lambda: _expect_status(h, "/", "app.test", 401))
    _, sent = a.checks[-1]
    assert sent["X-Tenant"] == "blue" and sent["X-Start"].startswith("t=1")
    for host in ("evil.test", "none.test", "other.test"):
        resp = await get(h, "/", host=host)
        assert (resp.status, resp.pod) == (503, None), host
    # A change of the ConfigMap reaches the subrequest.
    h.write("cm.yaml", config_map("auth-headers", {"X-Tenant": "green"}))

    async def green() -> None:
        await _expect_status(h, "/", "app.test", 401)
        assert a.checks[-1][1].get("X-Tenant") == "green"

    await h.eventually(green)


@pytest.mark.nginx
async def test_auth_keepalive_reuses_connections_to_the_auth_service(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    common = {
        "auth-url": f"{a.base}/oauth2/auth",
        "auth-signin": f"{a.base}/oauth2/start",
        "auth-response-headers": "X-Auth-Request-User",
    }
    h.write(
        "ing.yaml",
        protected("kept", "kept.test", "web", **common, **{"auth-keepalive": "4"}),
        protected("fresh", "fresh.test", "web", **common),
    )
    resp = await h.eventually(lambda: _expect_status(h, "/x", "kept.test", 302))
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["rd"] == ["http://kept.test/x"]
    cookie = a.login("gina")
    for host in ("kept.test", "fresh.test"):
        start = len(a.peers)
        for _ in range(6):
            resp = await get(h, "/", host=host, cookie=cookie)
            assert (resp.status, resp.json()["headers"]["X-Auth-Request-User"]) == (200, "gina")
        connections = len(set(a.peers[start:]))
        if host == "kept.test":
            assert connections <= 2, connections  # at most one per nginx worker
        else:
            assert connections == 6, connections
    # an HTTP/2 client goes the same way (curl speaks it; ingress-nginx turns keepalive off)
    start = len(a.checks)
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-sk",
        "--http2",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{http_code}",
        "--resolve",
        f"kept.test:{h.https_port}:127.0.0.1",
        "-H",
        f"Cookie: {COOKIE}={cookie}",
        f"https://kept.test:{h.https_port}/",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await curl.communicate()
    assert (out.decode(), len(a.checks)) == ("2 200", start + 1)
    a.fail_with = 502
    assert (await get(h, "/", host="kept.test", cookie=cookie)).status == 500
    a.fail_with = None
    # no-auth-locations hold with keepalive too
    before = len(a.checks)
    resp = await get(h, "/.well-known/acme-challenge/t", host="kept.test")
    assert (resp.status, len(a.checks)) == (200, before)


@pytest.mark.nginx
@pytest.mark.routing("lua")  # counts the reloads of settings classes
async def test_lua_routing_a_new_auth_setting_reloads_once_and_a_known_one_does_not(
    h: Harness, auth_service: AuthService
) -> None:
    await deploy(h, "web")
    a = auth_service
    auth = {"auth-url": f"{a.base}/oauth2/auth"}
    h.write("one.yaml", protected("one", "one.test", "web", **auth))
    await h.eventually(lambda: _expect_status(h, "/", "one.test", 401))
    await h.settled()
    reloads = h.reloads
    # the same setting on another Ingress: a route-table change only
    h.write("two.yaml", protected("two", "two.test", "web", **auth))
    await h.eventually(lambda: _expect_status(h, "/", "two.test", 401))
    await h.settled()
    assert h.reloads == reloads
    # a new auth-url value: a new class and one reload
    other = {"auth-url": f"{a.base}/oauth2/auth?tenant=3"}
    h.write("three.yaml", protected("three", "three.test", "web", **other))
    await h.eventually(lambda: _expect_status(h, "/", "three.test", 401))
    assert a.checks[-1][0] == "/oauth2/auth?tenant=3"
    await h.settled()
    assert h.reloads == reloads + 1


@pytest.mark.parametrize("routing", ["lua", "nginx"])
def test_auth_signin_redirect_param_names_the_original_url_parameter(routing: str) -> None:
    from tests.test_annotations import ann, build, one

    for bad in ("a&b", "a b", "$x", "rd;"):
        with pytest.raises(InvalidValue):
            extauth.redirect_param(bad)
    auth = ann(
        auth_url="http://auth.test/check",
        auth_signin="http://auth.test/start",
        auth_signin_redirect_param="return_to",
    )
    result = build(one("app", auth))
    assert result.problems == ()
    text = render(
        result.configuration,
        settings=RenderSettings(routing=routing),
        paths=NginxPaths(Path("/var/lib/ingressd")),
        generation=1,
    )
    assert "/start?return_to=$scheme://$http_host$escaped_request_uri" in text
    assert "?rd=" not in text
