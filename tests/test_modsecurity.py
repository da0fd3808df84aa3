"""The web application firewall: ModSecurity with the OWASP Core Rule Set.

Pure parts first (the safe snippet subset, the ConfigMap keys, the nginx lines), then real
nginx with Debian's module and CRS: DetectionOnly logs and blocks nothing, ``SecRuleEngine On``
(ConfigMap snippet, or the safe annotation subset without --allow-snippet-annotations) answers
403 to a plain SQL injection and lets a normal request through, in both routing modes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ingressd.annotations import AnnotationOptions, Risk, Status, parse_annotations
from ingressd.annotations.modsecurity import safe_rules, transaction_id
from ingressd.annotations.values import InvalidValue
from ingressd.build.building import BuildOptions, build_configuration
from ingressd.model import Configuration, ObjectKey
from ingressd.model.settings import ModSecurity
from ingressd.nginx.modsecurity import WafDefaults, http_setup, waf_location_lines
from ingressd.nginx.process import NginxProcess
from ingressd.nginx.quoting import DirectiveError, quote_modsecurity_rules
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.nginx.routes import RouteContext, route_table
from ingressd.pipeline.configmap import parse_configmap, settings_changes
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, running_harness
from tests.support.objects import ingress, path, rule, service, snapshot

P = "nginx.ingress.kubernetes.io/"
CONFIGMAP = ObjectKey("ingressd/ingressd-controller")
#: A plain SQL injection in the query (CRS 942100, libinjection), URL-encoded.
SQLI = "/?id=1%27%20OR%20%271%27=%271"
NORMAL = "/?id=1"


def config_map(data: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ingressd-controller", "namespace": "ingressd"},
        "data": data,
    }


# --- the safe subset of modsecurity-snippet -------------------------------------------------


def test_safe_subset_is_re_rendered_from_its_parsed_form() -> None:
    text = (
        "# block\n  secruleengine   on \n\n"
        "SecRuleRemoveById 942100 920000-920999\nSecRuleRemoveById 942100 1\n"
    )
    assert safe_rules(text) == "SecRuleEngine On\nSecRuleRemoveById 942100 920000-920999 1"
    assert safe_rules("SecRuleEngine DetectionOnly") == "SecRuleEngine DetectionOnly"
    assert safe_rules("SecRuleRemoveById 5") == "SecRuleRemoveById 5"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('SecRule ARGS "@rx x" "id:1,phase:1,deny"', "only SecRuleEngine and SecRuleRemoveById"),
        ("Include /etc/passwd", "only SecRuleEngine and SecRuleRemoveById"),
        ("SecRuleEngine On\nSecAuditLog /tmp/x", "line 2"),
        ("SecRuleEngine Maybe", "takes On, DetectionOnly or Off"),
        ("SecRuleEngine On Off", "takes On, DetectionOnly or Off"),
        ("SecRuleEngine On\nSecRuleEngine Off", "set twice"),
        ("SecRuleRemoveById", "needs rule ids"),
        ("SecRuleRemoveById 942100,942200", "not a rule id"),
        ("SecRuleRemoveById 9-1", "a range from low to high"),
        ("SecRuleRemoveById 0", "ids run from 1"),
        ("SecRuleRemoveById 99999999999", "not a rule id"),
        ("SecRuleRemoveById '1'", "not a rule id"),
        ("# nothing\n", "has no SecRuleEngine"),
    ],
)
def test_safe_subset_refuses_everything_else(text: str, why: str) -> None:
    with pytest.raises(InvalidValue, match=why):
        safe_rules(text)


def test_transaction_id_takes_variables_and_plain_text_only() -> None:
    assert transaction_id("$request_id") == "$request_id"
    assert transaction_id("app-${http_x_trace_id}") == "app-${http_x_trace_id}"
    for bad in ("$unknown_var", "a b", '$request_id"', "$request_id;", ""):
        with pytest.raises(InvalidValue):
            transaction_id(bad)


def waf(annotations: dict[str, str], *, allow: bool = False) -> Any:
    return parse_annotations(
        "default/app",
        {P + k: v for k, v in annotations.items()},
        # snippets are Critical: allowing them takes --annotations-risk-level Critical too
        AnnotationOptions(allow_snippets=allow, risk_level=Risk.CRITICAL if allow else Risk.HIGH),
    )


def test_annotations_give_the_settings_and_a_refused_snippet_is_a_problem() -> None:
    parsed = waf(
        {
            "enable-modsecurity": "true",
            "enable-owasp-core-rules": "true",
            "modsecurity-snippet": "SecRuleEngine on",
            "modsecurity-transaction-id": "$request_id",
        }
    )
    assert parsed.settings.modsecurity == ModSecurity(
        enable=True, owasp_core_rules=True, rules="SecRuleEngine On", transaction_id="$request_id"
    )
    assert parsed.problems == ()

    refused = waf({"enable-modsecurity": "true", "modsecurity-snippet": 'SecRule ARGS "x" "id:1"'})
    [problem] = refused.problems
    assert problem.key == P + "modsecurity-snippet"
    assert problem.status is Status.NOT_ALLOWED
    assert "--allow-snippet-annotations" in problem.detail and "line 1" in problem.detail
    assert refused.settings.modsecurity == ModSecurity(enable=True)

    raw = 'SecRule ARGS "@rx x" "id:1,phase:1,deny"'
    allowed = waf({"enable-modsecurity": "true", "modsecurity-snippet": raw}, allow=True)
    assert allowed.problems == ()
    assert allowed.settings.modsecurity is not None
    assert allowed.settings.modsecurity.rules == raw
    assert waf({"enable-modsecurity": "yes"}).problems[0].status is Status.INVALID


# --- the ConfigMap and nginx.conf -----------------------------------------------------------


def test_configmap_keys_become_the_waf_defaults() -> None:
    options, problems = parse_configmap(
        config_map(
            {
                "enable-modsecurity": "true",
                "enable-owasp-modsecurity-crs": "true",
                "modsecurity-snippet": "SecRuleEngine On\nSecRequestBodyAccess On\n",
            }
        )
    )
    assert problems == ()
    settings = options.render_settings(RenderSettings())
    assert settings.modsecurity == WafDefaults(
        enable=True, crs=True, snippet="SecRuleEngine On\nSecRequestBodyAccess On"
    )
    _, problems = parse_configmap(config_map({"enable-modsecurity": "maybe"}))
    assert [p.field for p in problems] == ["data.enable-modsecurity"]
    assert settings_changes(settings, RenderSettings()) == (
        "global options changed: enable-modsecurity False -> True",
        "global options changed: enable-owasp-modsecurity-crs False -> True",
        "global options changed: modsecurity-snippet (default) -> "
        "SecRuleEngine On\nSecRequestBodyAccess On",
    )


def test_rules_are_quoted_so_nginx_reads_them_back_exactly() -> None:
    text = 'SecRule ARGS "@rx ^a\\d\'" \\\n  "id:1,deny"\n\ttabbed'
    quoted = quote_modsecurity_rules(text)
    assert "\n" not in quoted and quoted.startswith("'") and quoted.endswith("'")
    assert quoted == '\'SecRule ARGS "@rx ^a\\\\d\\\'" \\\\\\n  "id:1,deny"\\n\\ttabbed\''
    with pytest.raises(DirectiveError):
        quote_modsecurity_rules("a\x00b")
    with pytest.raises(DirectiveError, match="at most 4000"):
        quote_modsecurity_rules("x" * 4000)


@pytest.mark.parametrize(
    ("settings", "defaults", "lines"),
    [
        (None, WafDefaults(), []),
        (ModSecurity(enable=False), WafDefaults(), []),
        (None, WafDefaults(enable=True, crs=True), []),
        (ModSecurity(enable=False), WafDefaults(enable=True), ["modsecurity off;"]),
        (
            ModSecurity(enable=True),
            WafDefaults(),
            ["modsecurity on;", "modsecurity_rules 'SecRuleRemoveById 900000-999999';"],
        ),
        (
            ModSecurity(enable=True, owasp_core_rules=True, rules="SecRuleEngine On"),
            WafDefaults(),
            ["modsecurity on;", "modsecurity_rules 'SecRuleEngine On';"],
        ),
        (
            None,
            WafDefaults(enable=True),
            ["modsecurity_rules 'SecRuleRemoveById 900000-999999';"],
        ),
        (
            ModSecurity(owasp_core_rules=True, transaction_id="$request_id"),
            WafDefaults(enable=True),
            ['modsecurity_transaction_id "$request_id";'],
        ),
    ],
)
def test_location_lines_follow_the_annotation_else_the_configmap(
    settings: ModSecurity | None, defaults: WafDefaults, lines: list[str]
) -> None:
    assert waf_location_lines(settings, defaults) == lines


def test_rules_are_loaded_once_at_http_level_and_the_module_only_when_used() -> None:
    assert http_setup(Configuration(), WafDefaults(), "/w/modsecurity").module is False
    on = http_setup(Configuration(), WafDefaults(enable=True, snippet="SecRuleEngine On"), "/w/m")
    assert on.lines == (
        "modsecurity on;",
        "modsecurity_rules 'SecRuleEngine On';",
        'modsecurity_rules_file "/w/m/modsecurity.conf";',
    )
    objects = [
        ingress(
            f"app{i}",
            rules=[rule(f"app{i}.test", path("/", "web"))],
            annotations={P + "enable-modsecurity": "true", P + "enable-owasp-core-rules": "true"},
        )
        for i in range(3)
    ]
    config = build_configuration(snapshot(service("web"), *objects), BuildOptions()).configuration
    setup = http_setup(config, WafDefaults(), "/w/m")
    assert setup.module is True
    assert setup.lines == (
        'modsecurity_rules_file "/w/m/modsecurity.conf";',
        'modsecurity_rules_file "/w/m/crs.conf";',
    )


# --- through nginx --------------------------------------------------------------------------


def audit_log(h: Harness) -> str:
    """ModSecurity's audit log: every transaction where a rule matched (logs/ of the work dir)."""
    audit = h.options.work_dir / "logs" / "modsec_audit.log"
    return audit.read_text(errors="replace") if audit.exists() else ""


async def logged(h: Harness, *needles: str) -> None:
    """Wait until one audit log entry holds every needle."""

    async def check() -> None:
        entries = audit_log(h).split("---A--")
        assert any(all(n in e for n in needles) for e in entries), needles

    await h.eventually(check)


async def waf_ingress(h: Harness, name: str, annotations: dict[str, str]) -> None:
    h.write(
        f"{name}.yaml",
        ingress(
            name,
            rules=[rule(f"{name}.test", path("/", "web", 80))],
            annotations={P + k: v for k, v in annotations.items()},
        ),
    )


@pytest.fixture
async def configured(
    world_readable_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """A running ingressd reading its ConfigMap, snippets not allowed."""
    async with running_harness(world_readable_tmp, request, configmap=CONFIGMAP) as h:
        yield h


@pytest.mark.nginx
async def test_configmap_waf_detects_only_until_its_snippet_turns_blocking_on(
    configured: Harness,
) -> None:
    h = configured
    await deploy(h, "web")
    h.write(
        "cm.yaml",
        config_map({"enable-modsecurity": "true", "enable-owasp-modsecurity-crs": "true"}),
    )
    await waf_ingress(h, "shop", {})
    await waf_ingress(h, "legacy", {"enable-modsecurity": "false"})
    await waf_ingress(h, "tuned", {"modsecurity-snippet": "SecRuleRemoveById 942100"})
    await expect(h, NORMAL, host="shop.test", service="web")
    await h.settled()
    # DetectionOnly: the rule matches and is logged, the request is served.
    await expect(h, SQLI, host="shop.test", service="web")
    await logged(h, "shop.test", '[id "942100"]')

    h.write(
        "cm.yaml",
        config_map(
            {
                "enable-modsecurity": "true",
                "enable-owasp-modsecurity-crs": "true",
                "modsecurity-snippet": "SecRuleEngine On\n",
            }
        ),
    )
    await expect(h, SQLI, host="shop.test", status=403, timeout=15)
    await expect(h, NORMAL, host="shop.test", service="web")
    # Off where an Ingress says so; a removed rule no longer blocks.
    await expect(h, SQLI, host="legacy.test", service="web")
    await expect(h, SQLI, host="tuned.test", service="web")
    assert h.ingressd.worker.last_build is not None
    assert h.ingressd.worker.last_build.problems == ()


@pytest.mark.nginx
async def test_annotations_detect_alone_and_the_safe_snippet_blocks_without_snippet_rights(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    crs = {"enable-modsecurity": "true", "enable-owasp-core-rules": "true"}
    await waf_ingress(h, "detect", crs)
    await waf_ingress(
        h,
        "block",
        {
            **crs,
            "modsecurity-snippet": "SecRuleEngine On",
            "modsecurity-transaction-id": "$req_id",
        },
    )
    await waf_ingress(
        h, "removed", {**crs, "modsecurity-snippet": "SecRuleEngine On\nSecRuleRemoveById 942100"}
    )
    await waf_ingress(
        h, "nocrs", {"enable-modsecurity": "true", "modsecurity-snippet": "SecRuleEngine On"}
    )
    refused = 'SecRule ARGS "@contains evil" "id:10001,phase:1,deny,status:418"'
    await waf_ingress(h, "refused", {**crs, "modsecurity-snippet": refused})
    await waf_ingress(h, "plain", {})
    for host in ("detect", "block", "removed", "nocrs", "refused", "plain"):
        await expect(h, NORMAL, host=f"{host}.test", service="web")

    await expect(h, SQLI, host="block.test", status=403, headers={"X-Request-ID": "wafprobe01"})
    await logged(h, "block.test", "wafprobe01", '[id "949110"]')  # the transaction id
    if h.options.routing == "lua":
        # Lua-routed (no server block of its own): the rules ran in the class's named location.
        assert '"block.test"' not in h.options.work_dir.joinpath("nginx.conf").read_text()
    await expect(h, SQLI, host="detect.test", service="web")  # DetectionOnly: logged only
    await expect(h, SQLI, host="removed.test", service="web")
    await expect(h, SQLI, host="nocrs.test", service="web")  # the CRS is not on there
    await expect(h, SQLI, host="plain.test", service="web")
    # The refused snippet is a Problem; the rest of that Ingress applies (CRS, detection only).
    await expect(h, "/?q=evil", host="refused.test", service="web")
    await expect(h, SQLI, host="refused.test", service="web")
    assert h.ingressd.worker.last_build is not None
    [problem] = h.ingressd.worker.last_build.problems
    assert problem.key == "default/refused"
    assert problem.field == f"metadata.annotations[{P}modsecurity-snippet]"
    assert "--allow-snippet-annotations" in problem.reason

    await logged(h, "detect.test", '[id "942100"]')
    # refused.test's SQL injection was the last request: once its entry is written, so is any
    # removed.test would have had.
    await logged(h, "refused.test", '[id "942100"]')
    assert not any(
        "removed.test" in e and '[id "942100"]' in e for e in audit_log(h).split("---A--")
    )


@pytest.fixture
async def permissive(
    world_readable_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    async with running_harness(
        world_readable_tmp,
        request,
        allow_snippet_annotations=True,
        annotations_risk_level=Risk.CRITICAL,
    ) as h:
        yield h


@pytest.mark.nginx
async def test_allowed_snippet_rules_reach_modsecurity_exactly_as_written(
    permissive: Harness,
) -> None:
    h = permissive
    await deploy(h, "web")
    # A quote and a backslash escape inside the rule, a line continuation between its parts.
    rules = (
        "SecRuleEngine On\n"
        'SecRule ARGS:x "@rx ^evil\\d+\'$" \\\n'
        "    \"id:10001,phase:1,deny,status:418,log,msg:'custom rule'\"\n"
    )
    await waf_ingress(h, "custom", {"enable-modsecurity": "true", "modsecurity-snippet": rules})
    await expect(h, "/?x=evil", host="custom.test", service="web")
    await expect(h, "/?x=evil12%27", host="custom.test", status=418)
    await expect(h, "/?x=evil12", host="custom.test", service="web")
    await expect(h, SQLI, host="custom.test", service="web")  # no CRS without the annotation

    # Rules libmodsecurity refuses fail nginx -t: that Ingress is set aside, the rest applies.
    await waf_ingress(
        h, "broken", {"enable-modsecurity": "true", "modsecurity-snippet": "SecRuleEngine Maybe"}
    )
    await waf_ingress(h, "next", {})
    await expect(h, NORMAL, host="next.test", service="web", timeout=20)
    await expect(h, "/?x=evil12%27", host="custom.test", status=418)
    await expect(h, NORMAL, host="broken.test", status=404)


def test_a_kept_settings_class_with_the_waf_keeps_the_module_loaded(tmp_path: Path) -> None:
    """--routing lua renders the classes Lua's running table still names: one that turns
    ModSecurity on needs the module even when the new configuration has no WAF left."""
    waf_ingress = ingress(
        "app",
        rules=[rule("app.test", path("/", "web"))],
        annotations={P + "enable-modsecurity": "true"},
    )
    before = build_configuration(snapshot(service("web"), waf_ingress), BuildOptions())
    after = build_configuration(snapshot(service("web")), BuildOptions())
    kept = route_table(before.configuration, RouteContext()).classes
    settings = RenderSettings(routing="lua")
    paths = NginxPaths(tmp_path)
    text = render(after.configuration, settings=settings, paths=paths, generation=2)
    assert "ngx_http_modsecurity_module" not in text
    text = render(
        after.configuration, settings=settings, paths=paths, generation=2, keep_classes=kept
    )
    assert "load_module /usr/share/nginx/modules/ngx_http_modsecurity_module.so;" in text
    assert "modsecurity on;" in text


def test_a_work_dir_modsecurity_cannot_name_refuses_the_waf_not_the_start(
    tmp_path: Path,
) -> None:
    paths = NginxPaths(tmp_path / "work dir")
    NginxProcess(paths=paths).prepare_work_dir()  # no WAF files, no exception
    assert not any(Path(paths.modsecurity).iterdir())
    with pytest.raises(ValueError, match="--work-dir of letters"):
        http_setup(Configuration(), WafDefaults(enable=True), paths.modsecurity)
    good = NginxPaths(tmp_path / "work")
    NginxProcess(paths=good).prepare_work_dir()
    base = (Path(good.modsecurity) / "modsecurity.conf").read_text()
    assert "SecRuleEngine DetectionOnly" in base
    assert f"SecAuditLog {good.logs}/modsec_audit.log" in base
