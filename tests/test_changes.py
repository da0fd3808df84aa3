"""Changes while serving: dynamic updates, reloads, deletions, bad input, nginx failures."""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import stat

import pytest

from ingressd.model import Configuration
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    service,
    service_port,
)

pytestmark = pytest.mark.nginx


async def spread(h: Harness, host: str, requests: int = 60) -> collections.Counter[str | None]:
    seen: collections.Counter[str | None] = collections.Counter()
    for _ in range(requests):
        resp = await h.get("/", host=host)
        assert resp.status == 200, resp.body
        seen[resp.pod] += 1
    return seen


async def test_scaling_endpoints_reaches_new_pods_without_reload(harness: Harness) -> None:
    h = harness
    addresses, port = await h.start_pods(5, prefix="web")
    svc = service("web", ports=[service_port(80, "http", target_port=port)])
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses[:2], port=port, port_name="http")
    )
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    reloads, dynamic = h.reloads, h.dynamic_updates
    assert set(await spread(h, "web.test")) == {"web-0", "web-1"}

    # Scale up 2 -> 5 by rewriting the EndpointSlice.
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses, port=port, port_name="http")
    )

    async def all_five() -> None:
        assert set(await spread(h, "web.test")) == {f"web-{i}" for i in range(5)}

    await h.eventually(all_five)
    assert h.reloads == reloads
    assert h.dynamic_updates > dynamic

    # Scale down to one: the others get no traffic at once.
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses[4:], port=port, port_name="http")
    )

    async def only_last() -> None:
        assert set(await spread(h, "web.test", 10)) == {"web-4"}

    await h.eventually(only_last)
    assert h.reloads == reloads


@pytest.mark.routing("nginx")  # counts the reloads of per-host server blocks
async def test_adding_a_path_reloads_once_and_serves_it(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "api")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    reloads = h.reloads
    h.write(
        "ing.yaml",
        ingress("web", rules=[rule("web.test", path("/", "web"), path("/api", "api"))]),
    )
    await expect(h, "/api/users", host="web.test", service="api")
    await h.settled()
    assert h.reloads == reloads + 1
    # Lua already held web's backend: the reload sent only the new one.
    last = h.ingressd.worker.records[-1]
    assert (last.action, last.backends_posted) == ("reload", 1)
    assert h.metric("ingressd_reloads_total", result="success", reason="locations") >= 1


async def test_deleting_an_ingress_stops_serving_it(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "keep")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    h.write("keep.yaml", ingress("keep", rules=[rule("keep.test", path("/", "keep"))]))
    await expect(h, "/", host="web.test", service="web")
    h.remove("web.yaml")
    await expect(h, "/", host="web.test", status=404)
    await expect(h, "/", host="keep.test", service="keep")
    # Its backend is pruned from the Lua side too (after the reload: wait for the worker, not
    # for nginx); the other one stays.
    await h.settled()
    held = await h.ingressd.nginx.endpoint.get_backends()
    assert {b["name"] for b in held} == {"default-keep-80"}
    # by name: the backend that stays is not sent again
    assert h.ingressd.worker.records[-1].backends_posted == 0


async def test_broken_manifest_leaves_everything_else_serving(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "other")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    # A file that does not parse keeps its last good objects.
    h.write_text("web.yaml", "apiVersion: networking.k8s.io/v1\nkind: Ingress\nspec: [\n")
    h.write("other.yaml", ingress("other", rules=[rule("other.test", path("/", "other"))]))
    await expect(h, "/", host="other.test", service="other")
    await expect(h, "/", host="web.test", service="web")
    # An Ingress with an invalid rule: only that rule is skipped.
    h.write(
        "bad.yaml",
        ingress(
            "bad",
            rules=[
                rule("bad.test", path("/ok", "other"), path("/x;return 200 pwned;", "other")),
                rule("UPPER_case!.test", path("/", "other")),
                rule("fine.test", path("/", "missing-service")),
            ],
        ),
    )
    await expect(h, "/ok", host="bad.test", service="other")
    await expect(h, "/", host="web.test", service="web")
    problems = h.ingressd.worker.last_build.problems if h.ingressd.worker.last_build else ()
    fields = {(p.key, p.field) for p in problems}
    assert ("default/bad", "spec.rules[0].http.paths[1].path") in fields
    assert ("default/bad", "spec.rules[1].host") in fields
    assert any(f.startswith("spec.rules[2].http.paths[0].backend") for k, f in fields)
    conf = (h.options.work_dir / "nginx.conf").read_text()
    assert "pwned" not in conf


async def test_older_ingress_wins_a_host_and_path_conflict(harness: Harness) -> None:
    h = harness
    await deploy(h, "old")
    await deploy(h, "new")
    # The younger one is written first, so arrival order cannot be what decides.
    h.write(
        "new.yaml",
        ingress("new", rules=[rule("same.test", path("/", "new"))], created="2025-06-01T00:00:00Z"),
    )
    await expect(h, "/", host="same.test", service="new")
    h.write(
        "old.yaml",
        ingress("old", rules=[rule("same.test", path("/", "old"))], created="2020-01-01T00:00:00Z"),
    )
    await expect(h, "/", host="same.test", service="old")
    for _ in range(10):
        await expect(h, "/", host="same.test", service="old", timeout=0.5)


async def test_nginx_killed_is_restarted_and_serves_again(harness: Harness) -> None:
    h = harness
    await deploy(h, "web", replicas=2)
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    pid = h.ingressd.nginx.process.pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await expect(h, "/", host="web.test", service="web", timeout=15)
    assert h.ingressd.nginx.process.pid != pid
    assert h.metric("ingressd_nginx_restarts_total") == 1
    # The killed master left its control socket behind: the new one made its own, 0600 too.
    assert stat.S_IMODE(os.stat(h.ingressd.nginx.paths.control_socket).st_mode) == 0o600
    # Endpoints came back through the Lua endpoint: both pods serve.

    async def both() -> None:
        assert set(await spread(h, "web.test", 20)) == {"web-0", "web-1"}

    await h.eventually(both)


@pytest.mark.routing("nginx")  # counts the reloads of per-host server blocks
async def test_config_rejected_by_nginx_test_keeps_the_last_good_one(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    await deploy(h, "api")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    nginx = h.ingressd.nginx
    good_render = nginx.render
    running_before = h.ingressd.worker.running
    errors = h.metric("nginx_ingress_controller_errors")

    def broken_render(config: Configuration) -> str:
        return good_render(config).replace("server_tokens off;", "server_tokens maybe;")

    nginx.render = broken_render  # type: ignore[method-assign]
    h.write(
        "ing.yaml",
        ingress("web", rules=[rule("web.test", path("/", "web"), path("/api", "api"))]),
    )

    async def rejected() -> None:
        assert h.metric("nginx_ingress_controller_errors") == errors + 1

    await h.eventually(rejected)
    assert h.metric("nginx_ingress_controller_config_last_reload_successful") == 0
    assert h.ingressd.worker.running is running_before
    await expect(h, "/", host="web.test", service="web")
    await expect(h, "/api", host="web.test", service="web")  # still the old config
    assert "server_tokens maybe" not in (h.options.work_dir / "nginx.conf").read_text()

    # Pods still follow through Lua while the rejected structure is pending, without
    # another reload attempt.
    addresses, port = await h.start_pods(1, prefix="web2")
    h.write(
        "svc-default-web.yaml",
        service("web", ports=[service_port(80, "http", target_port=port)]),
        endpoint_slice("web", endpoints=addresses, port=port, port_name="http"),
    )
    await expect(h, "/", host="web.test", service="web2")
    assert h.metric("nginx_ingress_controller_errors") == errors + 1

    # The next structural change is tried again, and this time nginx takes it.
    nginx.render = good_render  # type: ignore[method-assign]
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("web.test", path("/", "web"), path("/api", "api"), path("/v2", "api"))],
        ),
    )
    await expect(h, "/api", host="web.test", service="api")
    await expect(h, "/v2", host="web.test", service="api")
    # nginx serves the new config before the worker has seen the new generation answer
    # and recorded the reload: wait for the worker, not for nginx.
    await h.settled()
    assert h.metric("nginx_ingress_controller_config_last_reload_successful") == 1


async def test_health_and_metrics_endpoints_answer(harness: Harness) -> None:
    h = harness
    assert h.session is not None
    base = f"http://127.0.0.1:{h.options.status_port}"
    async with h.session.get(f"{base}/healthz") as resp:
        assert resp.status == 200
    async with h.session.get(f"{base}/metrics") as resp:
        text = await resp.text()
    for name in (
        "nginx_ingress_controller_success{",
        "nginx_ingress_controller_errors{",
        "nginx_ingress_controller_config_hash{",
        "nginx_ingress_controller_config_last_reload_successful{",
        "ingressd_reloads_total{",
        "ingressd_dynamic_updates_total{",
        "ingressd_syncs_total{",
    ):
        assert name in text, name
    async with h.session.get(f"{base}/debug/configuration") as resp:
        model = await resp.json()
    assert model["servers"][0]["hostname"] == "_"
    await h.ingressd.nginx.stop()
    async with h.session.get(f"{base}/healthz") as resp:
        assert resp.status == 503
    await asyncio.sleep(0)
