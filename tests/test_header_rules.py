"""The safe subset of snippets and header values: what is accepted is rendered again from its
parsed form; hostile text is refused, never spliced (and what is accepted passes ``nginx -t``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ingressd.annotations import AnnotationOptions, Risk, Status, parse_annotations
from ingressd.annotations.headers import RefusedLine, header_value, parse_snippet
from ingressd.annotations.values import InvalidValue
from ingressd.build import BuildOptions, build_configuration
from ingressd.model import Location, ObjectKey, PathType
from ingressd.model.settings import BackendProtocol, LocationSettings
from ingressd.nginx.directives import LocationContext, location_lines
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.nginx.rendering import NginxPaths, RenderSettings
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.store import Store
from tests.support.fuzz import INJECTED
from tests.support.objects import endpoint_slice, ingress, ingress_class, path, rule, service
from tests.test_fuzz import unquoted

P = "nginx.ingress.kubernetes.io/"


def rendered(snippet: str) -> list[str]:
    settings = LocationSettings(header_rules=parse_snippet(snippet))
    location = Location("/", PathType.PREFIX, None, ObjectKey("default/a"), settings=settings)
    return list(location_lines(location, LocationContext()).lines)


def test_each_directive_is_rendered_again_from_its_parsed_form() -> None:
    snippet = (
        "more_set_headers   -s '404 500' -t text/html \"X-A: a $host\" 'X-B:';  # note\n"
        "more_clear_headers -s 404 X-Powered-* Server;\n"
        "more_set_input_headers -r -t 'text/plain application/json' 'X-User: ${http_x_user}';\n"
        "more_clear_input_headers X-Token;\n"
        "add_header Cache-Control 'no-store' always;\n"
        "add_header X-Plain plain;\n"
    )
    assert rendered(snippet) == [
        'more_set_headers -s "404 500" -t "text/html" "X-A: a ${host}" "X-B:";',
        'more_clear_headers -s "404" "X-Powered-*" "Server";',
        'more_set_input_headers -r -t "text/plain application/json" "X-User: ${http_x_user}";',
        'more_clear_input_headers "X-Token";',
        'add_header "Cache-Control" "no-store" always;',
        'add_header "X-Plain" "plain";',
    ]


def test_proxy_set_header_replaces_the_template_value_and_keeps_the_others() -> None:
    settings = LocationSettings(
        header_rules=parse_snippet("proxy_set_header x-forwarded-proto https;")
    )
    location = Location("/", PathType.PREFIX, None, ObjectKey("default/a"), settings=settings)
    ctx = LocationContext(
        proxy_headers=(("Host", "$best_http_host"), ("X-Forwarded-Proto", "$scheme"))
    )
    assert list(location_lines(location, ctx).lines) == [
        "proxy_set_header Host $best_http_host;",
        'proxy_set_header x-forwarded-proto "https";',
    ]


def test_grpc_locations_get_the_snippet_request_headers_as_grpc_set_header() -> None:
    settings = LocationSettings(
        backend_protocol=BackendProtocol.GRPC,
        connection_header="keep-alive",
        header_rules=parse_snippet("proxy_set_header X-Tenant t1;"),
    )
    location = Location("/", PathType.PREFIX, None, ObjectKey("default/a"), settings=settings)
    assert list(location_lines(location, LocationContext()).lines) == [
        "grpc_set_header Host $best_http_host;",
        "grpc_set_header X-Real-IP $remote_addr;",
        "grpc_set_header X-Request-ID $req_id;",
        'grpc_set_header X-Tenant "t1";',
    ]


@pytest.mark.parametrize(
    ("snippet", "line", "why"),
    [
        ("more_set_headers 'X: 1';\n} server { listen 1; ", 2, "blocks"),
        ("access_by_lua_block { ngx.exit(200) }", 1, "blocks"),
        ("content_by_lua 'ngx.say(1)';", 1, "not a header rule"),
        ("more_set_headers 'X: 1';\nset $x 1;", 2, "not a header rule"),
        ("add_header X $document_root;", 1, "$document_root is not allowed"),
        ("add_header X 'a$';", 1, "'$' must start a variable"),
        ("add_header X '${host';", 1, "'$' must start a variable"),
        ("add_header X a b c;", 1, "add_header takes Name value [always]"),
        ("proxy_set_header X a always;", 1, "proxy_set_header takes Name value"),
        ("more_set_headers 'X: a\n zqinjected on;';", 1, "unterminated string"),
        ("more_set_headers 'X: a\\'; zqinjected on;';", 1, "backslash"),
        ("more_set_headers 'X: a\r\nY: b';", 1, "unterminated string"),
        ("more_set_headers 'X: a\rY: b';", 1, "control characters"),
        ("more_set_headers 'X: é';", 1, "printable ASCII"),
        ("more_set_headers 'X 1';", 1, "is not 'Name: value'"),
        ("more_set_headers 'X$y: 1';", 1, "not a header name"),
        ("more_set_headers -s '200; zq' 'X: 1';", 1, "-s takes status codes"),
        ("more_set_headers -t 'text/$x' 'X: 1';", 1, "-t takes content types"),
        ("more_set_headers -r 'X: 1';", 1, "option '-r'"),
        ("more_set_headers # 'X: 1';\n;", 1, "a comment inside a directive"),
        ("more_clear_headers X-*-Y;", 1, "'*' only ends a name"),
        ("more_clear_headers X -s;", 1, "not a header name"),  # headers-more: an option
        ("more_set_headers 'X: 1'", 1, "without ';'"),
        ("more_set_headers 'X: 1'zq;", 1, "text right after a string"),
        ("more_set_headers;", 1, "needs at least one header"),
    ],
)
def test_hostile_snippets_are_refused_naming_the_line(snippet: str, line: int, why: str) -> None:
    with pytest.raises(RefusedLine) as refused:
        parse_snippet(snippet)
    assert refused.value.line == line
    assert why in str(refused.value)


def test_a_refused_header_snippet_keeps_the_not_allowed_behaviour_and_names_the_line() -> None:
    annotations = {P + "configuration-snippet": "add_header X 1;\nexpires 1h;"}
    report = parse_annotations("default/a", annotations, AnnotationOptions()).report[0]
    assert report.status is Status.NOT_ALLOWED
    assert "line 2 ('expires 1h;') is refused" in report.detail
    allowed = AnnotationOptions(allow_snippets=True, risk_level=Risk.CRITICAL)
    parsed = parse_annotations("default/a", annotations, allowed)
    assert parsed.settings.snippet == "add_header X 1;\nexpires 1h;"  # spliced, as opted in
    assert parsed.settings.header_rules == ()


def test_header_snippets_are_medium_risk() -> None:
    annotations = {P + "configuration-snippet": "add_header X 1;"}
    low = parse_annotations("default/a", annotations, AnnotationOptions(risk_level=Risk.LOW))
    assert low.report[0].status is Status.TOO_RISKY
    assert low.settings.header_rules == ()
    medium = parse_annotations("default/a", annotations, AnnotationOptions(risk_level=Risk.MEDIUM))
    assert medium.report[0].status is Status.SUPPORTED and medium.settings.header_rules


def test_a_too_risky_security_annotation_fails_closed() -> None:
    annotations = {P + "auth-tls-match-cn": "CN=a", P + "whitelist-source-range": "10.0.0.0/8"}
    parsed = parse_annotations("default/a", annotations, AnnotationOptions(risk_level=Risk.LOW))
    statuses = {r.key[len(P) :]: r.status for r in parsed.report}
    assert statuses["whitelist-source-range"] is Status.TOO_RISKY  # Medium
    assert parsed.settings.denied is not None and "risk level" in parsed.settings.denied


def test_header_rules_are_ignored_on_a_canary_like_its_other_location_settings() -> None:
    annotations = {
        P + "canary": "true",
        P + "configuration-snippet": "add_header X 1;",
        P + "custom-headers": "hdrs",
    }
    parsed = parse_annotations("default/a", annotations, AnnotationOptions())
    statuses = {r.key[len(P) :]: r.status for r in parsed.report}
    assert statuses["configuration-snippet"] is Status.IGNORED
    assert statuses["custom-headers"] is Status.IGNORED
    assert parsed.settings.header_rules == () and parsed.custom_headers is None


def test_custom_headers_are_limited_to_global_allowed_response_headers_when_set() -> None:
    store = Store(channel=UpdateChannel(maxsize=1 << 16))
    for obj in (
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoints=["10.0.0.1"]),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "hdrs", "namespace": "default"},
            "data": {"X-A": "a", "X-B": "b"},
        },
        ingress(
            "web",
            rules=[rule("a.test", path("/", "web"))],
            annotations={P + "custom-headers": "hdrs"},
        ),
    ):
        store.apply(WatchEvent(EventType.ADDED, obj))

    def settings(allowed: tuple[str, ...] | None) -> tuple[LocationSettings, list[str]]:
        result = build_configuration(
            store.snapshot(), BuildOptions(allowed_response_headers=allowed)
        )
        server = next(s for s in result.configuration.servers if s.hostname == "a.test")
        return server.locations[0].settings, [f"{p.key} {p.field}" for p in result.problems]

    anything, problems = settings(None)
    assert [r.names for r in anything.custom_headers] == [("X-A", "X-B")] and problems == []
    both, problems = settings(("x-a", "X-B"))
    assert both == anything and problems == []
    denied, problems = settings(("X-A",))
    assert denied.denied is not None and "X-B" in denied.denied
    assert "default/hdrs data.X-B" in problems


def test_variables_are_allow_listed() -> None:
    for ok in ("$host", "${remote_addr}x", "$http_x_user", "$cookie_s", "$request_id"):
        header_value(ok)
    for bad in ("$request_body", "$document_root", "$ssl_client_raw_cert", "$1", "$"):
        with pytest.raises(InvalidValue):
            header_value(bad)


_DIRECTIVES = (
    "more_set_headers",
    "more_clear_headers",
    "more_set_input_headers",
    "more_clear_input_headers",
    "add_header",
    "proxy_set_header",
    "lua_code_cache",
    "set",
)
_ARGS = (
    "-s",
    "-t",
    "-r",
    "always",
    "'X-A: v'",
    '"X-B: $host"',
    "'X-C: ${http_x_user} and $remote_addr'",
    "'Content-Security-Policy: default-src 'self''",
    "\"CSP: default-src 'self'; img-src *\"",
    "X-C",
    "X-D*",
    "v",
    "$scheme",
    "'404 500'",
    "text/html",
)
_HOSTILE = (
    ";",
    "{",
    "}",
    "'",
    '"',
    "\\",
    "$",
    "${",
    "#",
    "\r\n",
    "\n",
    f"{INJECTED} on;",
    f"'X: {INJECTED}; {INJECTED} on'",
    f"$host{INJECTED}",
    f"$document_root{INJECTED}",
    f"'X: a\n{INJECTED} on;'",
)


def generated_snippets(seed: int, count: int) -> list[str]:
    """Directives of the subset and others, with arguments of their grammars and hostile text
    sprinkled in."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 4)):
            words = [rng.choice(_DIRECTIVES)]
            words += [rng.choice(_ARGS) for _ in range(rng.randint(1, 4))]
            if rng.random() < 0.3:
                words.insert(rng.randint(1, len(words)), rng.choice(_HOSTILE))
            parts.append(" ".join(words) + rng.choice((";", ";", ";", "")))
        out.append(rng.choice(("\n", " ", "\n# comment\n")).join(parts))
    return out


async def test_generated_snippets_are_refused_or_rendered_safely_and_pass_nginx_t(
    world_readable_tmp: Path,
) -> None:
    accepted: list[str] = []
    for snippet in generated_snippets(7, 20000):
        try:
            lines = rendered(snippet)
        except InvalidValue:
            continue
        accepted.append(snippet)
        text = "\n".join(lines)
        assert unquoted(text, INJECTED) is None, (snippet, text)
        assert unquoted(text, "{") is None and unquoted(text, "}") is None, (snippet, text)
        assert all(line.endswith(";") and unquoted(line, ";") == len(line) - 1 for line in lines)
    assert len(accepted) > 50  # the generator does reach the subset
    store = Store(channel=UpdateChannel(maxsize=1 << 16))
    objects = [ingress_class(), service("web"), endpoint_slice("web", endpoints=["10.0.0.1"])]
    for i, snippet in enumerate(accepted[:300]):
        objects.append(
            ingress(
                f"s{i}",
                rules=[rule(f"s{i}.test", path("/", "web"))],
                annotations={P + "configuration-snippet": snippet},
            )
        )
    for obj in objects:
        store.apply(WatchEvent(EventType.ADDED, obj))
    result = build_configuration(store.snapshot(), BuildOptions())
    assert not [p for p in result.problems if "configuration-snippet" in p.field]
    settings = RenderSettings(http_port=18080, https_port=18443)
    driver = DryRunNginx(settings=settings, paths=NginxPaths(world_readable_tmp / "work"))
    await driver.start()
    await driver.apply_reload(result.configuration, settings)  # raises ConfigTestError
