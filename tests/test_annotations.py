"""Annotations without nginx: the table, the value grammars, hostile values, and what building
and diffing make of them."""

from __future__ import annotations

import base64
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import pytest

from ingressd.annotations import (
    ANNOTATIONS,
    AnnotationOptions,
    Status,
    Support,
    extauth,
    headers,
    modsecurity,
    parse_annotations,
)
from ingressd.annotations import patterns as rx
from ingressd.annotations import urls as u
from ingressd.annotations import values as v
from ingressd.annotations import variables as var
from ingressd.build.building import BuildOptions, BuildResult, build_configuration
from ingressd.model import BackendName, Configuration, Location, PathType
from ingressd.model.policy import AffinityMode, LoadBalance, TrafficShaping
from ingressd.model.settings import BackendProtocol
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.diffing import Action, decide
from ingressd.store.snapshot import KubeObject
from tests.support import objects as o

P = "nginx.ingress.kubernetes.io/"


def ann(**kw: str) -> dict[str, str]:
    """Prefixed annotations from keyword arguments (``_`` for ``-``)."""
    return {P + k.replace("_", "-"): value for k, value in kw.items()}


def web() -> list[KubeObject]:
    return [
        o.service("web"),
        o.endpoint_slice("web", endpoints=["10.0.0.1", "10.0.0.2"]),
        o.service("v2"),
        o.endpoint_slice("v2", endpoints=["10.0.1.1"]),
    ]


def build(*objects: KubeObject, options: BuildOptions | None = None) -> BuildResult:
    return build_configuration(o.snapshot(*web(), *objects), options or BuildOptions())


def one(
    name: str,
    annotations: dict[str, str],
    host: str = "a.test",
    svc: str = "web",
    path: str = "/",
    **kw: Any,
) -> KubeObject:
    return o.ingress(
        name,
        rules=[o.rule(host, o.path(path, svc, 80, kw.pop("path_type", "Prefix")))],
        annotations=annotations,
        **kw,
    )


def location(result: BuildResult, host: str = "a.test", path: str = "/") -> Location:
    for server in result.configuration.servers:
        if server.hostname == host:
            for loc in server.locations:
                if loc.path == path:
                    return loc
    raise AssertionError(f"no location {host}{path}")


def problem_fields(result: BuildResult) -> list[str]:
    return [p.field for p in result.problems]


def conf(config: Configuration) -> str:
    """nginx.conf with ``--routing nginx``, where each path's directives sit in its location."""
    return render(
        config,
        settings=RenderSettings(routing="nginx"),
        paths=NginxPaths(Path("/var/lib/ingressd")),
        generation=1,
    )


# --- the table -------------------------------------------------------------------------------

ISSUE_ANNOTATIONS = """
rewrite-target use-regex app-root permanent-redirect temporal-redirect temporal-redirect-code
server-alias default-backend custom-http-errors upstream-vhost x-forwarded-prefix ssl-redirect
force-ssl-redirect backend-protocol proxy-ssl-verify proxy-ssl-secret proxy-body-size
proxy-connect-timeout proxy-read-timeout proxy-send-timeout proxy-buffering proxy-buffer-size
proxy-next-upstream proxy-next-upstream-tries whitelist-source-range allowlist-source-range
denylist-source-range limit-rps limit-rpm limit-connections auth-type auth-secret auth-realm
enable-cors cors-allow-origin cors-allow-methods cors-allow-headers cors-allow-credentials
cors-max-age load-balance upstream-hash-by affinity session-cookie-name session-cookie-path
session-cookie-max-age session-cookie-expires session-cookie-samesite affinity-mode canary
canary-weight canary-weight-total canary-by-header canary-by-header-value
canary-by-header-pattern canary-by-cookie configuration-snippet server-snippet
""".split()


def test_every_annotation_of_the_issue_is_in_the_table_with_a_parser() -> None:
    for name in ISSUE_ANNOTATIONS:
        spec = ANNOTATIONS[name]
        assert spec.support is not Support.UNSUPPORTED, name
        assert spec.parser is not None, name


def test_the_table_says_how_every_annotation_differs() -> None:
    assert len(ANNOTATIONS) > 140
    for spec in ANNOTATIONS.values():
        assert (spec.parser is None) == (spec.support is Support.UNSUPPORTED), spec.name
        if spec.support is Support.DIFFERENT:
            assert spec.difference, spec.name


# --- value grammars --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parser", "text", "expected"),
    [
        (v.size, "8m", "8m"),
        (v.size, " 512K ", "512k"),
        (v.size, "0", "0"),
        (v.seconds, "30", "30s"),
        (v.seconds, "500ms", "500ms"),
        (v.boolean, "True", True),
        (v.boolean, "0", False),
        (v.on_off, "off", False),
        (v.cidr_list, "10.0.0.0/8, 1.2.3.4,::1", ("10.0.0.0/8", "1.2.3.4/32", "::1/128")),
        (v.cidr_list, "10.1.2.3/8", ("10.0.0.0/8",)),
        (
            u.redirect_url,
            "https://Example.com:8443/a/b?c=d&e=%20",
            "https://example.com:8443/a/b?c=d&e=%20",
        ),
        (u.redirect_url, "http://[::1]", "http://[::1]/"),
        (rx.rewrite_target, "/$2", "/$2"),
        (rx.rewrite_target, "/app/$1?x=y", "/app/$1?x=y"),
        (rx.regex_path, "/something(/|$)(.*)", "/something(/|$)(.*)"),
        (rx.regex_path, "/api/v[0-9]+/(.*)", "/api/v[0-9]+/(.*)"),
        (rx.hash_key, "$request_uri", "$request_uri"),
        (rx.hash_key, "${http_x_user}-a", "${http_x_user}-a"),
        (rx.hash_key, "${host}X", "${host}X"),
        (v.host_list, "a.com, *.b.com", ("a.com", "*.b.com")),
        (v.http_codes, "503,404, 404", (404, 503)),
        (v.next_upstream, "error timeout http_502", ("error", "timeout", "http_502")),
        (
            u.cors_origins,
            "https://a.com, http://*.b.com:81",
            ("https://a.com", "http://*.b.com:81"),
        ),
        (u.upstream_vhost, "Svc.NS.svc:8080", "svc.ns.svc:8080"),
        (v.auth_secret_ref, "ns/name", ("ns", "name")),
        (v.auth_secret_ref, "name", (None, "name")),
        (v.realm, "Authentication Required - foo", "Authentication Required - foo"),
    ],
)
def test_valid_values_are_normalized(parser: Any, text: str, expected: object) -> None:
    assert parser(text) == expected


@pytest.mark.parametrize(
    ("parser", "text", "reason"),
    [
        (v.size, "8 m", "size"),
        (v.size, "1t", "size"),
        (v.size, "-1", "size"),
        (v.seconds, "1d", "seconds"),
        (v.boolean, "yes", "true or false"),
        (v.cidr_list, "10.0.0.0/33", "not an IP"),
        (v.cidr_list, "10.0.0.0/8,,", "empty item"),
        (u.redirect_url, "/relative", "absolute"),
        (u.redirect_url, "javascript:alert(1)", "absolute"),
        (u.redirect_url, "https://user@host/", "user information"),
        (u.redirect_url, "https://a.com/$host", "'$'"),
        (u.redirect_url, "https://a b/", "spaces"),
        (rx.rewrite_target, "/$host", "capture"),
        (rx.rewrite_target, "relative", "starting with '/'"),
        (rx.regex_path, "/a$host", "'$'"),
        (rx.regex_path, "/a(", "not a regular expression nginx can run"),
        (rx.regex_path, "/a\\\\b", "backslash before '\\\\'"),
        (rx.regex_path, "/a{2}", "'{'"),
        (rx.regex_path, "/a\\", "end with a backslash"),
        (rx.regex_path, "a/b", "start with '/'"),
        (rx.hash_key, "static-text", "nginx variables"),
        (rx.hash_key, "$a;b", "nginx variables"),
        (rx.hash_key, "$hostX", "nginx variables"),  # Lua would hash the variable hostX
        (v.host_list, "a..com", "empty label"),
        (v.http_codes, "200", "between 300 and 599"),
        (v.next_upstream, "error off", "alone"),
        (v.next_upstream, "error bogus", "bogus"),
        (u.cors_origins, "ftp://a.com", "http(s)"),
        (u.upstream_vhost, "$host", "variables"),
        (v.auth_secret_ref, "a/b/c", "namespace"),
        (v.realm, "a\\b", "'\\\\'"),
        (v.integer(1, 5), "6", "between 1 and 5"),
        (v.integer(1, 5), "1.5", "integer"),
        (rx.regex_path, "/(a+)+$", "ReDoS"),
        (rx.regex_path, "/((ab)+c)*", "ReDoS"),
        (v.buffer_size, "1G", "nginx takes no g"),
        (v.buffer_size, "1025m", "at most 1024m"),
        (v.size, "999999999999g", "at most"),
        (v.ciphers, "NOTACIPHER", "selects no cipher"),
    ],
)
def test_invalid_values_say_why(parser: Any, text: str, reason: str) -> None:
    with pytest.raises(v.InvalidValue, match=None) as exc:
        parser(text)
    assert reason in str(exc.value)


# --- hostile values --------------------------------------------------------------------------

HOSTILE = [
    'x"; return 200 "pwned',
    "1; include /etc/passwd",
    "x} server { listen 9999",
    "x\n    return 200 pwned;",
    "$remote_addr",
    "/${host}",
    "8m # pwned",
    "'pwned'",
    "on\\",
]
#: (annotation, value) pairs that are valid: hash keys are nginx variables read by Lua only;
#: auth cache keys are allow-listed variables (and without auth-url have no effect).
LEGITIMATE = {
    ("upstream-hash-by", "$remote_addr"),
    ("upstream-hash-by", "/${host}"),
    ("auth-cache-key", "$remote_addr"),
}


@functools.cache
def _baseline(denied: bool) -> str:
    annotations = ann(whitelist_source_range="not-a-cidr") if denied else {}
    result = build(one("hostile", annotations))
    return conf(result.configuration)


@pytest.mark.parametrize("name", sorted(ANNOTATIONS))
def test_hostile_values_are_rejected_naming_the_annotation_and_leave_nginx_conf_alone(
    name: str,
) -> None:
    spec = ANNOTATIONS[name]
    for value in HOSTILE:
        result = build(one("hostile", {P + name: value}))
        text = conf(result.configuration)
        where = f"{name}={value!r}"
        if (name, value) not in LEGITIMATE:
            assert f"metadata.annotations[{P}{name}]" in problem_fields(result), where
            assert all(p.key == "default/hostile" for p in result.problems), where
        assert "pwned" not in text and "/etc/passwd" not in text and "9999" not in text, where
        assert text == _baseline(spec.fail_closed and (name, value) not in LEGITIMATE), where


def test_a_denied_location_is_what_the_hostile_baseline_compares_with() -> None:
    denied = build(one("hostile", ann(whitelist_source_range="not-a-cidr")))
    assert location(denied).settings.denied is not None
    assert _baseline(True) != _baseline(False)
    assert "return 503;" in _baseline(True)


# --- parsing ---------------------------------------------------------------------------------


def test_annotations_without_effect_are_reported_ignored() -> None:
    parsed = parse_annotations(
        "ns/x",
        ann(
            cors_max_age="5",
            session_cookie_name="s",
            canary_weight="5",
            auth_realm="r",
            permanent_redirect_code="308",
            limit_burst_multiplier="2",
        ),
        AnnotationOptions(),
    )
    assert {r.key: r.status for r in parsed.report} == {
        P + n: Status.IGNORED
        for n in (
            "cors-max-age",
            "session-cookie-name",
            "canary-weight",
            "auth-realm",
            "permanent-redirect-code",
            "limit-burst-multiplier",
        )
    }
    assert parsed.settings.cors is None and parsed.policy.affinity is None


def test_report_distinguishes_unknown_unsupported_different_and_not_allowed() -> None:
    parsed = parse_annotations(
        "ns/x",
        {
            P + "proxy-body-sise": "1m",
            P + "global-rate-limit": "10",
            P + "ssl-passthrough": "true",
            P + "use-regex": "true",
            P + "server-snippet": "return 200;",
            P + "proxy-body-size": "1m",
            "other.io/thing": "x",
        },
        AnnotationOptions(),
    )
    statuses = {r.key: r.status for r in parsed.report}
    assert statuses == {
        P + "proxy-body-sise": Status.UNKNOWN,
        P + "global-rate-limit": Status.UNSUPPORTED,
        P + "ssl-passthrough": Status.DIFFERENT,
        P + "use-regex": Status.DIFFERENT,
        P + "server-snippet": Status.NOT_ALLOWED,
        P + "proxy-body-size": Status.SUPPORTED,
    }
    assert parsed.server_snippet is None


def test_unusable_authentication_denies_rather_than_serves_open() -> None:
    parsed = parse_annotations("ns/x", ann(auth_url="http://$host/auth"), AnnotationOptions())
    assert parsed.settings.denied is not None and "auth-url" in parsed.settings.denied


def test_precedence_between_related_annotations() -> None:
    parsed = parse_annotations(
        "ns/x",
        ann(
            temporal_redirect="https://t.com/",
            permanent_redirect="https://p.com/",
            affinity="cookie",
            upstream_hash_by="$uri",
            load_balance="ewma",
        ),
        AnnotationOptions(),
    )
    assert parsed.settings.redirect is not None
    assert (parsed.settings.redirect.code, parsed.settings.redirect.url) == (302, "https://t.com/")
    assert parsed.policy.affinity is not None and parsed.policy.hash_by == ""
    ignored = {r.key for r in parsed.report if r.status is Status.IGNORED}
    assert ignored == {P + "permanent-redirect", P + "upstream-hash-by", P + "load-balance"}


def test_canary_weight_above_the_total_is_invalid() -> None:
    parsed = parse_annotations("ns/x", ann(canary="true", canary_weight="150"), AnnotationOptions())
    assert parsed.canary == TrafficShaping(weight=0, weight_total=100)
    assert [r.status for r in parsed.report if r.key == P + "canary-weight"] == [Status.INVALID]


# --- building --------------------------------------------------------------------------------


def test_settings_go_to_every_location_of_their_ingress_and_nowhere_else() -> None:
    tuned = o.ingress(
        "tuned",
        rules=[o.rule("a.test", o.path("/a", "web"), o.path("/b", "v2"))],
        annotations=ann(proxy_body_size="8m", proxy_read_timeout="120"),
    )
    plain = one("plain", {}, path="/c")
    result = build(tuned, plain)
    for p in ("/a", "/b"):
        settings = location(result, path=p).settings
        assert (settings.body_size, settings.read_timeout) == ("8m", "120s")
    assert location(result, path="/c").settings.body_size is None
    assert result.problems == ()


def test_the_annotations_prefix_is_configurable() -> None:
    ingress = one("x", {"example.com/proxy-body-size": "8m", P + "proxy-read-timeout": "9"})
    result = build(ingress, options=BuildOptions(annotations_prefix="example.com"))
    assert location(result).settings.body_size == "8m"
    assert location(result).settings.read_timeout is None
    assert build(ingress).configuration != result.configuration


def test_an_invalid_value_is_left_out_and_the_rest_of_the_ingress_applies() -> None:
    result = build(one("x", ann(proxy_body_size="huge", proxy_read_timeout="9")))
    assert location(result).settings.body_size is None
    assert location(result).settings.read_timeout == "9s"
    [problem] = result.problems
    field = f"metadata.annotations[{P}proxy-body-size]"
    assert (problem.key, problem.field) == ("default/x", field)
    assert "must be a size" in problem.reason


@pytest.mark.parametrize(
    "annotations",
    [
        ann(whitelist_source_range="10.0.0.0/8,nope"),
        ann(denylist_source_range="1.2.3"),
        ann(auth_type="basic"),
        ann(auth_type="digest", auth_secret="s"),
        ann(auth_type="basic", auth_secret="missing"),
        ann(auth_type="basic", auth_secret="other/users"),
        ann(proxy_ssl_verify="on"),
        ann(auth_tls_secret="ns/ca"),
    ],
)
def test_security_annotations_that_cannot_apply_deny_the_location(
    annotations: dict[str, str],
) -> None:
    users = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "users", "namespace": "other"},
        "data": {"auth": base64.b64encode(b"a:{PLAIN}b\n").decode()},
    }
    result = build(one("x", annotations), users)
    assert location(result).settings.denied is not None
    assert result.problems
    assert "return 503;" in conf(result.configuration)


def test_basic_auth_reads_htpasswd_from_the_secret() -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "users", "namespace": "default"},
        "data": {"auth": base64.b64encode(b"alice:{SHA}abc=\n\nbob:$apr1$x$y\n").decode()},
    }
    result = build(one("x", ann(auth_type="basic", auth_secret="users", auth_realm="Hi")), secret)
    auth = location(result).settings.auth
    assert auth is not None and auth.realm == "Hi"
    assert auth.file.content == "alice:{SHA}abc=\nbob:$apr1$x$y\n"
    assert result.configuration.secret_files() == (auth.file,)
    broken = {**secret, "data": {"auth": base64.b64encode(b"alice nopassword\n").decode()}}
    result = build(one("x", ann(auth_type="basic", auth_secret="users")), broken)
    assert location(result).settings.denied is not None
    assert ("Secret", "default/users", "data.auth") in [
        (p.kind, p.key, p.field) for p in result.problems
    ]


def test_use_regex_makes_the_ingress_paths_regexes_checked_as_such() -> None:
    result = build(
        one(
            "re",
            ann(use_regex="true"),
            path="/api/v[0-9]+/(.*)",
            path_type="ImplementationSpecific",
        ),
        one("bad", ann(use_regex="true"), host="b.test", path="/x$host"),
        one("plain", {}, host="c.test", path="/v[0-9]"),
    )
    assert location(result, path="/api/v[0-9]+/(.*)").path_type is PathType.REGEX
    assert "spec.rules[0].http.paths[0].path" in problem_fields(result)
    text = conf(result.configuration)
    assert 'location ~* "^/api/v[0-9]+/(.*)" {' in text
    assert "$host" not in text.split("server b.test")[1].split("server c.test")[0]


@pytest.mark.parametrize(
    "pattern",
    ["/a/[[:foo:]]", "/x\\U0041", "/(?a:x)"],
)
def test_a_regex_python_accepts_but_pcre_refuses_is_a_problem_not_an_nginx_t_failure(
    pattern: str,
) -> None:
    result = build(
        one("bad", ann(use_regex="true"), host="b.test", path=pattern),
        one("good", {}, host="g.test", path="/"),
    )
    reasons = [p.reason for p in result.problems if p.field == "spec.rules[0].http.paths[0].path"]
    assert any("PCRE" in r for r in reasons), result.problems
    assert pattern not in conf(result.configuration)


def test_annotations_over_the_api_server_limit_refuse_the_ingress_not_the_others() -> None:
    huge = {"example.com/blob": "x" * (256 * 1024)}  # a file or a trace may hold what the API
    result = build(one("big", huge, host="big.test"), one("ok", {}, host="ok.test"))
    assert ("Ingress", "default/big", "metadata.annotations") in [
        (p.kind, p.key, p.field) for p in result.problems
    ]
    hosts = {s.hostname for s in result.configuration.servers}
    assert "ok.test" in hosts and "big.test" not in hosts


def test_limit_connections_stops_at_nginx_s_maximum() -> None:
    parsed = parse_annotations("default/x", {P + "limit-connections": "65536"}, AnnotationOptions())
    (report,) = parsed.report
    assert report.status is Status.INVALID and "65535" in report.detail


def test_server_alias_never_takes_another_server_s_host() -> None:
    result = build(one("a", ann(server_alias="b.test, c.test")), one("b", {}, host="b.test"))
    [server] = [s for s in result.configuration.servers if s.hostname == "a.test"]
    assert server.aliases == ("c.test",)
    assert [p.reason for p in result.problems] == [
        "alias b.test is the host of another server; ignored"
    ]


def test_balancing_annotations_go_to_the_backend_and_the_oldest_ingress_wins() -> None:
    first = one("first", ann(load_balance="ewma"), created="2024-01-01T00:00:00Z")
    second = one("second", ann(affinity="cookie"), host="b.test", created="2024-02-01T00:00:00Z")
    result = build(first, second)
    [backend] = [b for b in result.configuration.backends if b.name == "default-web-80"]
    assert backend.policy.load_balance is LoadBalance.EWMA and backend.policy.affinity is None
    assert ["default/second"] == [p.key for p in result.problems]
    result = build(one("s", ann(affinity="cookie", affinity_mode="persistent"), path="/shop"))
    affinity = result.configuration.backends[0].policy.affinity
    assert affinity is not None
    assert (affinity.mode, affinity.path, affinity.name) == (
        AffinityMode.PERSISTENT,
        "/shop",
        "INGRESSCOOKIE",
    )
    lua = result.configuration.backends[0].to_lua()
    assert lua["sessionAffinityConfig"]["cookieSessionAffinity"]["path"] == "/shop"
    assert set(lua) >= {
        "load-balance",
        "upstreamHashByConfig",
        "sessionAffinityConfig",
        "trafficShapingPolicy",
        "alternativeBackends",
    }


def canary(weight: str = "20", **extra: str) -> KubeObject:
    return one(
        "app-canary",
        ann(canary="true", canary_weight=weight, **extra),
        svc="v2",
        created="2024-03-01T00:00:00Z",
    )


def test_a_canary_becomes_an_alternative_backend_of_the_same_host_and_path() -> None:
    result = build(one("app", {}), canary(canary_by_header="X-Canary", proxy_body_size="9m"))
    assert [(p.field, p.reason.split(":")[0]) for p in result.problems] == [
        (f"metadata.annotations[{P}proxy-body-size]", "ignored")
    ]
    backends = result.configuration.backend_map()
    main, alt = (
        backends[BackendName("default-web-80")],
        backends[BackendName("canary-app-canary-default-v2-80")],
    )
    assert main.policy.alternatives == (alt.name,)
    assert alt.policy.traffic_shaping == TrafficShaping(weight=20, header="X-Canary")
    assert alt.endpoints == backends.get(BackendName("default-v2-80"), alt).endpoints
    assert [
        loc.backend for s in result.configuration.servers for loc in s.locations if loc.backend
    ] == ["default-web-80"]
    # The canary's other annotations are the main Ingress's business.
    assert location(result).settings.body_size is None
    lua = alt.to_lua()
    assert (lua["noServer"], lua["trafficShapingPolicy"]["weight"]) == (True, 20)
    assert main.to_lua()["alternativeBackends"] == [alt.name]


def test_a_canary_without_a_main_ingress_is_a_problem_and_changes_nothing() -> None:
    result = build(canary())
    assert result.configuration.backends == ()
    assert ["spec.rules[0].http.paths[0].path"] == problem_fields(result)
    result = build(
        one("app", {}), one("app-canary", ann(canary="true"), created="2024-03-01T00:00:00Z")
    )
    assert problem_fields(result) == ["spec.rules[0].http.paths[0].backend"]


# --- diffing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "action"),
    [
        ((one("app", {}), canary("20")), (one("app", {}), canary("50")), Action.DYNAMIC),
        (
            (one("app", {}), canary("20")),
            (one("app", {}), canary("20", canary_by_cookie="c")),
            Action.DYNAMIC,
        ),
        (
            (one("app", ann(load_balance="round_robin")),),
            (one("app", ann(load_balance="ewma")),),
            Action.DYNAMIC,
        ),
        ((one("app", {}),), (one("app", ann(upstream_hash_by="$request_uri")),), Action.DYNAMIC),
        ((one("app", {}),), (one("app", ann(affinity="cookie")),), Action.DYNAMIC),
        ((one("app", {}),), (one("app", ann(proxy_body_size="2m")),), Action.RELOAD),
        ((one("app", {}),), (one("app", {}), canary("20")), Action.RELOAD),
        (
            (one("app", ann(enable_cors="true")),),
            (one("app", ann(enable_cors="false")),),
            Action.RELOAD,
        ),
    ],
)
def test_balancing_and_canary_changes_are_dynamic_the_rest_reloads(
    before: tuple[KubeObject, ...], after: tuple[KubeObject, ...], action: Action
) -> None:
    running = build(*before).configuration
    new = build(*after).configuration
    decision = decide(new, running)
    assert decision.action is action, decision.reasons
    if action is Action.DYNAMIC:
        assert decision.changed_backends
        assert conf(new) == conf(running)


def test_grpc_and_https_backends_get_their_own_upstream_blocks() -> None:
    result = build(
        one("g", ann(backend_protocol="GRPC")),
        one("s", ann(backend_protocol="HTTPS"), host="b.test"),
        one("h", {}, host="c.test"),
    )
    assert location(result).settings.backend_protocol is BackendProtocol.GRPC
    text = conf(result.configuration)
    assert "grpc_pass grpc://upstream_grpc_" in text
    assert "proxy_pass https://upstream_https_" in text
    assert text.count("balancer_by_lua_block") == 3


def test_a_default_backend_ingress_reports_its_secret_problem_once_and_keeps_its_settings() -> None:
    ingress = o.ingress(
        "d",
        rules=[o.rule("d.test")],
        default_backend=o.backend("web", 80),
        annotations=ann(auth_type="basic", auth_secret="missing"),
    )
    result = build(ingress)
    assert problem_fields(result) == [f"metadata.annotations[{P}auth-secret]"]
    assert location(result, host="d.test").settings.denied is not None
    assert location(result, host="_").settings.denied is None


# --- issue 12: migration annotations -----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["~^http://(.*)$ https://$1", "http://a b", 'http://a";', "http://a/$uri", "x{y}", ""],
)
def test_proxy_redirect_refuses_regexes_variables_spaces_and_quotes(value: str) -> None:
    with pytest.raises(v.InvalidValue):
        v.proxy_redirect_url(value)


@pytest.mark.parametrize("value", ["a.test", "a b c", "~a b", "a $host", 'a "b"', "a b;"])
def test_cookie_rewrites_take_off_or_a_plain_pair(value: str) -> None:
    with pytest.raises(v.InvalidValue):
        v.cookie_rewrite(value)


def test_proxy_redirect_and_cookie_annotations_are_written_quoted() -> None:
    result = build(
        one(
            "a",
            ann(
                proxy_redirect_from="http://internal:8080/",
                proxy_redirect_to="https://a.test/",
                proxy_cookie_domain="internal a.test",
                proxy_cookie_path="off",
            ),
        ),
        one("b", ann(proxy_redirect_from="default", proxy_redirect_to="/x"), host="b.test"),
        one("c", ann(proxy_redirect_to="/x"), host="c.test"),
    )
    assert location(result).settings.proxy_redirect == ("http://internal:8080/", "https://a.test/")
    assert location(result, "b.test").settings.proxy_redirect == ("default",)
    assert location(result, "c.test").settings.proxy_redirect == ()
    text = conf(result.configuration)
    assert 'proxy_redirect "http://internal:8080/" "https://a.test/";' in text
    assert 'proxy_cookie_domain "internal" "a.test";' in text
    assert 'proxy_cookie_path "off";' in text
    assert 'proxy_redirect "default";' in text


def test_service_upstream_needs_a_cluster_ip() -> None:
    headless = o.service("headless")
    headless["spec"]["clusterIP"] = "None"
    result = build(
        headless,
        o.endpoint_slice("headless", endpoints=["10.0.2.1"]),
        one("mesh", ann(service_upstream="true")),
        one("hl", ann(service_upstream="true"), host="b.test", svc="headless"),
    )
    loc = location(result)
    backends = result.configuration.backend_map()
    assert loc.backend == "default-web-80-cluster-ip"
    assert [(e.address, e.port) for e in backends[BackendName(loc.backend)].endpoints] == [
        ("10.96.0.10", 80)
    ]
    # a headless Service: a Problem, and its pods
    assert location(result, "b.test").backend == "default-headless-80"
    assert any("has no cluster IP (headless)" in p.reason for p in result.problems)


def test_ssl_ciphers_and_www_redirect_are_server_level() -> None:
    result = build(
        one(
            "a",
            ann(
                ssl_ciphers="ECDHE-RSA-AES256-GCM-SHA384",
                ssl_prefer_server_ciphers="false",
                from_to_www_redirect="true",
            ),
        ),
    )
    server = next(s for s in result.configuration.servers if s.hostname == "a.test")
    assert (server.ssl_ciphers, server.ssl_prefer_server_ciphers, server.www_redirect) == (
        "ECDHE-RSA-AES256-GCM-SHA384",
        False,
        "www.a.test",
    )
    text = conf(result.configuration)
    assert 'ssl_ciphers "ECDHE-RSA-AES256-GCM-SHA384";' in text
    assert "ssl_prefer_server_ciphers off;" in text
    assert 'server_name "www.a.test";' in text
    assert 'return 308 "$scheme://a.test:$server_port$request_uri";' in text
    with pytest.raises(v.InvalidValue):
        v.ciphers("NOT-A-CIPHER")


@pytest.mark.parametrize("cluster_ip", ["127.0.0.1", "::ffff:127.0.0.1", "169.254.169.254"])
def test_service_upstream_refuses_cluster_ips_an_endpoint_may_not_have(cluster_ip: str) -> None:
    inner = o.service("inner")
    inner["spec"]["clusterIP"] = cluster_ip
    result = build(
        inner,
        o.endpoint_slice("inner", endpoints=["10.0.2.1"]),
        one("in", ann(service_upstream="true"), svc="inner"),
    )
    assert location(result).backend == "default-inner-80"  # its pods, not the cluster IP
    why = (
        "may not be in the link-local range (169.254.0.0/16, fe80::/10)"
        if cluster_ip.startswith("169")
        else "may not be in the loopback range (127.0.0.0/8, ::1/128)"
    )
    assert [p.reason for p in result.problems if "cluster IP" in p.reason] == [
        f"service default/inner has a cluster IP {cluster_ip} that {why}: its pods are used"
    ]


# --- nginx variables in values: the one grammar (annotations/variables.py) -------------------

_KEYS = var.AllowList(frozenset({"host", "request_id"}), prefixes=("http_",))
_KEY = var.Grammar(_KEYS, re.compile(r"[a-z0-9.-]*"), "a test key")


def key_parts(text: str) -> tuple[tuple[str, str], ...]:
    return _KEY.parts(text)


def test_an_allow_list_takes_its_names_and_names_longer_than_a_prefix() -> None:
    assert _KEYS.allows("host") and _KEYS.allows("http_x_user") and _KEYS.allows("http_a")
    for name in ("http_", "http", "hostname", "remote_addr", "HOST", ""):
        assert not _KEYS.allows(name), name
    assert _KEYS.shown() == "$host, $request_id, $http_<name>"
    with pytest.raises(ValueError, match="not a variable name"):
        var.AllowList(frozenset({"Host"}))


def test_a_value_splits_into_text_and_variables_in_both_forms() -> None:
    assert key_parts("v1-${host}.$http_x_user$request_id") == (
        ("text", "v1-"),
        ("var", "host"),
        ("text", "."),
        ("var", "http_x_user"),
        ("var", "request_id"),
    )
    assert key_parts("") == ()
    assert key_parts("${host}x") == (("var", "host"), ("text", "x"))
    assert _KEY.checked("a.$host") == "a.$host"


@pytest.mark.parametrize("value", ["$remote_addr", "a.${request_body}", "$http_", "$hostname"])
def test_a_variable_outside_the_allow_list_is_refused_naming_it_and_the_allowed(
    value: str,
) -> None:
    name = value[value.index("$") :].strip("${}")
    with pytest.raises(v.InvalidValue) as refused:
        key_parts(value)
    assert str(refused.value) == (
        f"${name} is not allowed in a test key (allowed: $host, $request_id, $http_<name>)"
    )


@pytest.mark.parametrize(("value", "bad"), [("a;b", "';'"), ("$host b", "' '"), ("A", "'A'")])
def test_a_literal_character_outside_the_use_s_pattern_is_refused_naming_it(
    value: str, bad: str
) -> None:
    with pytest.raises(v.InvalidValue, match=f"^{bad} is not allowed in a test key$"):
        key_parts(value)
    with pytest.raises(v.InvalidValue, match=r"\(only a-z, 0-9, '.-' and variables\)$"):
        dataclasses.replace(_KEY, shown="a-z, 0-9, '.-'").parts(value)


@pytest.mark.parametrize("value", ["$", "a$", "${host", "${}", "$ host", "${HOST}", "$-", "$$host"])
def test_a_dollar_that_starts_no_variable_is_refused(value: str) -> None:
    with pytest.raises(v.InvalidValue, match=r"^'\$' must start a variable: \$name or \$\{name\}"):
        key_parts(value)
    # even where the use's text takes any printable character, '$' is the grammar's
    with pytest.raises(v.InvalidValue, match="must start a variable"):
        dataclasses.replace(_KEY, literal=re.compile(r"[\x20-\x7e]*")).parts(value)


def test_a_use_without_braces_refuses_the_braced_form() -> None:
    def unbraced(text: str) -> tuple[tuple[str, str], ...]:
        return dataclasses.replace(_KEY, braces=False).parts(text)

    assert unbraced("a.$host") == (("text", "a."), ("var", "host"))
    with pytest.raises(
        v.InvalidValue, match=r"^'\$' must start a variable: \$name, .*'\$\{host\}'"
    ):
        unbraced("${host}")
    with pytest.raises(v.InvalidValue) as refused:
        unbraced("$hostX")
    assert "${host}X" not in str(refused.value)  # no hint at a form the use refuses


def test_a_name_running_into_capitals_is_refused_as_nginx_would_read_it() -> None:
    # nginx reads "$hostX" as the variable "hostx" (unknown: nginx -t fails), "$HOST" as "host"
    with pytest.raises(v.InvalidValue, match=r"nginx would read the variable \$hostx.*\$\{host\}X"):
        key_parts("$hostX")
    with pytest.raises(v.InvalidValue, match=r"\$HOST: nginx would read the variable \$host;"):
        key_parts("$HOST")
    assert headers.header_value("${host}X").parts == (("var", "host"), ("text", "X"))
    with pytest.raises(v.InvalidValue, match="request_ida"):
        modsecurity.transaction_id("$request_idA")
    with pytest.raises(v.InvalidValue, match="http_x_usera"):
        headers.header_value("$http_x_userA")
    with pytest.raises(v.InvalidValue, match="msecz"):
        extauth.cache_key("$msecZ")
