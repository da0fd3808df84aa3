"""Plots of a ``make bench`` run, drawn from its JSON files.

benchmarks/results/{scale,churn,dataplane}.json --matplotlib (Agg)--> *.png beside them

python -m benchmarks.plots [DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure


def plot_scale(data: list[dict[str, float]], target: Path) -> None:
    sizes = [d["ingresses"] for d in data]
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    left.plot(
        sizes,
        [d["build_seconds"] + d["render_seconds"] for d in data],
        "o-",
        label="build + render",
    )
    left.plot(
        sizes,
        [d["incremental_sync_seconds"] for d in data],
        "o-",
        label="one-Ingress sync (controller)",
    )
    left.plot(sizes, [d["nginx_test_seconds"] for d in data], "o--", label="nginx -t")
    left.plot(sizes, [d["reload_seconds"] for d in data], "o--", label="reload")
    left.axhline(1.0, color="grey", lw=0.8, ls=":")
    left.axhline(0.05, color="grey", lw=0.8, ls=":")
    left.set_yscale("log")
    left.set_xlabel("Ingresses")
    left.set_ylabel("seconds (log)")
    left.set_title("time by size (dotted: 1 s and 50 ms targets)")
    left.legend(fontsize=8)
    right.plot(sizes, [d["rss_mb"] for d in data], "o-", label="controller RSS (MB)")
    right.plot(sizes, [d["conf_bytes"] / 1e6 for d in data], "o-", label="nginx.conf (MB)")
    right.axhline(200, color="grey", lw=0.8, ls=":")
    right.set_xlabel("Ingresses")
    right.set_title("memory and conf size (dotted: 200 MB RSS target)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def plot_churn(data: list[dict[str, object]], target: Path) -> None:
    fig = Figure(figsize=(11, 4.2))
    left, right = fig.subplots(1, 2)
    modes = [str(d["mode"]) for d in data]
    if all(d.get("latencies_ms") for d in data):
        for d in data:
            latencies = sorted(float(x) for x in d["latencies_ms"])  # type: ignore[attr-defined]
            left.plot(
                latencies,
                [(i + 1) / len(latencies) for i in range(len(latencies))],
                label=str(d["mode"]),
            )
        left.set_xscale("log")
        left.set_xlabel("event-to-served latency, ms (log)")
        left.set_ylabel("share of probes")
        left.axvline(100, color="grey", lw=0.8, ls=":")
    else:  # older result files kept only the percentiles
        xs0 = range(len(modes))
        left.bar(
            [x - 0.2 for x in xs0],
            [float(d["latency_p50_ms"]) for d in data],  # type: ignore[arg-type]
            0.4,
            label="p50",
        )
        left.bar(
            [x + 0.2 for x in xs0],
            [float(d["latency_p99_ms"]) for d in data],  # type: ignore[arg-type]
            0.4,
            label="p99",
        )
        left.set_xticks(list(xs0), modes)
        left.set_yscale("log")
        left.set_ylabel("event-to-served latency, ms (log)")
        left.axhline(100, color="grey", lw=0.8, ls=":")
    left.set_title("endpoint change -> nginx routes to the new pod (dotted: 100 ms)")
    left.legend(fontsize=8)
    width = 0.27
    xs = range(len(modes))
    right.bar(
        [x - width for x in xs],
        [float(d["reloads"]) for d in data],  # type: ignore[arg-type]
        width,
        label="reloads during the churn",
    )

    def failed(d: dict[str, object], key: str) -> int:
        w = d.get(key)
        return int(w["non_2xx"]) + int(w["socket_errors"]) if isinstance(w, dict) else 0

    right.bar(
        list(xs),
        [failed(d, "wrk_churn") for d in data],
        width,
        label="failed requests during the churn",
    )
    right.bar(
        [x + width for x in xs],
        [failed(d, "wrk_reloads") for d in data],
        width,
        label="failed requests during 20 forced reloads",
    )
    right.set_xticks(list(xs), modes)
    right.set_title("reloads and failed requests (wrk)")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def plot_dataplane(data: dict[str, list[float]], target: Path) -> None:
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    rounds = range(1, len(data["lua_rps"]) + 1)
    for key, label in (
        ("lua_rps", "Lua round robin"),
        ("static_rps", "static round robin"),
        ("ewma_rps", "Lua EWMA"),
        ("chash_rps", "Lua consistent hash"),
        ("static_hash_rps", "static consistent hash"),
    ):
        if data.get(key):
            ax.plot(rounds, data[key], "o-", label=label)
    ax.set_xlabel("round")
    ax.set_ylabel("requests/s")
    ax.set_ylim(bottom=0)
    ax.set_title("data plane, alternating rounds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(target, dpi=110)


def draw_all(directory: Path) -> list[Path]:
    made = []
    for name, draw in (("scale", plot_scale), ("churn", plot_churn), ("dataplane", plot_dataplane)):
        source = directory / f"{name}.json"
        if source.exists():
            target = directory / f"{name}.png"
            draw(json.loads(source.read_text()), target)
            made.append(target)
    return made


if __name__ == "__main__":
    here = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    for path in draw_all(here):
        print(path)
