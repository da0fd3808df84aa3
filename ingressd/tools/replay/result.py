"""Replay results: what a replay collected, per event and per sync, and the summary of it.

    Replay (replaying) --per trace event--> EventLine  (what the Store made of it;
                                                                 later the sync that applied it)
                                --per sync---------> SyncLine   (events covered, decision,
                                                                 result, reasons, durations)
    running Configuration + settings --conf_sha256(), config_hash()--> final config hash
    --> ReplayResult --summary()----> outcomes, decisions, reload share, percentiles()
                     --decisions()--> what two replays of one trace must agree on
        --> ingressd.tools.replay.report (timeline, summary, JSON), ingressd.tools.replay.plot (PNG)

Plain values only: nothing here runs the pipeline.  The config hash renders nginx.conf with a
fixed work dir (``HASH_WORK_DIR``) and generation 0, so that neither shows in it; see
``ingressd.tools.replay.replaying`` for when two replays give the same one.
"""

from __future__ import annotations

import collections
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingressd.model import Configuration
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.store.sources.trace import TraceError

__all__ = [
    "HASH_WORK_DIR",
    "OUTCOMES",
    "EventLine",
    "ReplayResult",
    "SyncLine",
    "conf_sha256",
    "config_hash",
    "percentiles",
]

#: Work dir written into the nginx.conf whose hash the summary gives (never created).
HASH_WORK_DIR = Path("/var/lib/ingressd")

#: Event outcomes: the Store skipped its kind, dropped it (no name), found nothing nginx could
#: see changed, or accepted it; accepted events are then applied by a sync, or still pending.
OUTCOMES = ("skipped", "rejected", "unchanged", "applied", "failed", "pending")


@dataclass(slots=True)
class EventLine:
    """One trace event and what became of it."""

    line: int
    t: float
    type: str
    kind: str
    name: str
    outcome: str
    #: The sync that applied it (accepted events only).
    sync: int | None = None
    #: From entering the Store to the end of the sync that applied it.
    latency: float | None = None
    #: Why the event was rejected or skipped, when the Store or the namespace filter says so.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SyncLine:
    """One line of the timeline: a sync, the events it covered, what it decided and did."""

    number: int
    #: Trace time: the newest ``t`` among the events it covered (where the trace was, if none).
    t: float
    #: Seconds since the replay started, when the sync ended.
    wall: float
    events: int
    kinds: dict[str, int]
    keys: tuple[str, ...]
    causes: tuple[str, ...]
    decision: str
    result: str
    reasons: tuple[str, ...]
    build_seconds: float
    diff_seconds: float
    apply_seconds: float
    backends_posted: int
    error: str | None
    #: ``config_hash()`` of what runs after this sync (the previous one's when it failed):
    #: what ``replay --compare`` compares, with the decision and reasons.
    config_hash: str | None = None

    @property
    def total_seconds(self) -> float:
        return self.build_seconds + self.diff_seconds + self.apply_seconds

    @property
    def applied_as(self) -> str:
        """``reload``, ``dynamic``, ``nothing`` for a successful sync, else its result."""
        return self.decision if self.result == "ok" else self.result


def percentiles(values: Sequence[float]) -> dict[str, float | None]:
    """p50, p90, p99 (nearest rank) and max of ``values``; ``None`` for an empty sequence."""
    ordered = sorted(values)
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p90", 90), ("p99", 99)):
        out[name] = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else None
    out["max"] = ordered[-1] if ordered else None
    return out


def conf_sha256(config: Configuration, settings: RenderSettings, template: Path) -> str | None:
    """sha256 of the nginx.conf for ``config`` rendered with a fixed work dir and generation."""
    try:
        text = render(
            config,
            settings=settings,
            paths=NginxPaths(HASH_WORK_DIR),
            generation=0,
            template=template,
        )
    except RenderError:
        return None
    return hashlib.sha256(text.encode()).hexdigest()


def config_hash(model_sha256: str | None, conf_sha256: str | None) -> str | None:
    """One hash for everything nginx does: the model (endpoints included) and nginx.conf (the
    ConfigMap's settings included)."""
    if model_sha256 is None:
        return None
    return hashlib.sha256(f"{model_sha256}\n{conf_sha256}".encode()).hexdigest()


@dataclass(slots=True)
class ReplayResult:
    """Everything a replay produced: per event, per sync, and the summary built from them."""

    trace: str
    mode: str
    speed: float | None
    events: list[EventLine]
    syncs: list[SyncLine]
    skipped_kinds: dict[str, int]
    watch_markers: int
    placeholders: int
    wall_seconds: float
    final_config_hash: str | None
    final_model_sha256: str | None
    final_conf_sha256: str | None
    error: TraceError | None = None
    #: The trace's header line as written (None for a trace without one).
    header: dict[str, Any] | None = None
    #: Options taken from the header because the command line did not give them (flag -> value).
    from_header: dict[str, str] = field(default_factory=dict)
    #: sha256 of the trace file, when it was read to the end.
    trace_sha256: str | None = None
    #: False when the pipeline was still busy when the replay ended (timeout, interruption).
    settled: bool = True
    interrupted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pace(self) -> str:
        return "fast" if self.speed is None else f"{self.speed:g}x"

    def summary(self) -> dict[str, Any]:
        outcomes = collections.Counter(e.outcome for e in self.events)
        applied = collections.Counter(s.applied_as for s in self.syncs)
        reloads, dynamic = applied["reload"], applied["dynamic"]
        changes = reloads + dynamic
        initial = 1 if self.syncs and self.syncs[0].applied_as == "reload" else 0
        latencies = [e.latency for e in self.events if e.latency is not None]
        return {
            "events": len(self.events),
            "skipped": outcomes["skipped"],
            "skipped_kinds": dict(sorted(self.skipped_kinds.items())),
            "watch_markers": self.watch_markers,
            "placeholder_certificates": self.placeholders,
            "outcomes": {name: outcomes[name] for name in OUTCOMES},
            "rejected_lines": [
                {"line": e.line, "kind": e.kind, "name": e.name, "reason": e.reason}
                for e in self.events
                if e.outcome == "rejected"
            ],
            "syncs": len(self.syncs),
            "decisions": {
                name: applied[name]
                for name in ("reload", "dynamic", "nothing", "rejected", "error")
            },
            "reloads": reloads,
            "dynamic_updates": dynamic,
            "applied_without_reload": dynamic / changes if changes else None,
            "applied_without_reload_after_initial": (
                dynamic / (changes - initial) if changes - initial else None
            ),
            "sync_seconds": percentiles([s.total_seconds for s in self.syncs]),
            "event_to_applied_seconds": percentiles(latencies),
            "trace_seconds": max((e.t for e in self.events), default=0.0),
            "wall_seconds": self.wall_seconds,
            "final_config_hash": self.final_config_hash,
            "final_model_sha256": self.final_model_sha256,
            "final_nginx_conf_sha256": self.final_conf_sha256,
            "settled": self.settled,
            "interrupted": self.interrupted,
            "stopped_at": (
                {"line": self.error.line, "reason": self.error.reason} if self.error else None
            ),
        }

    def decisions(self) -> list[tuple[int, str, str, tuple[str, ...], int, str | None]]:
        """What must be equal between two replays of one trace: per sync, its number, decision,
        result, reasons, event count and config hash."""
        return [
            (s.number, s.decision, s.result, s.reasons, s.events, s.config_hash) for s in self.syncs
        ]
