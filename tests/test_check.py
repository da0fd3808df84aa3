"""``ingressd check``: the migration report over real-world-style ingress-nginx manifests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
import yaml

from ingressd.cli import arguments
from ingressd.cli import commands as cli
from ingressd.logs import configure
from tests.support.fakeapi import FakeApiServer
from tests.support.objects import endpoint_slice, ingress, path, rule, service

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "ingress-nginx"
P = "nginx.ingress.kubernetes.io/"


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """``cli.main`` configures structlog for the process: put the test session's back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def run_check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = cli.main(["--log-level", "error", "check", *args])
    return code, capsys.readouterr().out


def by_ingress(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["ingress"]: i for i in report["ingresses"]}


def statuses(entry: dict[str, Any]) -> dict[str, str]:
    return {a["annotation"].removeprefix(P): a["status"] for a in entry["annotations"]}


def test_check_reports_every_annotation_missing_objects_and_conflicts_as_json(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run_check(
        capsys, "--manifests", str(EXAMPLES), "--ingress-class", "nginx", "--json"
    )
    report = json.loads(out)
    assert code == 1 and report["changesBehaviour"] is True
    ingresses = by_ingress(report)
    assert set(ingresses) == {
        "monitoring/grafana",
        "monitoring/grafana-legacy",
        "rpc/greeter",
        "shop/api",
        "shop/storefront",
        "web/web",
        "web/web-canary",
    }

    storefront = ingresses["shop/storefront"]
    assert statuses(storefront)["use-regex"] == "supported with a difference"
    assert statuses(storefront)["rewrite-target"] == "supported"
    missing = {f["reason"] for f in storefront["findings"] if f["kind"] == "missing"}
    assert missing == {"service shop/cart not found", "secret shop/shop-tls not found"}

    legacy = ingresses["monitoring/grafana-legacy"]
    assert statuses(legacy) == {
        "enable-modsecurity": "supported",
        "enable-owasp-core-rules": "supported",
        "proxy-body-size": "invalid value",
        "ssl-redirectt": "unknown",
    }
    [conflict] = legacy["findings"]
    assert (conflict["kind"], conflict["winner"]) == ("conflict", "monitoring/grafana")
    assert conflict["changesBehaviour"] is False

    assert statuses(ingresses["shop/api"])["auth-url"] == "supported"
    assert statuses(ingresses["shop/api"])["auth-signin"] == "supported"
    # made only of header rules: parsed and written again, without --allow-snippet-annotations
    assert statuses(ingresses["monitoring/grafana"])["configuration-snippet"] == "supported"
    assert statuses(ingresses["rpc/greeter"])["server-snippet"] == "not allowed"
    assert statuses(ingresses["web/web-canary"])["proxy-body-size"] == "ignored"
    assert ingresses["web/web"]["changesBehaviour"] is False
    assert report["summary"]["missing"] == 3


def test_check_prints_a_table_and_snippets_pass_when_allowed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = run_check(
        capsys,
        "--manifests",
        str(EXAMPLES),
        "--ingress-class",
        "nginx",
        "--allow-snippet-annotations",
    )
    lines = out.splitlines()
    assert lines[0].split() == ["INGRESS", "ANNOTATION", "RISK", "STATUS", "DETAIL"]
    row = next(line for line in lines if "configuration-snippet" in line)
    assert row.split()[:3] == ["configuration-snippet", "Medium", "supported"]
    assert "header rules only" in row
    # allowed, but Critical: above the default --annotations-risk-level High
    row = next(line for line in lines if "server-snippet" in line)
    assert row.split()[:4] == ["server-snippet", "Critical", "too", "risky"]
    assert any(
        line.split()[:4] == ["monitoring/grafana-legacy", "enable-modsecurity", "Low", "supported"]
        for line in lines
    )
    # the WAF, web/web-canary's affinity-canary-behavior and shop/api's auth-url are supported
    assert lines[-1] == "Behaviour would change for 3 of 7 Ingresses."
    assert code == 1


def test_check_exits_0_when_nothing_would_change(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "app.yaml").write_text(
        yaml.safe_dump_all(
            [
                service("web"),
                endpoint_slice("web", endpoints=["10.0.0.1"]),
                ingress(
                    "web",
                    rules=[rule("a.test", path("/", "web", 80))],
                    ingress_class_name="nginx",
                    annotations={P + "proxy-body-size": "8m", P + "load-balance": "ewma"},
                ),
                ingress(
                    "other",
                    rules=[rule("b.test", path("/", "web", 80))],
                    ingress_class_name="traefik",
                ),
            ]
        )
    )
    code, out = run_check(capsys, "--manifests", str(tmp_path), "--ingress-class", "nginx")
    assert code == 0, out
    assert out.splitlines()[-1] == "No behaviour change expected."
    assert "1 Ingresses of other classes not checked (see --ingress-class): default/other" in out


def test_check_names_the_refused_snippet_line_and_applies_the_risk_level(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    snippet = "more_set_headers 'X-Frame-Options: DENY';\nrewrite_by_lua_block { ngx.exit(200) }\n"
    (tmp_path / "app.yaml").write_text(
        yaml.safe_dump_all(
            [
                service("web"),
                endpoint_slice("web", endpoints=["10.0.0.1"]),
                ingress(
                    "web",
                    rules=[rule("a.test", path("/", "web", 80))],
                    ingress_class_name="nginx",
                    annotations={
                        P + "configuration-snippet": snippet,
                        P + "upstream-hash-by": "$request_uri",
                    },
                ),
            ]
        )
    )
    code, out = run_check(capsys, "--manifests", str(tmp_path), "--ingress-class", "nginx")
    row = next(line for line in out.splitlines() if "configuration-snippet" in line)
    assert row.split()[1:4] == ["configuration-snippet", "Critical", "not"]
    assert "line 2 ('rewrite_by_lua_block { ngx.exit(200) }') is refused" in row
    assert code == 1

    code, out = run_check(
        capsys,
        "--manifests",
        str(tmp_path),
        "--ingress-class",
        "nginx",
        "--annotations-risk-level",
        "medium",
        "--json",
    )
    [web] = json.loads(out)["ingresses"]
    hash_by = next(a for a in web["annotations"] if a["annotation"].endswith("upstream-hash-by"))
    assert (hash_by["risk"], hash_by["status"]) == ("High", "too risky")
    assert hash_by["detail"] == "risk level High is above --annotations-risk-level Medium"

    # the controller's ConfigMap key wins over the flag
    (tmp_path / "cm.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "ctl", "namespace": "ingressd"},
                "data": {"annotations-risk-level": "High"},
            }
        )
    )
    code, out = run_check(
        capsys,
        "--manifests",
        str(tmp_path),
        "--ingress-class",
        "nginx",
        "--annotations-risk-level",
        "Medium",
        "--configmap",
        "ingressd/ctl",
        "--json",
    )
    [web] = json.loads(out)["ingresses"]
    statuses_now = statuses(web)
    assert statuses_now["upstream-hash-by"] == "supported"


def test_check_lists_the_configmap_keys_it_does_not_know_and_accepts_the_waf_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ingressd", "namespace": "ingressd"},
        "data": {
            "enable-modsecurity": "true",
            "enable-owasp-modsecurity-crs": "true",
            "modsecurity-snippet": "SecRuleEngine On",
            "no-such-key": "1",
        },
    }
    (tmp_path / "cm.yaml").write_text(yaml.safe_dump(configmap))
    code, out = run_check(
        capsys, "--manifests", str(tmp_path), "--configmap", "ingressd/ingressd", "--json"
    )
    report = json.loads(out)
    assert report["otherProblems"] == [
        "ConfigMap ingressd/ingressd: data.no-such-key: unknown key (ignored)"
    ], report["otherProblems"]
    assert code == 0


async def test_check_reads_a_cluster_through_kubeconfig(
    fake_api: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_api.create(service("web"))
    fake_api.create(
        ingress(
            "web",
            rules=[rule("a.test", path("/", "web", 80))],
            annotations={P + "global-rate-limit": "10", P + "ssl-passthrough": "true"},
        )
    )
    kubeconfig = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    configure(level="error", json=True)  # what main() does before running the check
    args = arguments.parser().parse_args(["check", "--kubeconfig", str(kubeconfig), "--json"])
    code = await cli._check(args)
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert statuses(by_ingress(report)["default/web"]) == {
        "global-rate-limit": "unsupported",
        "ssl-passthrough": "supported with a difference",
    }


def test_check_lists_configmap_keys_it_does_not_read_and_bad_tcp_services_entries(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def config_map(name: str, data: dict[str, str]) -> dict[str, object]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "ingress"},
            "data": data,
        }

    (tmp_path / "app.yaml").write_text(
        yaml.safe_dump_all(
            [
                service("web"),
                config_map(
                    "controller",
                    {"use-proxy-protocol": "true", "enable-real-ip": "true", "bogus-key": "1"},
                ),
                config_map("tcp", {"9000": "default/web:80", "80": "default/web:80"}),
            ]
        )
    )
    code, out = run_check(
        capsys,
        "--manifests",
        str(tmp_path),
        "--configmap",
        "ingress/controller",
        "--tcp-services-configmap",
        "ingress/tcp",
    )
    assert code == 0  # no Ingress behaves differently; the keys are listed
    also = [line for line in out.splitlines() if line.startswith("also: ")]
    assert also == [
        "also: ConfigMap ingress/controller: data.bogus-key: unknown key (ignored)",
        "also: ConfigMap ingress/tcp: data[80]: port 80 is already taken by the HTTP port",
    ], out


def test_check_reports_the_migration_annotations_and_configmap_keys(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    annotations = {
        "from-to-www-redirect": "true",
        "service-upstream": "true",
        "proxy-redirect-from": "http://internal/",
        "proxy-redirect-to": "https://a.test/",
        "proxy-cookie-domain": "internal a.test",
        "proxy-cookie-path": "off",
        "ssl-ciphers": "ECDHE-RSA-AES256-GCM-SHA384",
        "ssl-prefer-server-ciphers": "true",
        "custom-http-errors": "404,503",
    }
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ingressd", "namespace": "ingressd"},
        "data": {
            "custom-http-errors": "503",
            "ssl-protocols": "TLSv1.3",
            "server-tokens": "false",
            "http2-max-field-size": "16k",
            "large-client-header-buffers": "4 one",
        },
    }
    (tmp_path / "app.yaml").write_text(
        yaml.safe_dump_all(
            [
                configmap,
                service("web"),
                endpoint_slice("web", endpoints=["10.0.0.1"]),
                ingress(
                    "web",
                    rules=[rule("a.test", path("/", "web", 80))],
                    annotations={P + k: v for k, v in annotations.items()},
                ),
            ]
        )
    )
    args = ("--manifests", str(tmp_path), "--configmap", "ingressd/ingressd", "--json")
    code, out = run_check(capsys, *args)
    report = json.loads(out)
    assert code == 1  # differences remain (see the table's texts)
    seen = statuses(by_ingress(report)["default/web"])
    assert seen == {
        "custom-http-errors": "supported with a difference",
        "from-to-www-redirect": "supported with a difference",
        "proxy-cookie-domain": "supported",
        "proxy-cookie-path": "supported",
        "proxy-redirect-from": "supported",
        "proxy-redirect-to": "supported",
        "service-upstream": "supported with a difference",
        "ssl-ciphers": "supported with a difference",
        "ssl-prefer-server-ciphers": "supported with a difference",
    }
    other = "\n".join(report["otherProblems"])
    assert "data.http2-max-field-size" in other and "obsolete" in other
    assert "data.large-client-header-buffers" in other
    assert "custom-http-errors: needs --default-backend-service" in other
    assert "data.ssl-protocols" not in other and "data.server-tokens" not in other
    # with the flag, the keys are used and the Ingress's errors have a place to go
    code, out = run_check(capsys, *args, "--default-backend-service", "default/web")
    other = "\n".join(json.loads(out)["otherProblems"])
    assert "custom-http-errors" not in other
