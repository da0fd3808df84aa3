"""Observability: /metrics names and values, /debug/backends, the reload diff log, the dashboard."""

from __future__ import annotations

import datetime
import json
import logging
import re
import time
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from cryptography import x509
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from ingressd.app import admin
from ingressd.app.runtime import Ingressd, Options
from ingressd.model import Configuration
from ingressd.nginx.applying import ReloadOutcome, conf_diff
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.nginx.rendering import NginxPaths, RenderSettings
from ingressd.nginx.routes import RouteTable
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.queueing import SyncBatch
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.sources.memory import MemorySource
from tests.support.e2e import deploy, expect
from tests.support.harness import Harness
from tests.support.objects import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    self_signed_certificate,
    service,
    service_port,
    tls,
    tls_secret,
)

DASHBOARD = (
    Path(__file__).resolve().parents[1] / "manifests" / "grafana" / "ingressd-dashboard.json"
)

#: Sample names /metrics must expose (histograms by their buckets).
REQUIRED = (
    "ingressd_sync_duration_seconds_bucket",
    "ingressd_event_to_applied_seconds_bucket",
    "ingressd_reload_duration_seconds_bucket",
    "ingressd_update_channel_depth",
    "ingressd_sync_queue_depth",
    "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds",
    "nginx_ingress_controller_ssl_expire_time_seconds",
    "nginx_ingress_controller_nginx_reloads_total",
    "nginx_ingress_controller_nginx_reload_errors_total",
    "nginx_ingress_controller_nginx_last_reload_status",
    "nginx_ingress_controller_nginx_last_reload_milliseconds",
)

Samples = dict[str, list[tuple[dict[str, str], float]]]


def parse(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    found = [
        v for got, v in samples.get(name, []) if all(got.get(k) == w for k, w in labels.items())
    ]
    assert len(found) == 1, f"{name}{labels}: {samples.get(name)}"
    return found[0]


async def scrape(h: Harness) -> tuple[str, Samples]:
    assert h.session is not None
    url = f"http://127.0.0.1:{h.options.status_port}/metrics"
    async with h.session.get(url) as resp:
        assert resp.status == 200
        text = await resp.text()
    return text, parse(text)


async def deploy_tls(h: Harness) -> x509.Certificate:
    """Service ``web`` (2 pods) behind ``secure.test`` with TLS from Secret ``secure-tls``."""
    await deploy(h, "web", 2)
    cert_pem, key_pem = self_signed_certificate("secure.test")
    h.write("tls.yaml", tls_secret("secure-tls", cert_pem=cert_pem, key_pem=key_pem))
    h.write(
        "ing.yaml",
        ingress(
            "web",
            rules=[rule("secure.test", path("/", "web"))],
            tls_entries=[tls("secure.test", secret_name="secure-tls")],
        ),
    )
    await expect(h, "/", host="secure.test", https=True, service="web")
    await h.settled()
    return x509.load_pem_x509_certificate(cert_pem.encode())


# -- /metrics through a real nginx -------------------------------------------------------------


@pytest.mark.nginx
async def test_metrics_exposes_every_required_name_with_live_values(harness: Harness) -> None:
    h = harness
    cert = await deploy_tls(h)
    text, samples = await scrape(h)
    for name in REQUIRED:
        assert re.search(rf"^{name}[{{ ]", text, re.MULTILINE), f"{name} not in /metrics"
    assert value(samples, "ingressd_sync_duration_seconds_count", decision="reload") >= 1
    assert value(samples, "ingressd_event_to_applied_seconds_count") >= 1
    assert value(samples, "ingressd_reload_duration_seconds_count") >= 1
    assert value(samples, "ingressd_update_channel_depth") == 0
    assert value(samples, "ingressd_sync_queue_depth") == 0
    last = value(
        samples, "nginx_ingress_controller_config_last_reload_successful_timestamp_seconds"
    )
    assert time.time() - 60 < last <= time.time()
    expiry = value(
        samples,
        "nginx_ingress_controller_ssl_expire_time_seconds",
        namespace="default",
        secret_name="secure-tls",
        host="secure.test",
        **{"class": "ingressd"},
    )
    assert expiry == cert.not_valid_after_utc.timestamp()
    reloads = value(samples, "nginx_ingress_controller_nginx_reloads_total", reason="other")
    assert reloads == value(samples, "nginx_ingress_controller_success_total") >= 2
    assert value(samples, "nginx_ingress_controller_nginx_reloads_total", reason="endpoints") == 0
    assert value(samples, "nginx_ingress_controller_nginx_reload_errors_total") == 0
    assert value(samples, "nginx_ingress_controller_nginx_last_reload_status") == 1
    assert value(samples, "nginx_ingress_controller_nginx_last_reload_milliseconds") > 0


@pytest.mark.nginx
async def test_endpoint_changes_leave_the_reload_counters_alone(harness: Harness) -> None:
    h = harness
    addresses, port = await h.start_pods(3, prefix="web")
    svc = service("web", ports=[service_port(80, "http", target_port=port)])
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses[:1], port=port, port_name="http")
    )
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    _, before = await scrape(h)
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses, port=port, port_name="http")
    )
    await h.settled()
    _, after = await scrape(h)
    for reason in ("other", "endpoints"):
        name = "nginx_ingress_controller_nginx_reloads_total"
        assert value(after, name, reason=reason) == value(before, name, reason=reason)
    dynamic = "ingressd_dynamic_updates_total"
    ok = {"kind": "backends", "result": "success"}
    assert value(after, dynamic, **ok) == value(before, dynamic, **ok) + 1


# -- /debug/backends ----------------------------------------------------------------------------


@pytest.mark.nginx
async def test_debug_backends_returns_what_the_lua_side_holds(harness: Harness) -> None:
    h = harness
    addresses, port = await h.start_pods(3, prefix="web")
    svc = service("web", ports=[service_port(80, "http", target_port=port)])
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses[:2], port=port, port_name="http")
    )
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    assert h.session is not None
    url = f"http://127.0.0.1:{h.options.status_port}/debug/backends"

    async def held() -> list[dict[str, Any]]:
        assert h.session is not None
        async with h.session.get(url) as resp:
            assert resp.status == 200
            body: list[dict[str, Any]] = await resp.json()
            return body

    def endpoints(backends: list[dict[str, Any]]) -> set[tuple[str, str]]:
        (backend,) = [b for b in backends if b["name"] == "default-web-80"]
        return {(e["address"], str(e["port"])) for e in backend["endpoints"]}

    assert endpoints(await held()) == {(a, str(port)) for a in addresses[:2]}
    # A dynamic update (no reload) changes what Lua holds, and /debug/backends shows it.
    await h.settled()  # the Ingress's reload is counted once the worker has seen it through
    reloads = h.reloads
    h.write(
        "svc.yaml", svc, endpoint_slice("web", endpoints=addresses[1:], port=port, port_name="http")
    )

    async def moved() -> None:
        assert endpoints(await held()) == {(a, str(port)) for a in addresses[1:]}

    await h.eventually(moved)
    assert h.reloads == reloads
    running = h.ingressd.worker.running
    assert running is not None
    assert await held() == json.loads(json.dumps([b.to_lua() for b in running.backends]))


# -- logs -----------------------------------------------------------------------------------------


@contextmanager
def debug_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


@pytest.mark.nginx
@pytest.mark.routing("nginx")  # counts the reloads of per-host server blocks
async def test_a_reload_logs_the_nginx_conf_diff_at_debug_level(harness: Harness) -> None:
    h = harness
    await deploy(h, "web")
    h.write("ing.yaml", ingress("web", rules=[rule("web.test", path("/", "web"))]))
    await expect(h, "/", host="web.test", service="web")
    await h.settled()
    with debug_logs() as logs:
        h.write(
            "ing.yaml",
            ingress("web", rules=[rule("web.test", path("/", "web"), path("/extra", "web"))]),
        )
        await expect(h, "/extra", host="web.test", service="web")
        await h.settled()
    diffs = [e for e in logs if e["event"] == "nginx.conf changed"]
    assert len(diffs) == 1
    assert diffs[0]["log_level"] == "debug"
    added = [line for line in diffs[0]["diff"].splitlines() if line.startswith("+")]
    assert any("/extra" in line for line in added)


def test_conf_diff_is_capped_and_says_so() -> None:
    old = "".join(f"line {i}\n" for i in range(1000))
    new = "".join(f"line {i} changed\n" for i in range(1000))
    diff, truncated = conf_diff(old, new, limit=500)
    assert truncated and len(diff) == 500
    assert diff.startswith("--- running\n+++ new\n")
    small, cut = conf_diff("a\n", "b\n")
    assert not cut and "-a\n+b\n" in small


# -- gauges and counters, without nginx ---------------------------------------------------------


class _UncheckedNginx(DryRunNginx):
    """Takes every configuration without rendering or testing it: no nginx involved."""

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        return ReloadOutcome(0, 0, 0.0, 0.0, 0.0)


async def test_refresh_gauges_reports_queue_depths_and_certificate_expiry(tmp_path: Path) -> None:
    options = Options(work_dir=tmp_path)
    nginx = _UncheckedNginx(settings=options.render_settings(), paths=NginxPaths(tmp_path))
    controller = Ingressd(options, source=MemorySource(), nginx=nginx)
    controller.store.apply(WatchEvent(EventType.ADDED, ingress_class("a")))
    controller.store.apply(WatchEvent(EventType.ADDED, ingress_class("b")))
    controller.queue.enqueue(cause="test")
    controller.refresh_gauges()
    registry = controller.metrics.registry
    assert registry.get_sample_value("ingressd_update_channel_depth") == 2
    assert registry.get_sample_value("ingressd_sync_queue_depth") == 1

    cert_pem, key_pem = self_signed_certificate("a.test", days=10)
    served = ingress(
        "a",
        "shop",
        rules=[rule("a.test", path("/", "web")), rule("b.test", path("/", "web"))],
        tls_entries=[tls("a.test", secret_name="a-tls")],
    )
    for obj in (
        ingress_class(),
        tls_secret("a-tls", "shop", cert_pem=cert_pem, key_pem=key_pem),
        served,
    ):
        controller.store.apply(WatchEvent(EventType.ADDED, obj))
    await controller.worker(SyncBatch((), started_at=0.0))
    controller.refresh_gauges()
    labels = {
        "namespace": "shop",
        "secret_name": "a-tls",
        "host": "a.test",
        "class": "ingressd",
        **controller.metrics.identity,
    }
    not_after = datetime.datetime(2024, 1, 11, tzinfo=datetime.UTC).timestamp()
    assert (
        registry.get_sample_value("nginx_ingress_controller_ssl_expire_time_seconds", labels)
        == not_after
    )
    # A certificate no longer served disappears from the gauge.
    controller.store.apply(WatchEvent(EventType.DELETED, served))
    await controller.worker(SyncBatch((), started_at=0.0))
    controller.refresh_gauges()
    assert (
        registry.get_sample_value("nginx_ingress_controller_ssl_expire_time_seconds", labels)
        is None
    )


def test_nginx_inc_reload_metrics_follow_successes_and_failures() -> None:
    metrics = Metrics()
    metrics.reload_succeeded(reason="servers", config_hash=1, seconds=0.25)
    assert metrics.value("nginx_ingress_controller_nginx_reloads_total", {"reason": "other"}) == 1
    assert metrics.value("nginx_ingress_controller_nginx_last_reload_status") == 1
    assert metrics.value("nginx_ingress_controller_nginx_last_reload_milliseconds") == 250
    metrics.reload_failed(reason="servers")
    assert metrics.value("nginx_ingress_controller_nginx_reload_errors_total") == 1
    assert metrics.value("nginx_ingress_controller_nginx_last_reload_status") == 0
    assert metrics.value("nginx_ingress_controller_nginx_reloads_total", {"reason": "other"}) == 1
    assert (
        metrics.value("nginx_ingress_controller_nginx_reloads_total", {"reason": "endpoints"}) == 0
    )


def test_every_family_is_valid_text_exposition_with_no_created_series() -> None:
    metrics = Metrics(
        identity={"controller_class": "c", "controller_namespace": "ns", "controller_pod": "p"}
    )
    metrics.reload_succeeded(reason="servers", config_hash=7, seconds=0.1)
    metrics.reload_failed(reason="servers")
    metrics.set_leader("ingressd-leader", True)
    text = metrics.exposition().decode()
    families = list(text_string_to_metric_families(text))
    assert families
    # every sample belongs to the family its HELP and TYPE lines name (ingress-nginx's exact
    # names too, which prometheus_client alone would announce as ..._total)
    family = ""
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            family = line.split()[2]
        elif line and not line.startswith("#"):
            assert line.startswith(family), f"{line!r} is not of family {family!r}"
    assert "_created" not in text
    by_name = {f.name: f for f in families}
    success = by_name["nginx_ingress_controller_success"]
    assert success.type == "counter"
    assert [(s.labels, s.value) for s in success.samples] == [
        ({"controller_class": "c", "controller_namespace": "ns", "controller_pod": "p"}, 1.0)
    ]
    for name in (
        "nginx_ingress_controller_config_hash",
        "nginx_ingress_controller_config_last_reload_successful",
        "nginx_ingress_controller_leader_election_status",
    ):
        assert all(s.labels["controller_pod"] == "p" for s in by_name[name].samples), name


# -- the Grafana dashboard ----------------------------------------------------------------------


def test_dashboard_queries_only_metrics_that_ingressd_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set(re.findall(r"\b(?:ingressd|nginx_ingress_controller)_[a-z_]+\b", " ".join(exprs)))
    exposed: set[str] = set()
    for family in text_string_to_metric_families(Metrics().exposition().decode()):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}
        exposed.update(family.name + s for s in suffixes.get(family.type, ("",)))
    assert used, "no metric in the dashboard"
    assert used <= exposed, f"not exposed: {sorted(used - exposed)}"
    titles = " | ".join(p["title"].lower() for p in dashboard["panels"])
    for needed in (
        "reloads vs dynamic updates",
        "sync duration by decision",
        "event to applied",
        "reload errors",
        "last reload status",
        "queue depths",
        "certificate expiry",
    ):
        assert needed in titles
    assert any(
        "histogram_quantile" in e
        and "ingressd_sync_duration_seconds_bucket" in e
        and "decision" in e
        for e in exprs
    )


@pytest.mark.parametrize(
    ("peer", "path", "expose", "status"),
    [
        ("10.1.2.3", "/debug/configuration", False, 403),
        ("10.1.2.3", "/debug/configuration", True, 200),
        ("127.0.0.1", "/debug/configuration", False, 200),
        ("::1", "/debug/routes", False, 200),
        ("10.1.2.3", "/metrics", False, 200),
        ("10.1.2.3", "/healthz", False, 200),
    ],
)
async def test_debug_endpoints_answer_loopback_peers_only_unless_exposed(
    peer: str, path: str, expose: bool, status: int
) -> None:
    controller = SimpleNamespace(options=SimpleNamespace(expose_debug=expose))
    app = web.Application()
    app[admin.CONTROLLER] = controller  # type: ignore[misc]
    transport = SimpleNamespace(get_extra_info=lambda name, default=None: (peer, 40000))
    request = make_mocked_request("GET", path, app=app, transport=transport)

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    response = await admin.debug_on_loopback(request, handler)
    assert response.status == status
