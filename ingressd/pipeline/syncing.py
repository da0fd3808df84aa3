"""The sync worker: one SyncBatch in, nginx brought in line with the Store.

    SyncBatch
      prepare  --Store.snapshot()--> Snapshot --build_configuration()--> BuildResult (pure;
               incremental through the worker's BuildCache: unchanged Servers/Backends are the
               running model's objects, so decide() and the render cache stop at identity checks)
               (the controller's ConfigMap --parse_configmap()--> GlobalOptions: build options
                and nginx.conf settings)
      decide   --decide(new, running)--> Decision (pure); a structure nginx -t already rejected
               keeps the running one; settings that differ from the running ones force a reload
      apply    NOTHING  -> done
               DYNAMIC  -> NginxDriver.apply_dynamic(changed backends)
               RELOAD   -> NginxDriver.apply_reload(new, settings)
               --success--> running = new
      record   metrics; one log line with decision, reasons, timings; SyncRecord
               --SyncOutcome(batch, record, decision, build, snapshot)--> listeners

The running model is replaced only after nginx has taken the change.  A configuration that
``nginx -t`` rejects is an error that retrying cannot fix: it is counted and logged, the last good
configuration keeps serving, and the next structural change to the Store triggers a fresh
attempt.  Until then, endpoint changes still reach the running configuration's backends through
Lua: one rejected Ingress never freezes the pods of every other one.  Anything
else that fails (nginx not answering, the Lua endpoint refusing) raises ``RetryableSyncError``
and the syncQueue retries with backoff.

The worker owns the running model and what the last sync saw; others read them through
properties or get a ``SyncOutcome`` after each sync (``add_listener``).  After nginx restarted,
``nginx_restarted()`` makes the next sync send the running backends to its empty Lua side first.
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from ingressd.build import BuildCache, BuildOptions, BuildResult, build_configuration
from ingressd.model import Configuration, ObjectKey, Problem
from ingressd.nginx.applying import NginxDriver
from ingressd.nginx.dynamic import DynamicUpdateError
from ingressd.nginx.process import ConfigTestError, NginxError
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import RenderSettings, route_context
from ingressd.nginx.routes import RouteTable, route_table
from ingressd.pipeline.configmap import parse_configmap, settings_changes, unusable_options
from ingressd.pipeline.diffing import (
    Action,
    Change,
    Decision,
    LuaRouting,
    decide,
    decide_lua,
    with_options_changes,
)
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.quarantine import Quarantine, isolate, suspects
from ingressd.pipeline.queueing import RetryableSyncError, SyncBatch
from ingressd.store.snapshot import Snapshot
from ingressd.store.store import Store

__all__ = ["SyncListener", "SyncOutcome", "SyncRecord", "SyncWorker"]

log = structlog.get_logger("ingressd.sync")


@dataclass(frozen=True, slots=True)
class SyncRecord:
    """What one sync did: the line of the timeline."""

    number: int
    started_at: float
    events: int
    causes: tuple[str, ...]
    action: str
    reasons: tuple[str, ...]
    result: str
    build_seconds: float
    diff_seconds: float
    apply_seconds: float
    error: str | None = None
    backends_posted: int = 0
    problems: int = 0
    config_hash: int | None = None
    event_latencies: tuple[float, ...] = field(default=(), repr=False)

    @property
    def total_seconds(self) -> float:
        return self.build_seconds + self.diff_seconds + self.apply_seconds


@dataclass(frozen=True, slots=True)
class SyncOutcome:
    """One sync, for those who follow the worker: what it covered, saw, decided and did."""

    batch: SyncBatch
    record: SyncRecord
    #: What was applied (or attempted): ``record.result`` says how it went.
    decision: Decision
    build: BuildResult
    #: The Store snapshot ``build`` was made from.
    snapshot: Snapshot

    @property
    def applied(self) -> bool:
        return self.record.result == "ok"


#: Called after every sync that got as far as building (status, Events, ``ingressd replay``).
SyncListener = Callable[[SyncOutcome], None]


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What one sync builds from: the Store's snapshot, its model and the nginx.conf settings."""

    snapshot: Snapshot
    build: BuildResult
    settings: RenderSettings
    #: The build options the ConfigMap gave (for the candidates quarantine checks).
    options: BuildOptions

    @property
    def lua_routed(self) -> bool:
        return self.settings.routing == "lua"


@dataclass(frozen=True, slots=True)
class _Applied:
    """How applying went: ``ok``, ``rejected`` (nginx -t refused) or ``error`` (``retry``)."""

    result: str = "ok"
    error: str | None = None
    backends_posted: int = 0
    config_hash: int | None = None
    retry: RetryableSyncError | None = None


@dataclass(frozen=True, slots=True)
class _Times:
    started: float
    built: float
    decided: float
    applied: float


#: The kinds a dynamic update applies, the ``kind`` of ``ingressd_dynamic_updates_total``.
_DYNAMIC_KINDS = frozenset({Change.BACKENDS, Change.ROUTES, Change.CERTIFICATES})


def _with_endpoints_of(running: Configuration, new: Configuration) -> Configuration:
    """``running`` with each backend's endpoints taken from ``new`` where it has that backend."""
    fresh = new.backend_map()
    return dataclasses.replace(
        running,
        backends=tuple(
            dataclasses.replace(b, endpoints=fresh[b.name].endpoints) if b.name in fresh else b
            for b in running.backends
        ),
    )


class SyncWorker:
    """Builds, diffs and applies; owns the running model."""

    def __init__(
        self,
        *,
        store: Store,
        options: BuildOptions,
        nginx: NginxDriver,
        metrics: Metrics,
        settings: RenderSettings,
        clock: Callable[[], float] = time.monotonic,
        history: int = 200,
        reload_always: bool = False,
        configmap: ObjectKey | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self._store = store
        self._options = options
        self._nginx = nginx
        self._metrics = metrics
        #: nginx.conf settings from the command line; the ConfigMap's options go on top.
        self._base_settings = settings
        self._clock = clock
        #: The last build, from which the next one is made (only the changes are assembled).
        self._builds = BuildCache()
        #: Apply every change by a full reload, endpoint changes too (``--reload-always``: the
        #: way controllers without a dynamic path work; for comparisons).
        self._reload_always = reload_always
        #: The controller's ConfigMap (``--configmap``): its options apply to every sync.
        self._configmap = configmap
        #: ``gc.freeze()`` after the first successful sync (``ingressd.memory``): what the
        #: start-up loaded (every Store object, the caches of the first build) is never walked
        #: by a full collection again, which at 10,000 Ingresses costs 100+ ms each time.
        self._freeze_gc = freeze_gc
        self._listeners: list[SyncListener] = []
        self._running: Configuration | None = None
        #: The settings the running nginx.conf was rendered with.
        self._running_settings: RenderSettings | None = None
        self._last_build: BuildResult | None = None
        self._records: collections.deque[SyncRecord] = collections.deque(maxlen=history)
        self._count = 0
        self._busy = False
        #: Set when nginx restarted: its Lua side is empty and needs the whole running set.
        self._resend_all = False
        #: The structure nginx -t rejected last, endpoints blanked; None once a build succeeds.
        self._rejected: Configuration | None = None
        self._known_problems: frozenset[Problem] = frozenset()
        #: ``--routing lua``: the route table of the model being decided on (the next one is
        #: made from it).
        self._table: RouteTable | None = None
        #: Ingresses set aside because nginx -t refused the configuration with them.
        self._quarantine = Quarantine()
        #: The snapshot the running model was built from (what changed since: the suspects).
        self._running_snapshot: Snapshot | None = None
        self._configmap_seen: object = None

    # -- what others read ------------------------------------------------------------------------

    @property
    def running(self) -> Configuration | None:
        """The model nginx serves now; None before the first sync is applied."""
        return self._running

    @property
    def running_settings(self) -> RenderSettings | None:
        """The settings the running nginx.conf was rendered with."""
        return self._running_settings

    @property
    def first_sync_applied(self) -> bool:
        return self._running is not None

    @property
    def last_build(self) -> BuildResult | None:
        """The newest build, applied or not (``/debug/problems``)."""
        return self._last_build

    @property
    def records(self) -> tuple[SyncRecord, ...]:
        """The recent syncs, oldest first (``/debug/syncs``)."""
        return tuple(self._records)

    @property
    def count(self) -> int:
        """Syncs started so far."""
        return self._count

    @property
    def busy(self) -> bool:
        """True while a sync runs."""
        return self._busy

    # -- what others tell it ---------------------------------------------------------------------

    def add_listener(self, listener: SyncListener) -> None:
        """Call ``listener`` with the outcome of every sync from now on."""
        self._listeners.append(listener)

    def nginx_restarted(self) -> None:
        """nginx restarted: the next sync first sends the running backends to its Lua side."""
        self._resend_all = True

    # -- one sync --------------------------------------------------------------------------------

    async def __call__(self, batch: SyncBatch) -> None:
        self._busy = True
        try:
            await self._resend_after_restart()
            await self._sync(batch)
        finally:
            self._busy = False

    async def _resend_after_restart(self) -> None:
        if not self._resend_all:
            return
        self._resend_all = False
        try:
            await self._nginx.reapply(self._running)
        except DynamicUpdateError as exc:
            self._resend_all = True
            raise RetryableSyncError(f"re-applying after nginx restart: {exc}") from exc
        log.info("running configuration re-applied after nginx restart")

    async def _sync(self, batch: SyncBatch) -> None:
        self._count += 1
        started = self._clock()
        prepared = self._prepare()
        built = self._clock()
        target, decision = self._decide(prepared)
        decided = self._clock()
        # Known before nginx serves the change: what a request sees, /debug/problems explains.
        self._last_build = prepared.build
        applied = await self._apply(decision, target, prepared.settings)
        if applied.result == "rejected" and await self._quarantine_culprits(prepared, applied):
            # the same sync again without them: everyone else's changes apply now
            prepared = self._prepare()
            target, decision = self._decide(prepared)
            self._last_build = prepared.build
            applied = await self._apply(decision, target, prepared.settings)
        build = prepared.build
        self._report_problems(build.problems)
        self._metrics.problems.set(len(build.problems))
        self._metrics.quarantined.set(len(self._quarantine))
        times = _Times(started, built, decided, self._clock())
        if applied.result == "ok":
            self._commit(target, prepared)
        record = self._record(batch, decision, applied, build, times)
        outcome = SyncOutcome(batch, record, decision, build, prepared.snapshot)
        for listener in self._listeners:
            listener(outcome)
        if applied.retry is not None:
            raise applied.retry

    def _prepare(self) -> _Prepared:
        """Snapshot the Store (less what is quarantined), read the ConfigMap's options, build
        the model."""
        snapshot = self._store.snapshot()
        configmap = snapshot.config_maps.get(self._configmap) if self._configmap else None
        global_options, option_problems = parse_configmap(configmap)
        moot = unusable_options(global_options, self._options, self._configmap)
        self._report_option_problems(configmap, (*option_problems, *moot))
        settings = global_options.render_settings(self._base_settings)
        options = global_options.build_options(self._options)
        snapshot, quarantined = self._quarantine.apply(snapshot)
        build = build_configuration(snapshot, options, cache=self._builds)
        if quarantined:
            build = dataclasses.replace(build, problems=(*build.problems, *quarantined))
        return _Prepared(snapshot, build, settings, options)

    async def _quarantine_culprits(self, prepared: _Prepared, applied: _Applied) -> bool:
        """nginx -t refused the candidate: find the Ingresses that make it fail by bisection
        and quarantine them.  False when none is found (the cause is elsewhere)."""
        snapshot = prepared.snapshot
        candidates = suspects(snapshot, self._running_snapshot)
        if not candidates:
            return False

        async def passes(excluded: set[ObjectKey]) -> bool:
            kept = {k: v for k, v in snapshot.ingresses.items() if k not in excluded}
            trial = build_configuration(
                dataclasses.replace(snapshot, ingresses=kept), prepared.options
            )
            try:
                await self._nginx.check(trial.configuration, prepared.settings)
            except (ConfigTestError, RenderError):
                return False
            return True

        culprits = await isolate(candidates, passes)
        why = (applied.error or "nginx -t failed").strip().splitlines()[0][:300]
        previous = self._running_snapshot.ingresses if self._running_snapshot else {}
        for key in culprits:
            self._quarantine.add(key, snapshot.ingresses[key], why, previous.get(key))
        return bool(culprits)

    def _decide(self, prepared: _Prepared) -> tuple[Configuration, Decision]:
        """What to bring nginx to, and how: the new model, or the running one with the new
        endpoints when nginx -t already rejected the new structure."""
        running = self._running
        target = prepared.build.configuration
        decision = self._compare(target, prepared)
        if (
            decision.action is Action.RELOAD
            and running is not None
            and self._rejected is not None
            and self._rejected == target.without_endpoints()
        ):
            # nginx -t already rejected this structure: keep serving the running one, and let
            # its backends follow their pods until the objects change again.
            target = _with_endpoints_of(running, target)
            decision = self._compare(target, prepared)
        old_settings = self._running_settings
        if running is not None and old_settings != prepared.settings:
            reasons = (
                settings_changes(prepared.settings, old_settings)
                if old_settings is not None
                else ("global options changed",)
            )
            decision = with_options_changes(decision, reasons)
        if decision.action is Action.DYNAMIC and self._reload_always:
            decision = dataclasses.replace(
                decision, action=Action.RELOAD, reasons=(*decision.reasons, "reload-always")
            )
        return target, decision

    def _compare(self, target: Configuration, prepared: _Prepared) -> Decision:
        """``decide`` (or, with ``--routing lua``, ``decide_lua`` against what Lua holds)."""
        if not prepared.lua_routed:
            return decide(target, self._running)
        lua = LuaRouting(
            # from the last table made: only the servers the build changed make new entries
            new=route_table(target, route_context(prepared.settings), self._table),
            held=self._nginx.routes_held,
            rendered=self._nginx.rendered_classes,
        )
        self._table = lua.new
        return decide_lua(target, self._running, lua)

    async def _apply(
        self, decision: Decision, target: Configuration, settings: RenderSettings
    ) -> _Applied:
        """Bring nginx to ``target`` as ``decision`` says; a retryable failure is returned."""
        try:
            if decision.action is Action.DYNAMIC:
                return await self._apply_dynamic(target, decision)
            if decision.action is Action.RELOAD:
                return await self._apply_reload(target, decision, settings)
        except RetryableSyncError as exc:
            return _Applied("error", error=str(exc), retry=exc)
        return _Applied()

    async def _apply_dynamic(self, target: Configuration, decision: Decision) -> _Applied:
        try:
            if self._table is not None and self._base_settings.routing == "lua":
                posted = await self._nginx.apply_lua(
                    target,
                    self._table,
                    backends=decision.changed_backends,
                    routes=decision.changed_routes,
                    removed=decision.removed_routes,
                    certificates=decision.certificates_changed,
                )
            else:
                changed = target.backends_named(decision.changed_backends)
                await self._nginx.apply_dynamic(changed)
                posted = len(changed)
        except DynamicUpdateError as exc:
            self._count_dynamic(decision, result="error")
            raise RetryableSyncError(str(exc)) from exc
        self._count_dynamic(decision, result="success")
        return _Applied(backends_posted=posted)

    def _count_dynamic(self, decision: Decision, *, result: str) -> None:
        for change in decision.changes & _DYNAMIC_KINDS:
            self._metrics.dynamic_updates.labels(kind=change.value, result=result).inc()

    async def _apply_reload(
        self, target: Configuration, decision: Decision, settings: RenderSettings
    ) -> _Applied:
        reason = decision.change.value
        try:
            reloaded = await self._nginx.apply_reload(
                target, settings, table=self._table if settings.routing == "lua" else None
            )
        except (ConfigTestError, RenderError) as exc:
            self._metrics.reload_failed(reason=reason)
            self._rejected = target.without_endpoints()
            return _Applied("rejected", error=str(exc))
        except (NginxError, DynamicUpdateError) as exc:
            self._metrics.reload_failed(reason=reason)
            raise RetryableSyncError(str(exc)) from exc
        self._metrics.reload_succeeded(
            reason=reason,
            config_hash=reloaded.config_hash,
            seconds=reloaded.test_seconds + reloaded.reload_seconds,
        )
        return _Applied(backends_posted=reloaded.backends_sent, config_hash=reloaded.config_hash)

    def _commit(self, target: Configuration, prepared: _Prepared) -> None:
        """nginx took ``target``: it is the running model now."""
        if target is prepared.build.configuration:
            self._rejected = None
        if self._freeze_gc and self._running is None:
            gc.collect()
            gc.freeze()
        self._running = target
        self._running_settings = prepared.settings
        self._running_snapshot = prepared.snapshot

    def _record(
        self,
        batch: SyncBatch,
        decision: Decision,
        applied: _Applied,
        build: BuildResult,
        times: _Times,
    ) -> SyncRecord:
        """Count the sync in the metrics, log its line, keep its record."""
        ok = applied.result == "ok"
        latencies = tuple(times.applied - e.received_at for e in batch.events) if ok else ()
        for latency in latencies:
            self._metrics.event_to_applied.observe(latency)
        label = decision.action.value if ok else "error"
        self._metrics.syncs.labels(decision=label).inc()
        self._metrics.sync_duration.labels(decision=label).observe(times.applied - times.started)
        record = SyncRecord(
            number=self._count,
            started_at=batch.started_at,
            events=len(batch.events),
            causes=batch.causes,
            action=decision.action.value,
            reasons=decision.reasons,
            result=applied.result,
            build_seconds=times.built - times.started,
            diff_seconds=times.decided - times.built,
            apply_seconds=times.applied - times.decided,
            error=applied.error,
            backends_posted=applied.backends_posted,
            problems=len(build.problems),
            config_hash=applied.config_hash,
            event_latencies=latencies,
        )
        self._records.append(record)
        _log(record)
        return record

    # -- logging what changed --------------------------------------------------------------------

    def _report_option_problems(self, configmap: object, problems: tuple[Problem, ...]) -> None:
        """Log the ConfigMap's bad keys once per change of the ConfigMap, not once per sync."""
        data = configmap.get("data") if isinstance(configmap, dict) else None
        if data == self._configmap_seen:
            return
        self._configmap_seen = data
        for problem in problems:
            log.warning(
                "configmap option ignored",
                configmap=problem.key,
                key=problem.field.partition(".")[2],
                reason=problem.reason,
            )

    def _report_problems(self, problems: tuple[Problem, ...]) -> None:
        """Log each problem once, when it appears, and once more when it is gone."""
        current = frozenset(problems)
        for problem in sorted(current - self._known_problems, key=str):
            log.warning(
                "object skipped",
                kind=problem.kind,
                object=problem.key,
                field=problem.field,
                reason=problem.reason,
            )
        for problem in sorted(self._known_problems - current, key=str):
            log.info("problem resolved", kind=problem.kind, object=problem.key, field=problem.field)
        self._known_problems = current


def _log(record: SyncRecord) -> None:
    fields = dict(
        sync=record.number,
        decision=record.action,
        result=record.result,
        events=record.events,
        reasons=list(record.reasons),
        build_ms=round(record.build_seconds * 1000, 2),
        diff_ms=round(record.diff_seconds * 1000, 2),
        apply_ms=round(record.apply_seconds * 1000, 2),
        backends_posted=record.backends_posted,
    )
    if record.result == "ok":
        if record.action == "nothing":
            log.debug("sync", **fields)
        else:
            log.info("sync", **fields)
    else:
        log.error("sync", error=record.error, **fields)
