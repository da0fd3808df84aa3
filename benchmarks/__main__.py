"""``make bench``: every benchmark at its full size, figures to ``benchmarks/RESULTS.md``.

    burst -> churn (dynamic vs --reload-always, wrk) -> scale (1k/5k/10k) -> dataplane
    -> pipeline -> routing (--routing lua vs --routing nginx at 10k) -> instructions per
    request of each routing mode's nginx (callgrind) -> manifests (edit to
    served, idle CPU: watching vs polling); each result also as JSON under
    ``benchmarks/results/``

One run, one machine: comparisons are made within the run and reported as ratios or counts.

    python -m benchmarks [--quick]     (--quick: small sizes, a minute or so)

Writes ``benchmarks/RESULTS.md`` and, in ``benchmarks/results/``, the JSON of each benchmark
and PNG plots drawn from it (``benchmarks/plots.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

from benchmarks import (
    burst,
    churn,
    dataplane,
    instructions,
    manifests,
    pipeline,
    plots,
    routing,
    scale,
)
from benchmarks.common import machine, temp_root
from ingressd.logs import configure

HERE = Path(__file__).resolve().parent


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=HERE,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark; write RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    args = parser.parse_args()
    configure(level="error")
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    quick = args.quick
    lines = [
        "# ingressd benchmark results",
        "",
        f"- machine: {machine()}",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- commit: {_commit()}",
        f"- sizes: {'quick' if quick else 'full'} "
        f"(`python -m benchmarks{' --quick' if quick else ''}`)",
        "",
        "Every comparison below was measured in this one run on this machine.",
        "",
    ]

    print("burst ...", flush=True)
    root = temp_root("ingressd-bench-")
    bursts = [
        asyncio.run(burst.run_burst(events=1000, pods=10, rate=rate, root=root))
        for rate in (None, 1000.0)
    ]
    (out / "burst.json").write_text(json.dumps([asdict(b) for b in bursts], indent=2))
    lines += ["## Burst of 1,000 endpoint events (10 pods, real nginx)", ""]
    for b in bursts:
        lines.append(
            f"- {b.shape}: {b.syncs} syncs, {b.dynamic_posts} POSTs to Lua, {b.reloads} reloads; "
            f"final endpoint set served by nginx: {b.final_set_served}"
        )
    lines.append("")

    print("churn ...", flush=True)
    churn_args = argparse.Namespace(
        services=100 if quick else 1000,
        endpoints=10,
        changes=1000 if quick else 10_000,
        rate=1000,
        probe_every=20 if quick else 100,
        reloads=5 if quick else 20,
        wrk_seconds=2 if quick else 3,
        modes="both",
    )
    churns = asyncio.run(churn.main_async(churn_args))
    (out / "churn.json").write_text(json.dumps([asdict(c) for c in churns], indent=2))
    lines += ["## 1. Endpoint churn and 2. no request lost", "", "```"]
    lines += [churn.describe(c) for c in churns]
    lines += ["```", ""]
    dyn, rel = churns
    if dyn.latency_p99_ms and rel.latency_p99_ms:
        lines.append(
            f"- reload-always / dynamic: {rel.reloads} vs {dyn.reloads} reloads, event-to-served "
            f"p99 {rel.latency_p99_ms / dyn.latency_p99_ms:.1f}x"
        )
    lines.append("")

    print("scale ...", flush=True)
    sizes = [200, 1000] if quick else [1000, 5000, 10000]
    scales = scale.run_sizes(sizes)
    (out / "scale.json").write_text(json.dumps([asdict(s) for s in scales], indent=2))
    lines += ["## 3. Scale (one host, two paths per Ingress, TLS on 10%)", "", "```"]
    lines += [scale.describe(s) for s in scales]
    lines += [
        "```",
        "",
        "Targets at 10k: build + render <= 1 s, conf <= 25 MB, RSS <= 200 MB, "
        "one-Ingress sync <= 50 ms of controller time.",
        "",
    ]

    print("dataplane ...", flush=True)
    dp = asyncio.run(dataplane.run(10, 2 if quick else 5, 2 if quick else 3, 32))
    (out / "dataplane.json").write_text(json.dumps(asdict(dp), indent=2))
    lines += ["## 4. Data plane (wrk, 32 connections, 10 pods)", "", dataplane.describe(dp), ""]

    print("pipeline ...", flush=True)
    pl = asyncio.run(pipeline.run(1000, 20_000 if quick else 100_000, 256))
    (out / "pipeline.json").write_text(json.dumps(asdict(pl), indent=2))
    lines += [
        "## 5. Pipeline throughput (dry run)",
        "",
        f"- {pl.events:,} endpoint events over {pl.services} services: "
        f"{pl.events_per_second:,} events/s (target >= 50,000); {pl.syncs} syncs, "
        f"{pl.dynamic_updates} dynamic updates, {pl.reloads} reloads",
        "",
    ]
    print("routing ...", flush=True)
    rt = asyncio.run(routing.measure(**routing.QUICK) if quick else routing.measure())
    (out / "routing.json").write_text(json.dumps(asdict(rt), indent=2))
    lines += [
        f"## 6. `--routing lua` against `--routing nginx` ({rt.ingresses:,} Ingresses)",
        "",
        routing.describe(rt),
        "",
    ]
    if shutil.which("valgrind"):
        print("instructions ...", flush=True)
        ins = asyncio.run(instructions.measure(10, 2000))
        (out / "instructions.json").write_text(json.dumps(asdict(ins), indent=2))
        described = instructions.describe(ins)
    else:
        described = "- not measured: valgrind is not installed (apt-get install valgrind)"
    lines += [
        "Instructions per request, the data plane's cost without the machine's noise "
        "(`benchmarks/instructions.py`):",
        "",
        described,
        "",
    ]
    print("manifests ...", flush=True)
    mf_args = argparse.Namespace(
        services=200 if quick else 1000,
        files=2000 if quick else 10_000,
        edits=20 if quick else 50,
        idle=3.0 if quick else 10.0,
        modes="both",
    )
    mfs = asyncio.run(manifests.main_async(mf_args))
    (out / "manifests.json").write_text(json.dumps([asdict(m) for m in mfs], indent=2))
    lines += [
        "## Manifests directory: file edit to served, idle CPU (watching vs polling)",
        "",
        "```",
    ]
    lines += [manifests.describe(m) for m in mfs]
    lines += ["```", "", "Target: edit to served p50 <= 50 ms at 1,000 Services; idle CPU ~0.", ""]
    pictures = plots.draw_all(out)
    lines += ["## Plots", ""] + [f"![{p.stem}](results/{p.name})" for p in pictures] + [""]
    text = "\n".join(lines)
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
