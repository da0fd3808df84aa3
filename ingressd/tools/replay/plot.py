"""Plotting a replay: one PNG with the timeline and the latency distributions (matplotlib, Agg).

    ReplayResult --plot(result, path)--> PNG
        top:    trace events over trace time, stacked by kind
        middle: the syncs over trace time, one row per decision (reload, dynamic, nothing, ...)
        bottom: event-to-applied latency, and sync duration, by the decision that applied them

Uses ``matplotlib.figure.Figure`` directly (no pyplot, no global state, no display needed).
matplotlib is the ``plot`` extra: ``ingressd replay --plot`` checks that this module imports
before it replays anything (``replaying.PLOT_NEEDS_MATPLOTLIB``), and nothing else imports it.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ingressd.tools.replay.result import ReplayResult

COLORS = {
    "reload": "#d62728",
    "dynamic": "#2ca02c",
    "nothing": "#9a9a9a",
    "rejected": "#6a3d9a",
    "error": "#000000",
}
_KIND_COLORS = ("#1f77b4", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#bcbd22", "#7f7f7f")


def _log_bins(values: Sequence[float], count: int = 40) -> list[float]:
    low = max(min(values), 1e-6)
    high = max(max(values), low * 10)
    step = (math.log10(high) - math.log10(low)) / count
    return [10 ** (math.log10(low) + i * step) for i in range(count + 1)]


def _distribution(ax: Axes, groups: dict[str, list[float]], title: str) -> None:
    values = [v for vs in groups.values() for v in vs]
    ax.set_title(title, fontsize=10)
    if not values:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        return
    bins = _log_bins([v * 1000 for v in values])
    for name, vs in groups.items():
        if vs:
            ax.hist(
                [v * 1000 for v in vs],
                bins=bins,
                histtype="stepfilled",
                alpha=0.55,
                color=COLORS.get(name, "#333333"),
                label=f"{name} ({len(vs)})",
            )
    ordered = sorted(values)
    for label, p, style in (("p50", 50, "--"), ("p99", 99, ":")):
        value = ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000
        ax.axvline(
            value, color="#333333", linestyle=style, linewidth=1, label=f"{label} {value:.1f} ms"
        )
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds (log scale)")
    ax.set_ylabel("count")
    ax.legend(fontsize=8, loc="best")


def plot(result: ReplayResult, path: Path) -> None:
    """Draw ``result`` into the PNG file ``path``."""
    summary = result.summary()
    fig = Figure(figsize=(13, 8.5), dpi=110, layout="constrained")
    grid = fig.add_gridspec(3, 2, height_ratios=[3, 1.3, 3])
    events_ax = fig.add_subplot(grid[0, :])
    syncs_ax = fig.add_subplot(grid[1, :], sharex=events_ax)
    latency_ax = fig.add_subplot(grid[2, 0])
    duration_ax = fig.add_subplot(grid[2, 1])
    fig.suptitle(
        f"{Path(result.trace).name} — {result.mode}, {result.pace}: {summary['events']} events, "
        f"{summary['syncs']} syncs: {summary['reloads']} reload(s), "
        f"{summary['dynamic_updates']} dynamic update(s)",
        fontsize=12,
    )

    # Events over trace time, stacked by kind.
    end = max(summary["trace_seconds"], max((s.t for s in result.syncs), default=0.0), 1.0)
    bins = [end * i / 100 for i in range(101)]
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for event in result.events:
        label = event.kind if event.outcome != "skipped" else f"{event.kind} (skipped)"
        by_kind[label].append(event.t)
    kinds = sorted(by_kind, key=lambda k: (-len(by_kind[k]), k))
    if kinds:
        events_ax.hist(
            [by_kind[k] for k in kinds],
            bins=bins,
            stacked=True,
            color=[_KIND_COLORS[i % len(_KIND_COLORS)] for i in range(len(kinds))],
            label=[f"{k} ({len(by_kind[k])})" for k in kinds],
        )
        events_ax.legend(fontsize=8, loc="upper right")
    events_ax.set_ylabel(f"events per {end / 100:.2g} s")
    events_ax.set_title("trace events (x: trace time)", fontsize=10)

    # Syncs over trace time, one row per decision.
    rows = [name for name in COLORS if any(s.applied_as == name for s in result.syncs)]
    for i, name in enumerate(rows):
        times = [s.t for s in result.syncs if s.applied_as == name]
        syncs_ax.eventplot(
            [times], lineoffsets=i, linelengths=0.8, colors=COLORS[name], linewidths=1.5
        )
    syncs_ax.set_yticks(
        range(len(rows)),
        [f"{n} ({sum(s.applied_as == n for s in result.syncs)})" for n in rows],
    )
    syncs_ax.set_ylim(-0.6, max(len(rows), 1) - 0.4)
    syncs_ax.set_xlim(-end * 0.01, end * 1.01)
    syncs_ax.set_xlabel("trace time (s)")
    syncs_ax.set_title("syncs by decision", fontsize=10)

    # Latency distributions, by the decision of the sync that applied them.
    applied_as = {s.number: s.applied_as for s in result.syncs}
    latencies: dict[str, list[float]] = {name: [] for name in COLORS}
    for event in result.events:
        if event.latency is not None and event.sync is not None:
            latencies[applied_as.get(event.sync, "error")].append(event.latency)
    durations: dict[str, list[float]] = {name: [] for name in COLORS}
    for sync in result.syncs:
        durations[sync.applied_as].append(sync.total_seconds)
    _distribution(latency_ax, latencies, "event-to-applied latency, by decision")
    _distribution(duration_ax, durations, "sync duration (build + diff + apply), by decision")

    fig.savefig(path, format="png")
