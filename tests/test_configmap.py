"""The controller's ConfigMap: parsing and validation (pure), then what nginx does with it."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from ingressd.annotations import Risk
from ingressd.build.building import BuildOptions
from ingressd.model import Configuration, ObjectKey
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.configmap import GlobalOptions, parse_configmap, settings_changes
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, running_harness
from tests.support.objects import (
    ingress,
    path,
    rule,
    self_signed_certificate,
    tls,
    tls_secret,
)

CONFIGMAP = ObjectKey("ingressd/ingressd-controller")


def config_map(data: Mapping[str, Any] | None, name: str = "ingressd-controller") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "ingressd", "resourceVersion": "1"},
    }
    if data is not None:
        obj["data"] = dict(data)
    return obj


def parse(**data: Any) -> tuple[GlobalOptions, list[str]]:
    options, problems = parse_configmap(config_map(data))
    return options, [f"{p.field}: {p.reason}" for p in problems]


# --- parsing -------------------------------------------------------------------------------


def test_no_configmap_or_no_data_gives_ingress_nginx_defaults() -> None:
    defaults = GlobalOptions(
        worker_processes=None,
        proxy_body_size="1m",
        proxy_connect_timeout="5s",
        proxy_read_timeout="60s",
        proxy_send_timeout="60s",
        ssl_redirect=True,
        hsts=True,
        hsts_max_age=31536000,
        hsts_include_subdomains=True,
        hsts_preload=False,
        use_forwarded_headers=False,
        forwarded_for_header="X-Forwarded-For",
        proxy_real_ip_cidr=("0.0.0.0/0",),
        upstream_keepalive_connections=320,
        worker_shutdown_timeout="240s",
        log_format_upstream=None,
    )
    assert parse_configmap(None) == (defaults, ())
    assert parse_configmap(config_map(None)) == (defaults, ())
    assert parse_configmap(config_map({})) == (defaults, ())


@pytest.mark.parametrize(
    ("key", "value", "field", "expected"),
    [
        ("worker-processes", "auto", "worker_processes", "auto"),
        ("worker-processes", "4", "worker_processes", "4"),
        ("proxy-body-size", "8m", "proxy_body_size", "8m"),
        ("proxy-body-size", "512k", "proxy_body_size", "512k"),
        ("proxy-body-size", "0", "proxy_body_size", "0"),
        ("proxy-body-size", "2G", "proxy_body_size", "2G"),
        ("proxy-connect-timeout", "10", "proxy_connect_timeout", "10s"),
        ("proxy-read-timeout", "3600", "proxy_read_timeout", "3600s"),
        ("proxy-send-timeout", "1m30s", "proxy_send_timeout", "1m30s"),
        ("proxy-connect-timeout", "500ms", "proxy_connect_timeout", "500ms"),
        ("worker-shutdown-timeout", "10s", "worker_shutdown_timeout", "10s"),
        ("worker-shutdown-timeout", "300", "worker_shutdown_timeout", "300s"),
        ("ssl-redirect", "false", "ssl_redirect", False),
        ("ssl-redirect", "True", "ssl_redirect", True),
        ("hsts", "0", "hsts", False),
        ("hsts-max-age", "600", "hsts_max_age", 600),
        ("hsts-include-subdomains", "false", "hsts_include_subdomains", False),
        ("hsts-preload", "true", "hsts_preload", True),
        ("use-forwarded-headers", "true", "use_forwarded_headers", True),
        ("forwarded-for-header", "X-Client-IP", "forwarded_for_header", "X-Client-IP"),
        (
            "proxy-real-ip-cidr",
            "10.0.0.0/8, 192.168.1.7,fd00::/8",
            "proxy_real_ip_cidr",
            ("10.0.0.0/8", "192.168.1.7/32", "fd00::/8"),
        ),
        ("proxy-real-ip-cidr", "10.1.2.3/8", "proxy_real_ip_cidr", ("10.0.0.0/8",)),
        ("upstream-keepalive-connections", "0", "upstream_keepalive_connections", 0),
        ("upstream-keepalive-connections", "64", "upstream_keepalive_connections", 64),
        ("proxy-body-size", " 2m ", "proxy_body_size", "2m"),
        (
            "log-format-upstream",
            "$remote_addr [$time_local] $status $http_x_request_id [$proxy_upstream_name]",
            "log_format_upstream",
            "$remote_addr [$time_local] $status $http_x_request_id [$proxy_upstream_name]",
        ),
    ],
)
def test_valid_values_are_taken_normalized(key: str, value: str, field: str, expected: Any) -> None:
    options, problems = parse(**{key: value})
    assert problems == []
    assert getattr(options, field) == expected


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("worker-processes", "0", "whole number from 1 to 1024"),
        ("worker-processes", "many", "whole number"),
        ("proxy-body-size", "1q", "nginx size"),
        ("proxy-body-size", "-1m", "nginx size"),
        ("proxy-body-size", "1m;", "nginx size"),
        ("proxy-connect-timeout", "0", "above 0"),
        ("proxy-read-timeout", "30s1m", "decreasing order"),
        ("proxy-read-timeout", "1m 30s", "decreasing order"),
        ("proxy-read-timeout", "ten", "decreasing order"),
        ("proxy-send-timeout", "100y", "at most"),
        ("worker-shutdown-timeout", "240s; daemon on", "decreasing order"),
        ("ssl-redirect", "yes", "boolean"),
        ("hsts", "", "boolean"),
        ("hsts-max-age", "-5", "whole number"),
        ("upstream-keepalive-connections", "1e3", "whole number"),
        ("forwarded-for-header", "X-Forwarded-For; deny all", "must not contain ';'"),
        ("forwarded-for-header", "", "must be a header name"),
        ("proxy-real-ip-cidr", "10.0.0.0/8, unix:", "'unix:' is not an IP address"),
        ("proxy-real-ip-cidr", "0.0.0.0/0; allow all", "must not contain ';'"),
    ],
)
def test_a_bad_value_is_reported_and_the_default_kept(key: str, value: str, why: str) -> None:
    options, problems = parse(**{key: value})
    assert options == GlobalOptions()
    assert len(problems) == 1
    assert problems[0].startswith(f"data.{key}: invalid value {value!r}")
    assert why in problems[0]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("$remote_addr'; include /etc/passwd; '", '"\'"'),
        ('$remote_addr "$request"', "'\"'"),
        ("$remote_addr \\' x", "'\\\\'"),
        ("$remote_addr } server { listen 1", "'}'"),
        ("${remote_addr}", "'{'"),
        ("$remote_addr; error_log /tmp/x", "';'"),
        ("$remote_addr\nload_module x.so", "'\\n'"),
        ("$remote_addr\x00", "'\\x00'"),
        ("$ status", "'$' must start a variable: $name,"),
        ("$Remote_Addr", "$Remote_Addr: nginx would read the variable $remote_addr"),
        ("$statusX", "nginx would read the variable $statusx"),
        ("$request_body_of_doom", "$request_body_of_doom is not allowed in a log format"),
        ("$http_", "$http_ is not allowed in a log format"),
        ("$remote_addr \u00e9", "ASCII"),
        ("   ", "empty"),
        ("$status " * 400, "longer than"),
    ],
)
def test_hostile_log_format_is_refused(value: str, why: str) -> None:
    options, problems = parse(**{"log-format-upstream": value})
    assert options.log_format_upstream is None
    assert len(problems) == 1 and problems[0].startswith("data.log-format-upstream: invalid value")
    assert why in problems[0]


def test_unknown_keys_and_non_strings_are_reported_and_the_rest_applies() -> None:
    options, problems = parse(
        **{
            "proxy-body-size": "8m",
            "enable-brotli": "true",
            "hsts": True,  # a YAML boolean: the API server would refuse it
            "proxy-read-timeout": "120",
        }
    )
    assert problems == [
        "data.enable-brotli: unknown key (ignored)",
        "data.hsts: invalid value 'True': ConfigMap values are strings",
    ]
    assert options == GlobalOptions(proxy_body_size="8m", proxy_read_timeout="120s")


def test_options_go_into_render_settings_and_build_options() -> None:
    options, _ = parse(**{"ssl-redirect": "false", "proxy-body-size": "8m", "hsts": "false"})
    base = RenderSettings(http_port=8080, worker_processes="2")
    settings = options.render_settings(base)
    assert (settings.http_port, settings.worker_processes) == (8080, "2")
    assert (settings.proxy_body_size, settings.hsts) == ("8m", False)
    assert options.build_options(BuildOptions(ingress_class="x")) == BuildOptions(
        ingress_class="x", default_ssl_redirect=False
    )
    four, _ = parse(**{"worker-processes": "4"})
    assert four.render_settings(base).worker_processes == "4"


def test_settings_changes_name_the_configmap_key_and_both_values() -> None:
    old = RenderSettings()
    new = dataclasses.replace(old, proxy_body_size="8m", log_format_upstream="$status")
    assert settings_changes(new, old) == (
        "global options changed: proxy-body-size 1m -> 8m",
        "global options changed: log-format-upstream (default) -> $status",
    )
    assert settings_changes(old, old) == ()


def test_renderer_refuses_a_log_format_that_skipped_validation() -> None:
    settings = RenderSettings(log_format_upstream="$status'; daemon on; '")
    with pytest.raises(RenderError, match="log format"):
        render(Configuration(), settings=settings, paths=NginxPaths(Path("/w")), generation=1)


# --- with nginx ----------------------------------------------------------------------------


@pytest.fixture
async def h(world_readable_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A running ingressd reading its options from ConfigMap ingressd/ingressd-controller."""
    async with running_harness(world_readable_tmp, request, configmap=CONFIGMAP) as harness:
        yield harness


async def post(h: Harness, host: str, size: int) -> int:
    assert h.session is not None
    async with h.session.post(
        f"http://127.0.0.1:{h.http_port}/", data=b"x" * size, headers={"Host": host}
    ) as resp:
        return resp.status


@pytest.mark.nginx
@pytest.mark.routing("nginx")  # counts the reloads of per-host server blocks
async def test_proxy_body_size_limits_posts_and_a_change_reloads_once(h: Harness) -> None:
    await deploy(h, "web")
    h.write("cm.yaml", config_map({"proxy-body-size": "1k"}))
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")

    async def too_large() -> None:
        assert await post(h, "web.test", 2048) == 413

    await h.eventually(too_large)
    assert await post(h, "web.test", 512) == 200
    await h.settled()
    reloads = h.reloads

    h.write("cm.yaml", config_map({"proxy-body-size": "8m"}))

    async def accepted() -> None:
        assert await post(h, "web.test", 2048) == 200

    await h.eventually(accepted)
    await h.settled()
    assert h.reloads == reloads + 1
    assert h.metric("ingressd_reloads_total", result="success", reason="options") == 1
    reasons = [r.reasons for r in h.ingressd.worker.records if r.action == "reload"][-1]
    assert reasons == ("global options changed: proxy-body-size 1k -> 8m",)

    # The same options again (a new resourceVersion, an unknown key added): no reload.
    h.write("cm.yaml", config_map({"proxy-body-size": "8m", "unknown-key": "1"}))
    await h.settled()
    await h.settled()
    assert h.reloads == reloads + 1


@pytest.mark.nginx
async def test_bad_value_is_reported_once_and_ignored_while_the_rest_applies(h: Harness) -> None:
    await deploy(h, "web")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    with structlog.testing.capture_logs() as logs:
        h.write(
            "cm.yaml",
            config_map(
                {
                    "proxy-body-size": "1k",
                    "proxy-read-timeout": "soon",
                    "log-format-upstream": "$status'; } server { listen 81; '",
                }
            ),
        )

        async def too_large() -> None:
            assert await post(h, "web.test", 2048) == 413

        await h.eventually(too_large)
        # More syncs with the same ConfigMap: no new warnings.
        h.write(
            "ing.yaml",
            ingress("web", rules=[rule("web.test", path("/", "web"), path("/x", "web"))]),
        )
        await expect(h, "/x", host="web.test", service="web")
        await h.settled()
    warnings = [e for e in logs if e["event"] == "configmap option ignored"]
    assert sorted((e["key"], e["configmap"]) for e in warnings) == [
        ("log-format-upstream", CONFIGMAP),
        ("proxy-read-timeout", CONFIGMAP),
    ]
    timeout = next(e for e in warnings if e["key"] == "proxy-read-timeout")
    assert "'soon'" in timeout["reason"] and "nginx time" in timeout["reason"]
    conf = h.ingressd.nginx.paths.conf.read_text()
    assert "client_max_body_size 1k;" in conf
    assert "proxy_read_timeout 60s;" in conf
    assert "listen 81" not in conf and "log-format-upstream" not in conf
    assert h.metric("nginx_ingress_controller_config_last_reload_successful") == 1


@pytest.mark.nginx
async def test_hsts_on_https_of_tls_servers_and_forwarded_headers_when_trusted(
    h: Harness,
) -> None:
    await deploy(h, "web")
    cert, key = self_signed_certificate("secure.test")
    h.write("secret.yaml", tls_secret("tls", cert_pem=cert, key_pem=key))
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("secure.test", path("/", "web")), rule("plain.test", path("/", "web"))],
            tls_entries=[tls("secure.test", secret_name="tls")],
        ),
    )
    forwarded = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "public.example",
        "X-Forwarded-Port": "8443",
    }
    resp = await expect(h, "/", host="secure.test", https=True, service="web", headers=forwarded)
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    seen = {k.lower(): v for k, v in resp.json()["headers"].items()}
    assert seen["x-forwarded-for"] == "127.0.0.1"  # not trusted by default
    assert seen["x-forwarded-proto"] == "https" and seen["x-forwarded-host"] == "secure.test"
    plain = await expect(h, "/", host="plain.test", https=True, service="web")
    assert "Strict-Transport-Security" not in plain.headers
    redirect = await h.get("/", host="secure.test")
    assert redirect.status == 308 and "Strict-Transport-Security" not in redirect.headers

    h.write(
        "cm.yaml",
        config_map(
            {
                "hsts-max-age": "600",
                "hsts-include-subdomains": "false",
                "hsts-preload": "true",
                "use-forwarded-headers": "true",
            }
        ),
    )

    async def trusted() -> None:
        resp = await h.get("/", host="secure.test", https=True, headers=forwarded)
        assert resp.headers.get("Strict-Transport-Security") == "max-age=600; preload"
        seen = {k.lower(): v for k, v in resp.json()["headers"].items()}
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
        assert seen["x-forwarded-proto"] == "https"
        assert seen["x-forwarded-host"] == "public.example"
        assert seen["host"] == "public.example"
        assert seen["x-forwarded-port"] == "8443"
        # The client's address, from the trusted header, is nginx's $remote_addr now.
        assert seen["x-real-ip"] == "203.0.113.7"

    await h.eventually(trusted)

    # Only peers in proxy-real-ip-cidr are believed: 127.0.0.1 is not in 10.0.0.0/8.
    h.write(
        "cm.yaml", config_map({"use-forwarded-headers": "true", "proxy-real-ip-cidr": "10.0.0.0/8"})
    )

    async def not_from_that_peer() -> None:
        resp = await h.get("/", host="secure.test", https=True, headers=forwarded)
        seen = {k.lower(): v for k, v in resp.json()["headers"].items()}
        assert seen["x-real-ip"] == "127.0.0.1"
        assert seen["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"

    await h.eventually(not_from_that_peer)

    h.write("cm.yaml", config_map({"hsts": "false", "ssl-redirect": "false"}))

    async def off() -> None:
        resp = await h.get("/", host="secure.test", https=True)
        assert "Strict-Transport-Security" not in resp.headers
        assert (await h.get("/", host="secure.test")).status == 200

    await h.eventually(off)


def test_header_configmaps_are_read_checked_and_their_bad_entries_named() -> None:
    others = {
        ObjectKey("ingressd/resp"): config_map({"X-A": "a ${host}", "X-B": 'q"uote'}, "resp"),
        ObjectKey("ingressd/req"): config_map({"X-Forwarded-Proto": "https"}, "req"),
    }
    options, problems = parse_configmap(
        config_map(
            {
                "add-headers": "ingressd/resp",
                "proxy-set-headers": "ingressd/req",
                "hide-headers": "X-Powered-By, Server",
                "annotations-risk-level": "critical",
            }
        ),
        others,
    )
    assert [name for name, _ in options.add_headers] == ["X-A"]
    assert str(options.add_headers[0][1]) == "a ${host}"
    assert [name for name, _ in options.proxy_set_headers] == ["X-Forwarded-Proto"]
    assert options.hide_headers == ("X-Powered-By", "Server")
    assert options.annotations_risk_level is Risk.CRITICAL
    assert [(str(p.key), p.field) for p in problems] == [("ingressd/resp", "data.X-B")]
    assert "named by ingressd/ingressd-controller data.add-headers" in problems[0].reason
    settings = options.render_settings(RenderSettings())
    assert settings.hide_headers == ("X-Powered-By", "Server")
    assert options.build_options(BuildOptions()).annotations_risk_level is Risk.CRITICAL

    options, problems = parse_configmap(config_map({"add-headers": "ingressd/gone"}), others)
    assert options.add_headers == ()
    assert [(p.field, p.reason, p.missing) for p in problems] == [
        ("data.add-headers", "ConfigMap ingressd/gone not found", "ConfigMap ingressd/gone")
    ]
    _, problems = parse_configmap(
        config_map({"add-headers": "no-namespace", "annotations-risk-level": "severe"})
    )
    assert [p.field for p in problems] == ["data.add-headers", "data.annotations-risk-level"]


def test_no_auth_locations_are_path_prefixes_and_empty_means_none() -> None:
    options, problems = parse_configmap(
        config_map({"no-auth-locations": "/.well-known/acme-challenge, /public"})
    )
    assert options.no_auth_locations == ("/.well-known/acme-challenge", "/public")
    assert problems == ()
    assert parse_configmap(config_map({"no-auth-locations": ""}))[0].no_auth_locations == ()
    options, problems = parse_configmap(config_map({"no-auth-locations": "/a;b"}))
    assert options.no_auth_locations == ("/.well-known/acme-challenge",)
    assert [p.field for p in problems] == ["data.no-auth-locations"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"ssl-protocols": "TLSv1.2 TLSv9"}, "data.ssl-protocols"),
        ({"ssl-ciphers": "HIGH;daemon on"}, "data.ssl-ciphers"),
        ({"ssl-ciphers": "NOT-A-CIPHER"}, "data.ssl-ciphers"),
        ({"upstream-keepalive-timeout": "0"}, "data.upstream-keepalive-timeout"),
        ({"upstream-keepalive-requests": "many"}, "data.upstream-keepalive-requests"),
        ({"client-header-buffer-size": "1g"}, "data.client-header-buffer-size"),
        ({"large-client-header-buffers": "4"}, "data.large-client-header-buffers"),
        ({"large-client-header-buffers": "0 8k"}, "data.large-client-header-buffers"),
        ({"large-client-header-buffers": "4 8k; x"}, "data.large-client-header-buffers"),
        ({"http2-max-field-size": "16k"}, "data.http2-max-field-size"),
        ({"server-tokens": "yes please"}, "data.server-tokens"),
        ({"custom-http-errors": "200"}, "data.custom-http-errors"),
    ],
)
def test_migration_keys_refuse_what_their_grammar_does_not_take(
    data: dict[str, str], field: str
) -> None:
    options, problems = parse(**data)
    assert options == GlobalOptions()
    assert [p.split(":")[0] for p in problems] == [field]


def test_migration_keys_reach_nginx_conf() -> None:
    options, problems = parse(
        **{
            "ssl-protocols": "TLSv1.3",
            "ssl-ciphers": "ECDHE-RSA-AES256-GCM-SHA384",
            "upstream-keepalive-timeout": "30",
            "upstream-keepalive-requests": "500",
            "client-header-buffer-size": "2k",
            "large-client-header-buffers": "8  16k",
            "server-tokens": "true",
            "allow-backend-server-header": "true",
        }
    )
    assert problems == []
    text = render(
        Configuration(),
        settings=options.render_settings(RenderSettings()),
        paths=NginxPaths(Path("/w")),
        generation=1,
    )
    for line in (
        'ssl_protocols "TLSv1.3";',
        'ssl_ciphers "ECDHE-RSA-AES256-GCM-SHA384";',
        "keepalive_timeout 30s;",
        "keepalive_requests 500;",
        'client_header_buffer_size "2k";',
        'large_client_header_buffers 8 "16k";',
        "server_tokens on;",
        "proxy_pass_header Server;",
    ):
        assert line in text, line
    assert "more_clear_headers Server;" not in text


@pytest.mark.parametrize("routing", ["lua", "nginx"])
def test_proxy_set_headers_with_token_names_and_its_own_forwarded_proto_render_everywhere(
    routing: str,
) -> None:
    """Names any HTTP token allows reach every proxy_set_header, the error pages' too, quoted;
    an X-Forwarded-Proto of the ConfigMap leaves the sign-in redirect on the request's scheme."""
    from tests.test_annotations import ann, build, one

    others = {
        ObjectKey("ingressd/req"): config_map(
            {"X-Trace.Id": "${request_id}", "x-forwarded-proto": "https"}, "req"
        )
    }
    options, problems = parse_configmap(
        config_map({"proxy-set-headers": "ingressd/req", "custom-http-errors": "503"}), others
    )
    assert problems == ()
    auth = ann(auth_url="http://auth.test/check", auth_signin="http://auth.test/start")
    result = build(one("app", auth), options=options.build_options(BuildOptions()))
    assert result.problems == ()
    text = render(
        result.configuration,
        settings=options.render_settings(RenderSettings(routing=routing)),
        paths=NginxPaths(Path("/var/lib/ingressd")),
        generation=1,
    )
    assert 'proxy_set_header "X-Trace.Id" "${request_id}";' in text
    assert "rd=$scheme://$http_host$escaped_request_uri" in text
