"""The sync worker on its own: a Store, a recording nginx driver, no nginx process.

Store (objects from ingressd.testing) --> SyncWorker --> RecordingNginx (calls kept)
                                                     --> Metrics, SyncRecord, SyncOutcome
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from structlog.testing import capture_logs

from ingressd.build.building import BuildOptions
from ingressd.model import Backend, BackendName, Configuration, ObjectKey
from ingressd.nginx.applying import ReloadOutcome
from ingressd.nginx.dynamic import DynamicUpdateError
from ingressd.nginx.process import ConfigTestError, NginxError
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import RenderSettings, route_context
from ingressd.nginx.routes import RouteTable, route_table
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.diffing import Change
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.queueing import RetryableSyncError, SyncBatch, SyncTask
from ingressd.pipeline.syncing import SyncOutcome, SyncWorker
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.snapshot import KubeObject
from ingressd.store.store import Store
from tests.support.objects import endpoint_slice, ingress, ingress_class, path, rule, service
from tests.support.traceobjects import config_map

WEB = BackendName("default-web-80")
API = BackendName("default-api-80")
CONFIGMAP = ObjectKey("ingressd/ingressd-controller")
#: The nginx-mode renderer: these tests count reloads for hosts and paths (Lua routes them).
BASE_SETTINGS = RenderSettings(http_port=8080, routing="nginx")


@dataclass
class RecordingNginx:
    """An ``NginxDriver`` that keeps every call and serves nothing; ``fail_*`` make it raise."""

    dynamic: list[tuple[BackendName, ...]] = field(default_factory=list)
    reloads: list[tuple[Configuration, RenderSettings]] = field(default_factory=list)
    reapplied: list[Configuration | None] = field(default_factory=list)
    fail_dynamic: Exception | None = None
    fail_reload: Exception | None = None
    fail_reapply: Exception | None = None

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None:
        if self.fail_dynamic is not None:
            raise self.fail_dynamic
        self.dynamic.append(tuple(b.name for b in backends))

    #: nginx -t refuses any configuration serving one of these hosts (as a poisoned Ingress).
    refused_hosts: set[str] = field(default_factory=set)
    checks: int = 0

    def _refuse(self, config: Configuration) -> None:
        bad = self.refused_hosts & {s.hostname for s in config.servers}
        if bad:
            raise ConfigTestError(f"[emerg] invalid value in nginx.conf (host {sorted(bad)[0]})")

    async def check(self, config: Configuration, settings: RenderSettings) -> None:
        self.checks += 1
        if isinstance(self.fail_reload, ConfigTestError | RenderError):
            raise self.fail_reload  # it refuses every configuration, as nginx -t would
        self._refuse(config)

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        if self.fail_reload is not None:
            raise self.fail_reload
        self._refuse(config)
        self.reloads.append((config, settings))
        if settings.routing == "lua":
            table = route_table(config, route_context(settings))
            self.rendered = table.class_ids | self.rendered
            self.held = table
        return ReloadOutcome(
            config_hash=len(self.reloads),
            conf_bytes=0,
            render_seconds=0.0,
            test_seconds=0.0,
            reload_seconds=0.0,
            backends_sent=len(config.backends),
        )

    async def reapply(self, config: Configuration | None) -> None:
        if self.fail_reapply is not None:
            raise self.fail_reapply
        self.reapplied.append(config)

    # --routing lua: what Lua would hold, as the real driver tracks it
    held: RouteTable | None = None
    rendered: frozenset[str] = frozenset()
    routes_sent: list[tuple[str, ...]] = field(default_factory=list)
    routes_removed: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def routes_held(self) -> RouteTable | None:
        return self.held

    @property
    def rendered_classes(self) -> frozenset[str]:
        return self.rendered

    async def apply_lua(
        self,
        config: Configuration,
        table: RouteTable,
        *,
        backends: Sequence[BackendName],
        routes: Sequence[str],
        removed: Sequence[str],
        certificates: bool,
    ) -> int:
        if self.fail_dynamic is not None:
            raise self.fail_dynamic
        self.dynamic.append(tuple(backends))
        self.routes_sent.append(tuple(routes))
        self.routes_removed.append(tuple(removed))
        self.held = table
        return len(backends)


@dataclass
class Rig:
    """A Store, a worker over it, its driver and metrics, and the outcomes it reported."""

    store: Store
    nginx: RecordingNginx
    metrics: Metrics
    worker: SyncWorker
    outcomes: list[SyncOutcome]

    def apply(self, *objects: KubeObject, type: EventType = EventType.ADDED) -> None:
        for obj in objects:
            self.store.apply(WatchEvent(type, obj))

    async def sync(self) -> SyncOutcome:
        await self.worker(SyncBatch((SyncTask(stamp=0.0, cause="test"),), started_at=0.0))
        return self.outcomes[-1]

    def reloads(self, result: str, reason: str) -> float:
        return self.metrics.value("ingressd_reloads_total", {"result": result, "reason": reason})


def make_rig(**options: Any) -> Rig:
    store = Store(channel=UpdateChannel(), configmap=options.get("configmap"))
    nginx = RecordingNginx()
    metrics = Metrics()
    worker = SyncWorker(
        store=store,
        options=BuildOptions(),
        nginx=nginx,
        metrics=metrics,
        settings=BASE_SETTINGS,
        **options,
    )
    rig = Rig(store, nginx, metrics, worker, [])
    worker.add_listener(rig.outcomes.append)
    return rig


def slice_of(service_name: str, *addresses: str) -> KubeObject:
    return endpoint_slice(service_name, endpoints=list(addresses))


WWW = ingress("web", rules=[rule("www.example.com", path("/", "web"))])
API_INGRESS = ingress("api", rules=[rule("api.example.com", path("/", "api"))])


async def running_rig(**options: Any) -> Rig:
    """Two hosts, two Services with a pod each, the first sync applied."""
    rig = make_rig(**options)
    rig.apply(
        ingress_class(),
        service("web"),
        service("api"),
        slice_of("web", "10.0.0.1"),
        slice_of("api", "10.0.1.1"),
        WWW,
        API_INGRESS,
    )
    await rig.sync()
    return rig


def endpoints_of(config: Configuration | None, name: BackendName) -> list[str]:
    assert config is not None
    return [e.address for e in config.backend_map()[name].endpoints]


async def test_first_sync_reloads_with_every_backend_and_the_base_settings() -> None:
    rig = await running_rig()
    [(config, settings)] = rig.nginx.reloads
    assert [b.name for b in config.backends] == [API, WEB]
    assert settings == BASE_SETTINGS
    assert rig.worker.running is config
    assert rig.worker.running_settings == BASE_SETTINGS
    assert rig.reloads("success", "initial") == 1
    record = rig.worker.records[-1]
    assert (record.action, record.result, record.reasons) == ("reload", "ok", ("first sync",))
    assert (record.backends_posted, record.config_hash) == (2, 1)


async def test_endpoint_only_change_is_applied_dynamically_with_only_the_changed_backends() -> None:
    rig = await running_rig()
    rig.apply(slice_of("web", "10.0.0.1", "10.0.0.2"), type=EventType.MODIFIED)
    outcome = await rig.sync()
    assert rig.nginx.dynamic == [(WEB,)]
    assert len(rig.nginx.reloads) == 1
    assert endpoints_of(rig.worker.running, WEB) == ["10.0.0.1", "10.0.0.2"]
    assert (outcome.record.action, outcome.record.result) == ("dynamic", "ok")
    assert outcome.record.reasons == ("backend default-web-80 endpoints 1 -> 2",)
    assert outcome.record.backends_posted == 1
    assert rig.metrics.value("ingressd_dynamic_updates_total", {"result": "success"}) == 1
    assert rig.metrics.value("ingressd_syncs_total", {"decision": "dynamic"}) == 1


@pytest.mark.parametrize(
    ("change", "reason", "kind"),
    [
        (
            ingress("docs", rules=[rule("docs.example.com", path("/", "web"))]),
            "server docs.example.com added",
            "servers",
        ),
        (
            ingress("web", rules=[rule("www.example.com", path("/", "web"), path("/v2", "api"))]),
            "location www.example.com /v2 (Prefix) added",
            "locations",
        ),
    ],
    ids=["new-host", "new-path"],
)
async def test_structural_change_reloads_and_is_counted_under_its_kind(
    change: KubeObject, reason: str, kind: str
) -> None:
    rig = await running_rig()
    rig.apply(change)
    outcome = await rig.sync()
    assert len(rig.nginx.reloads) == 2
    assert rig.worker.running is rig.nginx.reloads[-1][0]
    assert outcome.record.action == "reload"
    assert reason in outcome.record.reasons
    assert rig.reloads("success", kind) == 1
    assert rig.nginx.dynamic == []


@pytest.mark.parametrize(
    "refusal",
    [ConfigTestError("nginx: [emerg] unknown directive"), RenderError("unsafe value")],
    ids=["nginx-t", "render"],
)
async def test_a_refused_configuration_keeps_the_running_one_and_counts_a_failed_reload(
    refusal: Exception,
) -> None:
    rig = await running_rig()
    running = rig.worker.running
    rig.nginx.fail_reload = refusal
    rig.apply(ingress("docs", rules=[rule("docs.example.com", path("/", "web"))]))
    outcome = await rig.sync()  # no RetryableSyncError: retrying cannot help
    assert rig.worker.running is running
    assert (outcome.record.result, outcome.record.error) == ("rejected", str(refusal))
    assert not outcome.applied
    assert rig.reloads("error", "servers") == 1
    assert rig.metrics.value("ingressd_syncs_total", {"decision": "error"}) == 1


async def test_while_a_structure_is_refused_endpoint_changes_reach_the_running_one() -> None:
    rig = await running_rig()
    rig.nginx.fail_reload = ConfigTestError("nginx: [emerg] unknown directive")
    rig.apply(ingress("docs", rules=[rule("docs.example.com", path("/", "web"))]))
    await rig.sync()
    rig.apply(slice_of("web", "10.0.0.7"), type=EventType.MODIFIED)
    outcome = await rig.sync()
    assert (outcome.record.action, outcome.record.result) == ("dynamic", "ok")
    assert rig.nginx.dynamic == [(WEB,)]
    running = rig.worker.running
    assert running is not None
    assert endpoints_of(running, WEB) == ["10.0.0.7"]
    assert "docs.example.com" not in {s.hostname for s in running.servers}


async def test_dynamic_update_error_raises_retryable_sync_error_and_keeps_running() -> None:
    rig = await running_rig()
    running = rig.worker.running
    rig.nginx.fail_dynamic = DynamicUpdateError("Lua endpoint refused: 503")
    rig.apply(slice_of("web", "10.0.0.9"), type=EventType.MODIFIED)
    with pytest.raises(RetryableSyncError, match="503"):
        await rig.sync()
    assert rig.worker.running is running
    outcome = rig.outcomes[-1]  # listeners hear of the failed sync too
    assert (outcome.record.action, outcome.record.result) == ("dynamic", "error")
    assert rig.metrics.value("ingressd_dynamic_updates_total", {"result": "error"}) == 1
    assert rig.metrics.value("ingressd_syncs_total", {"decision": "error"}) == 1


async def test_nginx_failing_a_reload_raises_retryable_sync_error_and_counts_it() -> None:
    rig = await running_rig()
    rig.nginx.fail_reload = NginxError("reload timed out")
    rig.apply(ingress("docs", rules=[rule("docs.example.com", path("/", "web"))]))
    with pytest.raises(RetryableSyncError, match="timed out"):
        await rig.sync()
    assert rig.outcomes[-1].record.result == "error"
    assert rig.reloads("error", "servers") == 1


async def test_nothing_changed_applies_nothing() -> None:
    rig = await running_rig()
    outcome = await rig.sync()
    assert (len(rig.nginx.reloads), rig.nginx.dynamic) == (1, [])
    assert (outcome.record.action, outcome.record.result) == ("nothing", "ok")
    assert outcome.record.reasons == ()
    assert rig.metrics.value("ingressd_syncs_total", {"decision": "nothing"}) == 1


async def test_reload_always_reloads_an_endpoint_change_counted_as_backends() -> None:
    rig = await running_rig(reload_always=True)
    rig.apply(slice_of("web", "10.0.0.2"), type=EventType.MODIFIED)
    outcome = await rig.sync()
    assert rig.nginx.dynamic == []
    assert len(rig.nginx.reloads) == 2
    assert outcome.record.reasons == (
        "backend default-web-80 endpoints changed (1)",
        "reload-always",
    )
    assert rig.reloads("success", "backends") == 1


async def test_changed_configmap_settings_are_passed_to_the_reload_counted_as_options() -> None:
    rig = await running_rig(configmap=CONFIGMAP)
    rig.apply(config_map("ingressd-controller", "ingressd", {"proxy-body-size": "8m"}))
    outcome = await rig.sync()
    settings = rig.nginx.reloads[-1][1]
    assert settings.proxy_body_size == "8m"
    assert settings.http_port == BASE_SETTINGS.http_port
    assert rig.worker.running_settings == settings
    assert outcome.record.reasons == ("global options changed: proxy-body-size 1m -> 8m",)
    assert rig.reloads("success", "options") == 1


async def test_after_nginx_restarted_the_next_sync_first_resends_the_running_backends() -> None:
    rig = await running_rig()
    rig.worker.nginx_restarted()
    rig.nginx.fail_reapply = DynamicUpdateError("connection refused")
    syncs = rig.worker.count
    with pytest.raises(RetryableSyncError, match="re-applying after nginx restart"):
        await rig.sync()
    assert rig.worker.count == syncs  # no sync ran: nothing built, nothing recorded
    rig.nginx.fail_reapply = None
    await rig.sync()  # the retry resends
    assert rig.nginx.reapplied == [rig.worker.running]
    await rig.sync()
    assert len(rig.nginx.reapplied) == 1  # once


async def test_listeners_get_one_outcome_with_record_build_snapshot_and_decision() -> None:
    rig = await running_rig()
    rig.apply(ingress("docs", rules=[rule("docs.example.com", path("/", "web"))]))
    outcome = await rig.sync()
    assert len(rig.outcomes) == 2
    assert outcome.record is rig.worker.records[-1]
    assert outcome.build is rig.worker.last_build
    assert outcome.build.configuration is rig.worker.running
    assert ObjectKey("default/docs") in outcome.snapshot.ingresses
    assert outcome.decision.reasons == outcome.record.reasons
    assert [t.cause for t in outcome.batch.tasks] == ["test"]
    assert outcome.applied


async def test_each_sync_logs_one_line_with_decision_reasons_and_timings() -> None:
    rig = await running_rig()
    rig.apply(slice_of("web", "10.0.0.2"), type=EventType.MODIFIED)
    with capture_logs() as logs:
        await rig.sync()
    [line] = [e for e in logs if e["event"] == "sync"]
    assert line["log_level"] == "info"
    assert {k: line[k] for k in ("sync", "decision", "result", "events", "reasons")} == {
        "sync": 2,
        "decision": "dynamic",
        "result": "ok",
        "events": 0,
        "reasons": ["backend default-web-80 endpoints changed (1)"],
    }
    assert {"build_ms", "diff_ms", "apply_ms", "backends_posted"} <= line.keys()


# --- --routing lua ----------------------------------------------------------------------------

LUA_SETTINGS = dataclasses.replace(BASE_SETTINGS, routing="lua")


async def lua_rig() -> Rig:
    rig = make_rig()
    rig.worker = SyncWorker(
        store=rig.store,
        options=BuildOptions(),
        nginx=rig.nginx,
        metrics=rig.metrics,
        settings=LUA_SETTINGS,
    )
    rig.worker.add_listener(rig.outcomes.append)
    rig.apply(ingress_class(), service("web"), service("api"), slice_of("web", "10.0.0.1"))
    rig.apply(slice_of("api", "10.0.1.1"), WWW)
    await rig.sync()
    return rig


async def test_lua_routing_serves_a_new_host_of_an_existing_class_without_a_reload() -> None:
    rig = await lua_rig()
    assert len(rig.nginx.reloads) == 1
    rig.apply(API_INGRESS)
    outcome = await rig.sync()
    assert len(rig.nginx.reloads) == 1
    assert (outcome.record.action, outcome.record.result) == ("dynamic", "ok")
    assert outcome.decision.changes == {Change.ROUTES, Change.BACKENDS}
    assert outcome.decision.changed_routes == ("api.example.com",)
    assert rig.nginx.routes_sent[-1] == ("api.example.com",)
    assert rig.nginx.dynamic[-1] == (API,)
    held = rig.nginx.routes_held
    assert held is not None and "api.example.com" in held.entries
    assert (
        rig.metrics.value("ingressd_dynamic_updates_total", {"kind": "routes", "result": "success"})
        == 1
    )


async def test_lua_routing_removes_the_entry_of_a_host_that_is_gone() -> None:
    rig = await lua_rig()
    rig.apply(WWW, type=EventType.DELETED)
    outcome = await rig.sync()
    assert len(rig.nginx.reloads) == 1
    assert outcome.decision.removed_routes == ("www.example.com",)
    assert rig.nginx.routes_removed[-1] == ("www.example.com",)
    assert "routes of www.example.com removed" in outcome.record.reasons


async def test_lua_routing_reloads_for_a_new_settings_class_only() -> None:
    rig = await lua_rig()
    rig.apply(
        ingress(
            "big",
            rules=[rule("big.example.com", path("/", "api"))],
            annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        )
    )
    outcome = await rig.sync()
    assert len(rig.nginx.reloads) == 2
    assert outcome.decision.change is Change.LOCATIONS
    assert any(r.startswith("settings class c") for r in outcome.record.reasons)
    # the same class again: no reload
    rig.apply(
        ingress(
            "big2",
            rules=[rule("big2.example.com", path("/", "api"))],
            annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
        )
    )
    await rig.sync()
    assert len(rig.nginx.reloads) == 2


# --- quarantine -----------------------------------------------------------------------------


async def test_an_ingress_nginx_refuses_is_quarantined_and_everyone_else_applies() -> None:
    rig = await running_rig()
    rig.nginx.refused_hosts = {"poison.example.com"}
    poison = ingress("poison", rules=[rule("poison.example.com", path("/", "web"))])
    others = [
        ingress(f"t{i}", rules=[rule(f"t{i}.example.com", path("/", "api"))]) for i in range(6)
    ]
    rig.apply(poison, *others)
    outcome = await rig.sync()
    assert (outcome.record.action, outcome.record.result) == ("reload", "ok")
    running = rig.worker.running
    assert running is not None
    hosts = {s.hostname for s in running.servers}
    assert "poison.example.com" not in hosts
    assert {f"t{i}.example.com" for i in range(6)} <= hosts
    quarantined = [p for p in outcome.build.problems if p.reason.startswith("quarantined")]
    assert [(p.kind, str(p.key)) for p in quarantined] == [("Ingress", "default/poison")]
    assert "host poison.example.com" in quarantined[0].reason
    assert rig.metrics.value("ingressd_quarantined_objects") == 1
    assert rig.nginx.checks <= 6  # bisection over 7 suspects, not one check each
    # a later change of another tenant applies at once, the poisoned one stays out
    rig.apply(ingress("late", rules=[rule("late.example.com", path("/", "web"))]))
    outcome = await rig.sync()
    assert outcome.record.result == "ok"
    assert "late.example.com" in {s.hostname for s in rig.worker.running.servers}  # type: ignore[union-attr]
    # fixed: it leaves quarantine and is served
    rig.nginx.refused_hosts = set()
    rig.apply(
        ingress("poison", rules=[rule("poison.example.com", path("/", "web"))]),
        type=EventType.MODIFIED,
    )
    outcome = await rig.sync()
    assert "poison.example.com" in {s.hostname for s in rig.worker.running.servers}  # type: ignore[union-attr]
    assert rig.metrics.value("ingressd_quarantined_objects") == 0


async def test_a_rejection_no_ingress_explains_keeps_the_running_model() -> None:
    rig = await running_rig()
    rig.nginx.refused_hosts = {"www.example.com"}  # an Ingress that did not change
    rig.apply(ingress("new", rules=[rule("new.example.com", path("/", "web"))]))
    outcome = await rig.sync()
    assert outcome.record.result == "rejected"
    assert rig.metrics.value("ingressd_quarantined_objects") == 0
