"""Snippet annotations: refused by default; with --allow-snippet-annotations and
--annotations-risk-level Critical they are written into nginx.conf, and one that fails
``nginx -t`` never replaces the running configuration.  (Snippets made only of header rules are
tests/test_headers.py's.)"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ingressd.annotations import Risk
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness, running_harness
from tests.support.objects import ingress, path, rule

pytestmark = pytest.mark.nginx

P = "nginx.ingress.kubernetes.io/"
SERVER_SNIPPET = 'location = /from-snippet {\n    return 200 "server snippet\\n";\n}\n'


def snippets(name: str, host: str, configuration: str, server: str | None = None) -> dict[str, Any]:
    annotations = {P + "configuration-snippet": configuration}
    if server is not None:
        annotations[P + "server-snippet"] = server
    return ingress(name, rules=[rule(host, path("/", "web", 80))], annotations=annotations)


@pytest.fixture
async def permissive(
    world_readable_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """A harness whose ingressd runs with --allow-snippet-annotations (snippets are Critical)."""
    async with running_harness(
        world_readable_tmp,
        request,
        allow_snippet_annotations=True,
        annotations_risk_level=Risk.CRITICAL,
    ) as h:
        yield h


async def test_snippets_are_refused_by_default(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    # a header rule next to a directive outside the safe subset: the whole snippet is refused
    configuration = 'add_header X-Snippet "yes" always;\nexpires 1h;'
    h.write("ing.yaml", snippets("s", "s.test", configuration, SERVER_SNIPPET))
    resp = await expect(h, "/", host="s.test", service="web")
    assert "X-Snippet" not in resp.headers and "Expires" not in resp.headers
    await expect(h, "/from-snippet", host="s.test", service="web")
    problems = {p.field: p.reason for p in h.ingressd.worker.last_build.problems}  # type: ignore[union-attr]
    for name in ("configuration-snippet", "server-snippet"):
        assert "--allow-snippet-annotations" in problems[f"metadata.annotations[{P}{name}]"]


async def test_allowed_snippets_apply_and_a_broken_one_never_replaces_the_running_config(
    permissive: Harness,
) -> None:
    h = permissive
    await deploy(h, "web")
    h.write(
        "ing.yaml", snippets("s", "s.test", 'add_header X-Snippet "one" always;', SERVER_SNIPPET)
    )
    resp = await expect(h, "/", host="s.test", service="web")
    assert resp.headers["X-Snippet"] == "one"
    resp = await expect(h, "/from-snippet", host="s.test")
    assert resp.body == "server snippet\n"

    await h.settled()  # nginx serves the reload before the worker has counted it
    errors = h.metric("nginx_ingress_controller_errors")
    reloads = h.reloads
    # nginx -t rejects this version: it is quarantined (its previous version keeps serving)
    # and another tenant's new Ingress still applies.
    h.write(
        "ing.yaml",
        snippets("s", "s.test", "no_such_directive on;"),
        ingress("new", rules=[rule("new.test", path("/", "web", 80))]),
    )
    await expect(h, "/", host="new.test", service="web")
    await h.settled()
    assert h.metric("nginx_ingress_controller_errors") == errors + 1
    assert h.metric("ingressd_quarantined_objects") == 1
    build = h.ingressd.worker.last_build
    assert build is not None
    quarantine = {(str(p.key), p.field): p.reason for p in build.problems}
    reason = quarantine["default/s", "spec"]
    assert reason.startswith("quarantined") and "no_such_directive" in reason
    assert "previous version keeps serving" in reason
    resp = await expect(h, "/", host="s.test", service="web")
    assert resp.headers["X-Snippet"] == "one"
    assert h.reloads == reloads + 1
    assert h.ingressd.worker.records[-1].result == "ok"

    # A snippet that would leave its block is refused before nginx sees it.
    h.write("ing.yaml", snippets("s", "s.test", "} server { listen 1; "))
    await h.settled()
    problems = {p.field: p.reason for p in h.ingressd.worker.last_build.problems}  # type: ignore[union-attr]
    assert "closes a block" in problems[f"metadata.annotations[{P}configuration-snippet]"]
    resp = await expect(h, "/", host="s.test", service="web")
    assert "X-Snippet" not in resp.headers
