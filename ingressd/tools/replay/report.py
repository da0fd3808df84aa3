"""Reporting a replay: the timeline and summary as text, the JSON report, a progress bar.

    trace, mode, header --preamble_lines()--> what is replayed, with which options --> stdout
    SyncLine     --timeline_line()---> one line per sync (as it happens when piped) --> stdout
    ReplayResult --timeline_lines()--> the whole timeline (at the end on a terminal) --> stdout
                 --summary_lines()---> the summary              --> stdout
                 --report()----------> dict (schema below)      --> --report FILE.json
    Replay progress callback --ProgressBar--> stderr, only when it is a terminal

Report schema (``REPORT_VERSION`` 1): ``{"version", "trace", "trace_sha256", "header",
"from_header", "mode", "pace", "summary", "timeline": [sync...], "events": [event...]}``;
``header`` is the trace's header line (or null), ``from_header`` the options taken from it,
``trace_sha256`` the trace file's hash (null when the replay stopped before its end);
``summary`` is ``ReplayResult.summary()`` (durations in seconds), a timeline entry is a
``SyncLine`` (durations in seconds, ``kinds`` a count per kind, ``keys`` the first few events as
``Kind namespace/name TYPE``, ``config_hash`` what runs after it), an event entry an
``EventLine`` (``reason`` for a rejected or skipped one, when known).  ``replay --compare``
(``ingressd.tools.replay.compare``) reads two of them.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from ingressd.store.sources.trace import TraceHeader
    from ingressd.tools.replay.result import ReplayResult, SyncLine

REPORT_VERSION = 1

EVENTS_WIDTH = 48
REASONS_SHOWN = 2
#: Rejected lines the summary names (the report names them all).
REJECTED_SHOWN = 10


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f}ms" if seconds < 10 else f"{seconds:.1f}s"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_events(sync: SyncLine) -> str:
    """What a sync covered, abbreviated: its keys when few, else counts per kind."""
    prefix = ", ".join(c for c in sync.causes if c != "events")
    if sync.events == 0:
        body = "no events"
    elif sync.events <= 2:
        body = "; ".join(sync.keys)
    else:
        kinds = sorted(sync.kinds.items(), key=lambda kv: (-kv[1], kv[0]))
        body = f"{sync.events}: " + ", ".join(f"{kind} x{count}" for kind, count in kinds)
    if prefix:
        return f"{prefix} + {body}" if sync.events else prefix
    return body


def describe_reasons(sync: SyncLine) -> str:
    if sync.error:
        return sync.error.splitlines()[0]
    if not sync.reasons:
        return "-"
    shown = "; ".join(sync.reasons[:REASONS_SHOWN])
    more = len(sync.reasons) - REASONS_SHOWN
    return f"{shown} (+{more} more)" if more > 0 else shown


def timeline_header() -> str:
    return (
        f"{'sync':>5} {'trace t':>9}  {'decision':<16} {'events':<{EVENTS_WIDTH}} "
        f"{'build':>8} {'diff':>8} {'apply':>8}  reasons"
    )


def timeline_line(s: SyncLine) -> str:
    """One sync as a line of the timeline."""
    decision = s.decision if s.result == "ok" else f"{s.decision}:{s.result}"
    return (
        f"{s.number:>5} {s.t:>8.3f}s  {decision:<16} "
        f"{_cut(describe_events(s), EVENTS_WIDTH):<{EVENTS_WIDTH}} "
        f"{_ms(s.build_seconds):>8} {_ms(s.diff_seconds):>8} {_ms(s.apply_seconds):>8}  "
        f"{describe_reasons(s)}"
    )


def timeline_lines(result: ReplayResult) -> list[str]:
    return [timeline_header(), *(timeline_line(s) for s in result.syncs)]


def preamble_lines(
    trace: str,
    mode: str,
    pace: str,
    header: TraceHeader | None,
    from_header: dict[str, str],
) -> list[str]:
    """What is replayed, how, and what the trace's header said: the first lines printed."""
    lines = [f"replay {trace} ({mode}, {pace})"]
    if header is None:
        lines.append("trace header: none (recorded before headers; options from the command line)")
        return lines
    when = f" at {header.started_at}" if header.started_at else ""
    lines.append(f"trace header: recorded by {header.recorder}{when}")
    if from_header:
        taken = ", ".join(f"--{flag} {value}" for flag, value in from_header.items())
        lines.append(f"              options taken from it: {taken}")
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _percentiles(values: dict[str, float | None]) -> str:
    return "  ".join(f"{name} {_ms(value)}" for name, value in values.items())


def summary_lines(result: ReplayResult) -> list[str]:
    s = result.summary()
    out = s["outcomes"]
    skipped = ", ".join(f"{kind} {n}" for kind, n in s["skipped_kinds"].items())
    event_parts = [f"{s['skipped']} skipped" + (f" ({skipped})" if skipped else "")]
    event_parts.append(f"{out['unchanged']} unchanged for nginx")
    for name in ("rejected", "applied", "failed", "pending"):
        if out[name] or name == "applied":
            event_parts.append(f"{out[name]} {name}")
    if s["watch_markers"]:
        event_parts.append(f"{s['watch_markers']} bookmark/error lines")
    if s["placeholder_certificates"]:
        event_parts.append(
            f"{s['placeholder_certificates']} redacted TLS Secrets given a placeholder certificate"
        )
    d = s["decisions"]
    lines = [
        f"events             {s['events']}: " + ", ".join(event_parts),
        f"syncs              {s['syncs']}: {d['reload']} reload, {d['dynamic']} dynamic, "
        f"{d['nothing']} nothing, {d['rejected']} rejected by nginx -t, {d['error']} errors",
        f"reloads            {s['reloads']}",
        f"dynamic updates    {s['dynamic_updates']}",
        f"without reload     {_share(s['applied_without_reload'])} of applied changes "
        f"({_share(s['applied_without_reload_after_initial'])} after the initial load)",
        f"sync latency       {_percentiles(s['sync_seconds'])}",
        f"event-to-applied   {_percentiles(s['event_to_applied_seconds'])}",
        f"final config hash  {s['final_config_hash'] or '-'}",
        f"                   (model {(s['final_model_sha256'] or '-')[:16]}, "
        f"nginx.conf {(s['final_nginx_conf_sha256'] or '-')[:16]})",
        f"replayed           {s['trace_seconds']:.3f}s of trace in {s['wall_seconds']:.2f}s "
        f"({result.mode}, {result.pace})",
    ]
    rejected = s["rejected_lines"]
    for entry in rejected[:REJECTED_SHOWN]:
        lines.append(
            f"rejected           line {entry['line']} ({entry['kind']} {entry['name']}): "
            f"{entry['reason']}"
        )
    if len(rejected) > REJECTED_SHOWN:
        lines.append(
            f"                   and {len(rejected) - REJECTED_SHOWN} more rejected lines "
            "(every one in --report)"
        )
    if result.error is not None:
        lines.append(f"stopped            at line {result.error.line}: {result.error.reason}")
    if result.interrupted:
        lines.append("interrupted        the replay was stopped before the end of the trace")
    elif not result.settled:
        lines.append("not settled        syncs were still running when the replay ended")
    return lines


def report(result: ReplayResult) -> dict[str, Any]:
    """The whole replay as JSON-ready data (schema in the module docstring)."""
    timeline = []
    for sync in result.syncs:
        item = dataclasses.asdict(sync)
        item["causes"], item["reasons"], item["keys"] = (
            list(sync.causes),
            list(sync.reasons),
            list(sync.keys),
        )
        item["total_seconds"] = sync.total_seconds
        timeline.append(item)
    return {
        "version": REPORT_VERSION,
        "trace": result.trace,
        "trace_sha256": result.trace_sha256,
        "header": result.header,
        "from_header": dict(result.from_header),
        "mode": result.mode,
        "pace": result.pace,
        "summary": result.summary(),
        "timeline": timeline,
        "events": [dataclasses.asdict(e) for e in result.events],
    }


class ProgressBar:
    """``replay [#####.....]  45%  43/96 events  12 syncs`` on one terminal line, <= 10 Hz.

    Does nothing unless ``stream`` is a terminal.
    """

    def __init__(
        self,
        total: int,
        stream: TextIO = sys.stderr,
        *,
        width: int = 30,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self.enabled = stream.isatty()
        self._clock = clock
        self._last = float("-inf")
        self._state = (0, 0)

    def __call__(self, events: int, syncs: int) -> None:
        self._state = (events, syncs)
        now = self._clock()
        if self.enabled and now - self._last >= 0.1:
            self._last = now
            self._draw()

    def _draw(self) -> None:
        events, syncs = self._state
        done = min(events / self.total, 1.0)
        filled = int(done * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(
            f"\rreplay [{bar}] {done * 100:3.0f}%  {events}/{self.total} events  {syncs} syncs"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
