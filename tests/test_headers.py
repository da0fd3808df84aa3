"""Header rules through nginx: custom-headers, the ConfigMap's add-headers / proxy-set-headers /
hide-headers, the parsed safe subset of configuration-snippet, and annotation risk levels."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import structlog

from ingressd.annotations import Risk
from ingressd.model import ObjectKey
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, running_harness
from tests.support.objects import ingress, path, rule

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"
CONFIGMAP = ObjectKey("ingressd/ingressd-controller")


def config_map(name: str, data: Mapping[str, str], namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": dict(data),
    }


def web(name: str, host: str, **annotations: str) -> dict[str, Any]:
    return ingress(
        name,
        rules=[rule(host, path("/", "web", 80))],
        annotations={P + k.replace("_", "-"): v for k, v in annotations.items()},
    )


def problems(h: Harness) -> dict[tuple[str, str], str]:
    build = h.ingressd.worker.last_build
    assert build is not None
    return {(str(p.key), p.field): p.reason for p in build.problems}


@pytest.fixture
async def h(world_readable_tmp: Path, request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    """A running ingressd reading its options from ConfigMap ingressd/ingressd-controller."""
    async with running_harness(world_readable_tmp, request, configmap=CONFIGMAP) as harness:
        yield harness


SNIPPET = """
# security headers, as people write them
more_set_headers "X-Frame-Options: DENY" 'Content-Security-Policy: default-src $scheme:';
more_set_headers -s "404 500" 'X-Error-Only: yes';
more_clear_headers X-Powered-*;
more_set_input_headers 'X-Seen-Host: $host';
more_clear_input_headers X-Internal-Token;
proxy_set_header X-Request-Start "t=${msec}";
add_header X-Added "one" always;
"""


async def test_snippet_header_rules_apply_without_allow_snippet_annotations(h: Harness) -> None:
    await deploy(h, "web")
    h.write("ing.yaml", web("hdr", "hdr.test", configuration_snippet=SNIPPET))
    resp = await expect(
        h, "/", host="hdr.test", service="web", headers={"X-Internal-Token": "secret"}
    )
    # response headers, at the client
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Content-Security-Policy"] == "default-src http:"
    assert resp.headers["X-Added"] == "one"
    assert "X-Error-Only" not in resp.headers
    # request headers, at the pod
    seen = resp.json()["headers"]
    assert seen["X-Seen-Host"] == "hdr.test"
    assert "X-Internal-Token" not in seen
    assert seen["X-Request-Start"].startswith("t=") and seen["X-Request-Start"][2:3].isdigit()
    # the template's own request headers are still sent
    assert seen["X-Forwarded-Host"] == "hdr.test"
    resp = await expect(h, "/?status=404", host="hdr.test", status=404)
    assert resp.headers["X-Error-Only"] == "yes"
    assert not any(p.startswith("metadata.annotations") for _, p in problems(h))


async def test_a_snippet_line_outside_the_subset_is_refused_and_named(h: Harness) -> None:
    await deploy(h, "web")
    snippet = "more_set_headers 'X-Ok: 1';\naccess_by_lua_block { ngx.exit(200) }\n"
    h.write("ing.yaml", web("bad", "bad.test", configuration_snippet=snippet))
    resp = await expect(h, "/", host="bad.test", service="web")
    assert "X-Ok" not in resp.headers  # the whole snippet is refused, the Ingress serves
    reason = problems(h)["default/bad", f"metadata.annotations[{P}configuration-snippet]"]
    assert "not allowed" in reason and "line 2" in reason and "blocks" in reason


async def test_custom_headers_follow_their_configmap(h: Harness) -> None:
    await deploy(h, "web")
    h.write("headers.yaml", config_map("hdrs", {"X-Custom": "a $literal value", "X-Two": "2"}))
    h.write("ing.yaml", web("c", "c.test", custom_headers="default/hdrs"))
    resp = await expect(h, "/", host="c.test", service="web")
    assert resp.headers["X-Custom"] == "a $literal value"
    assert resp.headers["X-Two"] == "2"

    # the ConfigMap is watched: a change applies
    h.write("headers.yaml", config_map("hdrs", {"X-Custom": "changed"}))

    async def changed() -> None:
        resp = await h.get("/", host="c.test")
        assert resp.headers.get("X-Custom") == "changed" and "X-Two" not in resp.headers

    await h.eventually(changed)

    # a bad entry is a Problem naming the ConfigMap and its key; the paths fail closed
    h.write("headers.yaml", config_map("hdrs", {"X-Custom": "ok", "X-Bad": "a\r\nX-Evil: 1"}))
    await expect(h, "/", host="c.test", status=503)
    found = problems(h)
    assert "control characters" in found["default/hdrs", "data.X-Bad"]
    field = f"metadata.annotations[{P}custom-headers]"
    assert "headers ingressd refuses: X-Bad" in found["default/c", field]


async def test_configmap_add_proxy_set_and_hide_headers(h: Harness) -> None:
    await deploy(h, "web")
    h.write(
        "cm.yaml",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ingressd-controller", "namespace": "ingressd"},
            "data": {
                "add-headers": "ingressd/response-headers",
                "proxy-set-headers": "ingressd/request-headers",
                "hide-headers": "X-Pod-Secret,Server",
            },
        },
        config_map("response-headers", {"X-Global": "g"}, namespace="ingressd"),
        config_map(
            "request-headers",
            {
                "X-To-Pod": "client $remote_addr",
                "X-Forwarded-Proto": "https",
                "X-Bad": "$document_root",
            },
            namespace="ingressd",
        ),
    )
    # a location that sets its own request headers (upstream-vhost) keeps the ConfigMap's too
    with structlog.testing.capture_logs() as logs:
        h.write("ing.yaml", web("g", "g.test"), web("v", "v.test", upstream_vhost="inner.local"))
        for host in ("g.test", "v.test"):
            resp = await expect(h, "/", host=host, service="web")
            assert resp.headers["X-Global"] == "g"
            seen = resp.json()["headers"]
            assert seen["X-To-Pod"] == "client 127.0.0.1"
            assert seen["X-Forwarded-Proto"] == "https"
            assert "X-Bad" not in seen
    ignored = [e for e in logs if e["event"] == "configmap option ignored" and e["key"] == "X-Bad"]
    assert ignored and ignored[0]["configmap"] == "ingressd/request-headers"
    assert "$document_root is not allowed" in ignored[0]["reason"]

    h.write(
        "cm.yaml",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "ingressd-controller", "namespace": "ingressd"},
            "data": {"add-headers": "ingressd/response-headers", "hide-headers": "X-Pod"},
        },
        config_map("response-headers", {"X-Global": "changed"}, namespace="ingressd"),
    )

    async def applied() -> None:
        resp = await h.get("/", host="g.test")
        assert resp.status == 200
        assert resp.headers.get("X-Global") == "changed"
        assert "X-Pod" not in resp.headers
        assert "X-To-Pod" not in resp.json()["headers"]

    await h.eventually(applied)


async def test_critical_annotations_are_refused_below_critical(world_readable_tmp: Path) -> None:
    async with running_harness(
        world_readable_tmp, allow_snippet_annotations=True, annotations_risk_level=Risk.HIGH
    ) as h:
        await deploy(h, "web")
        h.write(
            "ing.yaml",
            web("risky", "r.test", configuration_snippet='expires 1h;\nadd_header X-S "1";'),
            web("alias", "a.test", server_alias="b.test"),
        )
        resp = await expect(h, "/", host="r.test", service="web")
        assert "X-S" not in resp.headers
        reason = problems(h)["default/risky", f"metadata.annotations[{P}configuration-snippet]"]
        assert reason == "too risky: risk level Critical is above --annotations-risk-level High"
        await expect(h, "/", host="b.test", service="web")  # server-alias is High: accepted


@pytest.mark.routing("lua")
async def test_lua_classes_follow_header_rules(h: Harness) -> None:
    await deploy(h, "web")
    one = "more_set_headers 'X-Rule: one';"
    h.write(
        "ing.yaml",
        web("a", "a.test", configuration_snippet=one),
        web("b", "b.test", configuration_snippet=one),
        web("c", "c.test", configuration_snippet="more_set_headers 'X-Rule: two';"),
    )
    for host, value in (("a.test", "one"), ("b.test", "one"), ("c.test", "two")):
        resp = await expect(h, "/", host=host, service="web")
        assert resp.headers["X-Rule"] == value
    conf = (h.options.work_dir / "nginx.conf").read_text()
    assert conf.count('more_set_headers "X-Rule: one";') == 1
    assert conf.count('more_set_headers "X-Rule: two";') == 1
