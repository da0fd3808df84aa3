"""The sync worker: one SyncBatch in, nginx brought in line with the Store.

    SyncBatch --Store.snapshot()--> Snapshot --build_configuration()--> Configuration (pure;
              incremental through the worker's BuildCache: a one-Ingress change at 10,000
              Ingresses rebuilds one server, ~10 ms; unchanged Servers/Backends are the running
              model's objects, so decide() and the render cache stop at identity checks)
              (the controller's ConfigMap --parse_configmap()--> GlobalOptions: build options and
               nginx.conf settings; settings that differ from the running ones force a reload)
              --decide(new, running)--> Decision (pure)
                 NOTHING    -> done
                 DYNAMIC    -> NginxDriver.apply_dynamic(changed backends)
                 RELOAD     -> NginxDriver.apply_reload(new)
              --success--> running = new; metrics; one log line with decision, reasons, timings

The running model is replaced only after nginx has taken the change.  A configuration that
``nginx -t`` rejects is an error that retrying cannot fix: it is counted and logged, the last good
configuration keeps serving, and the next structural change to the Store triggers a fresh
attempt.  Until then, endpoint changes still reach the running configuration's backends through
Lua: one rejected Ingress never freezes the pods of every other one.  Anything
else that fails (nginx not answering, the Lua endpoint refusing) raises ``RetryableSyncError``
and the syncQueue retries with backoff.
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
from ingressd.nginx.rendering import RenderSettings
from ingressd.pipeline.configmap import parse_configmap, settings_changes
from ingressd.pipeline.diffing import Action, Decision, decide
from ingressd.pipeline.metrics import Metrics
from ingressd.pipeline.queueing import RetryableSyncError, SyncBatch
from ingressd.store.snapshot import Snapshot
from ingressd.store.store import Store

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


_REASON_LABELS = (
    ("first", "initial"),
    ("server", "servers"),
    ("location", "locations"),
    ("certificate", "certificates"),
    ("backend", "backends"),
    ("global", "options"),
)


def reload_reason(decision: Decision) -> str:
    """A low-cardinality label for why a reload happened: the weightiest kind of change."""
    kinds = {reason.split(" ", 1)[0] for reason in decision.reasons}
    for word, label in _REASON_LABELS:
        if word in kinds:
            return label
    return "other"


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
    """Builds, diffs and applies; holds the running model."""

    def __init__(
        self,
        *,
        store: Store,
        options: BuildOptions,
        nginx: NginxDriver,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
        history: int = 200,
        reload_always: bool = False,
        configmap: ObjectKey | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self.store = store
        self.options = options
        #: The controller's ConfigMap (``--configmap``): its options apply to every sync.
        self.configmap = configmap
        #: nginx.conf settings from the command line; the ConfigMap's options go on top.
        self.base_settings: RenderSettings = nginx.settings
        #: The settings the running nginx.conf was rendered with.
        self.running_settings: RenderSettings | None = None
        #: What the last sync refused in the ConfigMap.
        self.option_problems: tuple[Problem, ...] = ()
        self._configmap_seen: object = None
        self.nginx = nginx
        self.metrics = metrics
        self.clock = clock
        self.running: Configuration | None = None
        #: The last build, from which the next one is made (only the changes are assembled).
        self._builds = BuildCache()
        self.last_build: BuildResult | None = None
        #: The Store snapshot the last build was made from.
        self.last_snapshot: Snapshot | None = None
        self.records: collections.deque[SyncRecord] = collections.deque(maxlen=history)
        self.count = 0
        self._known_problems: frozenset[Problem] = frozenset()
        #: Apply every change by a full reload, endpoint changes too (``--reload-always``: the
        #: way controllers without a dynamic path work; for comparisons).
        self.reload_always = reload_always
        #: True while a sync runs.
        self.busy = False
        #: Called after every sync with its batch and record (``ingressd replay``'s timeline).
        self.observers: list[Callable[[SyncBatch, SyncRecord], None]] = []
        #: Set when nginx restarted: its Lua side is empty and needs the whole running set.
        self.resend_all = False
        #: The structure nginx -t rejected last, endpoints blanked; None once a build succeeds.
        self._rejected: Configuration | None = None
        #: ``gc.freeze()`` after the first successful sync (``ingressd.memory``): what the
        #: start-up loaded (every Store object, the caches of the first build) is never walked
        #: by a full collection again, which at 10,000 Ingresses costs 100+ ms each time.
        self._freeze_gc = freeze_gc

    @property
    def first_sync_applied(self) -> bool:
        return self.running is not None

    async def __call__(self, batch: SyncBatch) -> None:
        self.busy = True
        try:
            await self._sync(batch)
        finally:
            self.busy = False

    async def _sync(self, batch: SyncBatch) -> None:
        if self.resend_all:
            self.resend_all = False
            try:
                await self.nginx.reapply(self.running)
            except DynamicUpdateError as exc:
                self.resend_all = True
                raise RetryableSyncError(f"re-applying after nginx restart: {exc}") from exc
            log.info("running configuration re-applied after nginx restart")
        self.count += 1
        t0 = self.clock()
        snapshot = self.store.snapshot()
        configmap = snapshot.config_maps.get(self.configmap) if self.configmap else None
        global_options, option_problems = parse_configmap(configmap)
        self._report_option_problems(configmap, option_problems)
        settings = global_options.render_settings(self.base_settings)
        result = build_configuration(
            snapshot, global_options.build_options(self.options), cache=self._builds
        )
        t1 = self.clock()
        target = result.configuration
        decision = decide(target, self.running)
        if (
            decision.action is Action.RELOAD
            and self.running is not None
            and self._rejected is not None
            and self._rejected == target.without_endpoints()
        ):
            # nginx -t already rejected this structure: keep serving the running one, and let
            # its backends follow their pods until the objects change again.
            target = _with_endpoints_of(self.running, target)
            decision = decide(target, self.running)
        if self.running is not None and self.running_settings != settings:
            decision = _with_settings_changes(decision, settings, self.running_settings)
        t2 = self.clock()
        self.last_build = result
        self.last_snapshot = snapshot
        self._report_problems(result.problems)
        self.metrics.problems.set(len(result.problems))

        posted = 0
        error: str | None = None
        outcome = "ok"
        chash: int | None = None
        retry: RetryableSyncError | None = None
        try:
            if decision.action is Action.DYNAMIC and self.reload_always:
                decision = dataclasses.replace(
                    decision,
                    action=Action.RELOAD,
                    reasons=(*decision.reasons, "reload-always"),
                )
            if decision.action is Action.DYNAMIC:
                changed = target.backends_named(decision.changed_backends)
                try:
                    await self.nginx.apply_dynamic(changed)
                except DynamicUpdateError as exc:
                    self.metrics.dynamic_updates.labels(result="error").inc()
                    raise RetryableSyncError(str(exc)) from exc
                self.metrics.dynamic_updates.labels(result="success").inc()
                posted = len(changed)
            elif decision.action is Action.RELOAD:
                reason = reload_reason(decision)
                self.nginx.settings = settings
                try:
                    reloaded = await self.nginx.apply_reload(target)
                except (ConfigTestError, RenderError) as exc:
                    self.metrics.reload_failed(reason=reason)
                    outcome, error = "rejected", str(exc)
                    self._rejected = target.without_endpoints()
                except (NginxError, DynamicUpdateError) as exc:
                    self.metrics.reload_failed(reason=reason)
                    raise RetryableSyncError(str(exc)) from exc
                else:
                    chash = reloaded.config_hash
                    self.metrics.reload_succeeded(
                        reason=reason,
                        config_hash=reloaded.config_hash,
                        seconds=reloaded.test_seconds + reloaded.reload_seconds,
                    )
                    posted = reloaded.backends_sent
        except RetryableSyncError as exc:
            outcome, error, retry = "error", str(exc), exc
        t3 = self.clock()

        latencies: tuple[float, ...] = ()
        if outcome == "ok":
            if target is result.configuration:
                self._rejected = None
            if self._freeze_gc and self.running is None:
                gc.collect()
                gc.freeze()
            self.running = target
            self.running_settings = settings
            latencies = tuple(t3 - e.received_at for e in batch.events)
            for latency in latencies:
                self.metrics.event_to_applied.observe(latency)
        decision_label = decision.action.value if outcome == "ok" else "error"
        self.metrics.syncs.labels(decision=decision_label).inc()
        self.metrics.sync_duration.labels(decision=decision_label).observe(t3 - t0)
        record = SyncRecord(
            number=self.count,
            started_at=batch.started_at,
            events=len(batch.events),
            causes=batch.causes,
            action=decision.action.value,
            reasons=decision.reasons,
            result=outcome,
            build_seconds=t1 - t0,
            diff_seconds=t2 - t1,
            apply_seconds=t3 - t2,
            error=error,
            backends_posted=posted,
            problems=len(result.problems),
            config_hash=chash,
            event_latencies=latencies,
        )
        self.records.append(record)
        self._log(record)
        for observer in self.observers:
            observer(batch, record)
        if retry is not None:
            raise retry

    def _report_option_problems(self, configmap: object, problems: tuple[Problem, ...]) -> None:
        """Log the ConfigMap's bad keys once per change of the ConfigMap, not once per sync."""
        self.option_problems = problems
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

    @staticmethod
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


def _with_settings_changes(
    decision: Decision, new: RenderSettings, old: RenderSettings | None
) -> Decision:
    """A changed nginx.conf setting is structural: the decision becomes a reload."""
    reasons = settings_changes(new, old) if old is not None else ("global options changed",)
    return Decision(
        Action.RELOAD, tuple(sorted({*decision.reasons, *reasons})), decision.changed_backends
    )
