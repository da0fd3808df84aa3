"""No input kills a task of the controller; a task that dies anyway is restarted and /healthz
tells while it is down or while changes wait for a successful sync."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
import structlog

from ingressd.annotations import AnnotationOptions, Status, parse_annotations
from ingressd.app.supervision import Supervisor
from ingressd.store.events import WatchEvent
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness
from tests.support.objects import ingress, path, rule

P = "nginx.ingress.kubernetes.io/"


@pytest.mark.parametrize(
    "url", ["https://[zqx]/", "http://[::1", "https://[::1]x/", "http://[" + "1" * 5000 + "]/"]
)
@pytest.mark.parametrize("name", ["permanent-redirect", "temporal-redirect"])
def test_a_malformed_bracketed_redirect_host_is_an_invalid_value(name: str, url: str) -> None:
    parsed = parse_annotations("default/web", {P + name: url}, AnnotationOptions())
    (report,) = parsed.report
    assert report.status is Status.INVALID
    assert parsed.settings.redirect is None


def test_a_grammar_that_raises_anything_reports_the_value_invalid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ingressd.annotations import table

    def broken(text: str) -> object:
        raise RecursionError("a grammar's own defect")

    spec = table.ANNOTATIONS["proxy-body-size"]
    monkeypatch.setitem(
        table.ANNOTATIONS, "proxy-body-size", dataclasses.replace(spec, parser=broken)
    )
    parsed = parse_annotations("default/web", {P + "proxy-body-size": "1m"}, AnnotationOptions())
    (report,) = parsed.report
    assert report.status is Status.INVALID
    assert "RecursionError" in report.detail


async def test_supervisor_restarts_a_task_that_dies_and_reports_it_down_meanwhile() -> None:
    runs = 0
    release = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise ValueError("Invalid IPv6 URL")
        await release.wait()

    restarted: list[str] = []
    supervisor = Supervisor(backoff_initial=0.2, on_restart=restarted.append)
    with structlog.testing.capture_logs() as logs:
        supervisor.spawn("sync-worker", flaky)
        await asyncio.sleep(0.05)
        assert supervisor.down == {"sync-worker"}
        await asyncio.sleep(0.3)
    assert supervisor.down == set()
    assert runs == 2 and restarted == ["sync-worker"]
    assert supervisor.restarts == {"sync-worker": 1}
    died = [e for e in logs if e["event"] == "internal task died; restarting"]
    assert died[0]["task"] == "sync-worker" and died[0]["exc_info"] is True
    await supervisor.stop()
    assert runs == 2  # cancelled by stop(), not restarted


async def test_supervisor_does_not_restart_a_task_that_returns() -> None:
    runs = 0

    async def once() -> None:
        nonlocal runs
        runs += 1

    supervisor = Supervisor(backoff_initial=0.01)
    supervisor.spawn("once", once)
    await asyncio.sleep(0.1)
    assert runs == 1 and supervisor.down == set()
    await supervisor.stop()


pytestmark_nginx = pytest.mark.nginx


@pytestmark_nginx
async def test_a_bad_redirect_url_is_a_problem_and_later_changes_still_apply(
    harness: Harness,
) -> None:
    h = harness
    await deploy(h, "web")
    h.write(
        "bad.yaml",
        ingress(
            "bad",
            rules=[rule("bad.test", path("/", "web"))],
            annotations={P + "permanent-redirect": "https://[zqx]/"},
        ),
    )
    h.write("good.yaml", ingress("good", rules=[rule("good.test", path("/", "web"))]))
    await expect(h, "/", host="good.test", service="web")
    # The bad Ingress serves without its invalid annotation; the sync worker still runs.
    await expect(h, "/", host="bad.test", service="web")
    build = h.ingressd.worker.last_build
    assert build is not None
    assert any(
        str(p.key) == "default/bad" and "permanent-redirect" in p.field for p in build.problems
    ), build.problems
    await deploy(h, "later")
    h.write("later.yaml", ingress("later", rules=[rule("later.test", path("/", "later"))]))
    await expect(h, "/", host="later.test", service="later")
    assert h.ingressd.supervisor.down == set()
    assert h.ingressd.unhealthy() is None


@pytestmark_nginx
async def test_a_hostile_manifest_leaves_the_source_reading_later_files(harness: Harness) -> None:
    h = harness
    h.write_text(
        "deep.json",
        '{"kind": "Service", "metadata": {"name": "s"}, "spec": ' + "[" * 1000 + "]" * 1000 + "}",
    )
    h.write_text(
        "digits.json", '{"kind": "Service", "metadata": {"name": "t"}, "n": ' + "9" * 5000 + "}"
    )
    await h.settled()
    source = h.manifests_source
    assert source is not None
    assert set(source.errors) == {h.manifests / "deep.json", h.manifests / "digits.json"}
    await deploy(h, "web")
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    assert h.ingressd.supervisor.down == set()


class _DyingSource:
    """A source whose first ``run`` fails once ``die`` is set; later runs follow nothing."""

    def __init__(self) -> None:
        self.die = asyncio.Event()
        self.runs = 0

    def load_once(self, sink: Callable[[WatchEvent], object]) -> None:
        return None

    async def run(self, sink: Callable[[WatchEvent], object]) -> None:
        self.runs += 1
        if self.runs == 1:
            await self.die.wait()
            raise RuntimeError("source defect")
        await asyncio.Event().wait()


class _DyingHarness(Harness):
    def make_source(self) -> _DyingSource:
        self.dying = _DyingSource()
        return self.dying


@pytestmark_nginx
async def test_healthz_fails_while_a_task_is_down_and_recovers_after_its_restart(
    world_readable_tmp: Path,
) -> None:
    h = _DyingHarness(world_readable_tmp)
    await h.start()
    try:
        assert h.session is not None
        base = f"http://127.0.0.1:{h.options.status_port}/healthz"
        async with h.session.get(base) as resp:
            assert resp.status == 200
        h.ingressd.supervisor.backoff_initial = 2.0
        h.dying.die.set()
        await asyncio.sleep(0.05)
        async with h.session.get(base) as resp:
            assert resp.status == 503
            assert "task down: source" in await resp.text()

        async def healthy() -> None:
            assert h.session is not None
            async with h.session.get(base) as resp:
                assert resp.status == 200, await resp.text()

        await h.eventually(healthy, timeout=5)
        assert h.metric("ingressd_task_restarts_total", task="source") == 1
    finally:
        await h.stop()


@pytestmark_nginx
async def test_healthz_fails_when_changes_wait_too_long_for_a_successful_sync(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness
    assert h.session is not None
    base = f"http://127.0.0.1:{h.options.status_port}/healthz"

    async def crash(batch: object) -> None:
        raise RuntimeError("sync defect")

    controller = h.ingressd
    monkeypatch.setattr(type(controller.worker), "__call__", lambda self, batch: crash(batch))
    monkeypatch.setattr(
        controller, "options", dataclasses.replace(controller.options, sync_stall_timeout=0.3)
    )
    h.write("web.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))

    async def stalled() -> None:
        assert h.session is not None
        async with h.session.get(base) as resp:
            assert resp.status == 503
            assert "no sync has succeeded" in await resp.text()

    await h.eventually(stalled, timeout=5)
    monkeypatch.undo()
    assert controller.supervisor.down == set()  # the worker crashed syncs, it did not die
