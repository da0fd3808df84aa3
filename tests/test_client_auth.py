"""Client certificates (``auth-tls-*``) without nginx: the match-cn grammar, the CA / CRL
Secret reader, what building makes of a host's settings, and the nginx.conf lines."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from ingressd.annotations import AnnotationOptions, Status, parse_annotations, patterns
from ingressd.annotations.secrets import client_auth_files
from ingressd.annotations.values import InvalidValue
from ingressd.build import BuildCache
from ingressd.build.building import BuildOptions, BuildResult, build_configuration
from ingressd.model import ObjectKey, Server
from ingressd.model.settings import SecretFile
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.nginx.routes import RouteContext, route_table
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.snapshot import KubeObject
from ingressd.store.store import Store
from tests.support import objects as o
from tests.support.pki import CertificateAuthority

P = "nginx.ingress.kubernetes.io/"
KEY = ObjectKey("default/ca")


def secret(name: str, **data: str) -> KubeObject:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "default"},
        "data": {
            k.replace("_", "."): base64.b64encode(v.encode()).decode() for k, v in data.items()
        },
    }


def guarded(name: str, host: str | None, created: str, **annotations: str) -> KubeObject:
    return o.ingress(
        name,
        rules=[o.rule(host, o.path(f"/{name}", "web", 80))],
        annotations={P + k.replace("_", "-"): v for k, v in annotations.items()},
        created=created,
    )


def build(*objects: KubeObject) -> BuildResult:
    web = (o.service("web"), o.endpoint_slice("web", endpoints=["10.0.0.1"]))
    return build_configuration(o.snapshot(*web, *objects), BuildOptions())


def server(result: BuildResult, host: str) -> Server:
    return next(s for s in result.configuration.servers if s.hostname == host)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CN=client-a", "CN=client-a"),
        (" CN=(client-a|client-b)$ ", "CN=(client-a|client-b)$"),
        # one word in nginx.conf, the same pattern for PCRE
        ("CN=My Client", "CN=My\\x20Client"),
    ],
)
def test_match_cn_is_cn_and_a_pcre_pattern(text: str, expected: str) -> None:
    assert patterns.common_name(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("client-a", "must start with 'CN='"),
        # CVE-2025-1097: the value ended the directive and added its own
        ('CN=a") { return 200; } #', "must not contain"),
        ("CN=a;load_module x", "must not contain ';'"),
        ("CN=(a+)+$", "exponential time"),
        ("CN=[[:foo:]]", "not a regular expression nginx can run"),
        ("CN=$host", "must not use '$'"),
    ],
)
def test_match_cn_refuses_what_could_break_out_or_not_compile(text: str, reason: str) -> None:
    with pytest.raises(InvalidValue, match=reason.replace("(", r"\(").replace("$", r"\$")):
        patterns.common_name(text)


def test_the_ca_secret_is_parsed_and_its_crl_must_be_signed_by_the_ca() -> None:
    good, other = CertificateAuthority("good ca"), CertificateAuthority("other ca")
    client, _ = good.issue("c")
    good.revoke(client)
    ca, crl = client_auth_files(KEY, secret("ca", ca_crt="junk\n" + good.pem, ca_crl=good.crl()))
    assert isinstance(ca, SecretFile) and isinstance(crl, SecretFile)
    assert ca.content == good.pem and "junk" not in ca.content
    assert crl.content.startswith("-----BEGIN X509 CRL-----")
    # with two CAs, each CRL is checked against its issuer
    both = good.pem + other.pem
    assert len(client_auth_files(KEY, secret("ca", ca_crt=both, ca_crl=good.crl() + other.crl())))
    for raw, field, reason in [
        (secret("ca", ca_crt=good.pem, ca_crl=other.crl()), "data.ca.crl", "not signed by"),
        (secret("ca", ca_crt=good.pem, ca_crl="nothing"), "data.ca.crl", "holds no PEM CRL"),
        (secret("ca", ca_crt="not a certificate"), "data.ca.crt", "is not PEM certificates"),
        (secret("ca", tls_crt=good.pem), "data.ca.crt", "missing"),
    ]:
        found = client_auth_files(KEY, raw)
        assert found[0] == field and reason in str(found[1]), found


def test_a_host_takes_the_client_auth_of_its_oldest_ingress_and_keeps_its_own_block() -> None:
    ca, other = CertificateAuthority("ca"), CertificateAuthority("other")
    result = build(
        secret("ca", ca_crt=ca.pem),
        secret("other", ca_crt=other.pem),
        guarded(
            "a", "a.test", "2024-01-01T00:00:00Z", auth_tls_secret="ca", auth_tls_verify_depth="2"
        ),
        guarded("b", "a.test", "2024-02-01T00:00:00Z", auth_tls_secret="other"),
        guarded("c", "c.test", "2024-01-01T00:00:00Z"),
    )
    auth = server(result, "a.test").client_auth
    assert auth is not None and auth.ca.content == ca.pem and auth.depth == 2
    assert auth.verify == "on" and not auth.pass_certificate
    assert server(result, "c.test").client_auth is None
    # the second Ingress is told whose settings its paths get
    assert any(
        p.key == "default/b" and "client certificate settings of Ingress default/a" in p.reason
        for p in result.problems
    )
    assert auth.ca in result.configuration.secret_files()
    table = route_table(result.configuration, RouteContext())
    assert [s.hostname for s in table.own_blocks] == ["a.test"]
    assert "a.test" not in table.entries and "c.test" in table.entries
    for routing in ("nginx", "lua"):
        text = render(
            result.configuration,
            settings=RenderSettings(routing=routing),
            paths=NginxPaths(Path("/var/lib/ingressd")),
            generation=1,
        )
        assert text.count("ssl_verify_client on;") == 1, routing
        assert text.count("ssl_verify_depth 2;") == 1, routing
        assert f'ssl_client_certificate "/var/lib/ingressd/secrets/{auth.ca.file_name}";' in text
        assert "proxy_set_header ssl-client-verify $ssl_client_verify;" in text


def test_client_auth_fails_closed_without_a_host_or_a_usable_secret() -> None:
    ca = CertificateAuthority("ca")
    result = build(
        secret("ca", ca_crt=ca.pem),
        guarded("hostless", None, "2024-01-01T00:00:00Z", auth_tls_secret="ca"),
        guarded("missing", "m.test", "2024-01-01T00:00:00Z", auth_tls_secret="nope"),
        guarded("cross", "x.test", "2024-01-01T00:00:00Z", auth_tls_secret="other/ca"),
    )
    catch_all = server(result, "_")
    assert catch_all.client_auth is None
    assert next(loc for loc in catch_all.locations if loc.path == "/hostless").settings.denied
    for host in ("m.test", "x.test"):
        assert server(result, host).client_auth is None
        assert all(loc.settings.denied for loc in server(result, host).locations if loc.ingress)
    fields = {(p.key, p.field) for p in result.problems}
    assert ("default/hostless", "spec.rules[0].host") in fields
    assert ("default/missing", f"metadata.annotations[{P}auth-tls-secret]") in fields


def test_check_reports_the_client_certificate_and_parity_annotations_as_supported() -> None:
    names = {
        "auth-tls-secret": "ca",
        "auth-tls-verify-client": "optional_no_ca",
        "auth-tls-verify-depth": "3",
        "auth-tls-error-page": "https://login.example.com/cert",
        "auth-tls-pass-certificate-to-upstream": "true",
        "auth-tls-match-cn": "CN=client",
        "preserve-trailing-slash": "true",
        "affinity": "cookie",
        "session-cookie-domain": "example.com",
    }
    parsed = parse_annotations(
        "default/x", {P + k: v for k, v in names.items()}, AnnotationOptions()
    )
    statuses = {r.key.removeprefix(P): r.status for r in parsed.report}
    assert all(status in (Status.SUPPORTED, Status.DIFFERENT) for status in statuses.values())
    assert set(statuses) == set(names)
    assert parsed.client_auth is not None and parsed.client_auth.verify == "optional_no_ca"
    assert parsed.settings.preserve_trailing_slash
    assert parsed.policy.affinity is not None and parsed.policy.affinity.domain == "example.com"
    canary = parse_annotations(
        "default/c",
        {P + "canary": "true", P + "affinity-canary-behavior": "legacy"},
        AnnotationOptions(),
    )
    assert canary.canary_behavior == "legacy" and not canary.problems


def test_incremental_builds_follow_the_ca_secret_and_the_oldest_ingress_like_full_ones() -> None:
    ca, other = CertificateAuthority("ca"), CertificateAuthority("other")
    store = Store(channel=UpdateChannel(maxsize=1 << 16))
    cache = BuildCache()

    def apply(obj: KubeObject, kind: EventType = EventType.ADDED) -> None:
        store.apply(WatchEvent(kind, obj))
        incremental = build_configuration(store.snapshot(), BuildOptions(), cache=cache)
        assert (
            incremental.configuration
            == build_configuration(store.snapshot(), BuildOptions()).configuration
        )
        assert sorted(map(str, incremental.problems)) == sorted(
            map(str, build_configuration(store.snapshot(), BuildOptions()).problems)
        )

    for obj in (o.service("web"), o.endpoint_slice("web", endpoints=["10.0.0.1"])):
        apply(obj)
    apply(secret("ca", ca_crt=ca.pem))
    apply(guarded("b", "a.test", "2024-02-01T00:00:00Z", auth_tls_secret="ca"))
    apply(
        guarded(
            "a",
            "a.test",
            "2024-01-01T00:00:00Z",
            auth_tls_secret="ca",
            auth_tls_verify_client="optional",
        )
    )
    apply(secret("ca", ca_crt=other.pem), EventType.MODIFIED)
    apply(secret("ca", ca_crt="broken"), EventType.MODIFIED)
    apply(guarded("a", "a.test", "2024-01-01T00:00:00Z"), EventType.MODIFIED)
    apply(secret("ca", ca_crt=ca.pem), EventType.MODIFIED)
    result = build_configuration(store.snapshot(), BuildOptions(), cache=cache)
    auth = server(result, "a.test").client_auth
    assert auth is not None and auth.verify == "on" and auth.ca.content == ca.pem


def test_an_invalid_verify_mode_or_depth_falls_back_to_the_strictest_default() -> None:
    parsed = parse_annotations(
        "default/x",
        {
            P + "auth-tls-secret": "ca",
            P + "auth-tls-verify-client": "optinal",
            P + "auth-tls-verify-depth": "deep",
        },
        AnnotationOptions(),
    )
    assert parsed.client_auth is not None
    assert (parsed.client_auth.verify, parsed.client_auth.depth) == ("on", 1)
    assert {r.key.removeprefix(P) for r in parsed.problems} == {
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
    }
    assert parsed.settings.denied is None
