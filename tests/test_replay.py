"""Trace replay: determinism, timeline and summary, bad lines, unknown kinds, outputs, --live."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import hashlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ingressd.app.runtime import Options
from ingressd.cli.arguments import options_from, parser
from ingressd.model import ObjectKey
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.sources.trace import (
    TraceError,
    TraceEvent,
    TraceHeader,
    TraceSource,
    parse_line,
    placeholder_tls_data,
    unredact,
)
from ingressd.tools.replay import report as replay_report
from ingressd.tools.replay.replaying import Output, Replay, command, replay
from ingressd.tools.replay.result import EventLine, ReplayResult, percentiles
from tests.support import objects, traceobjects
from tests.support.backends import EchoPods
from tests.support.harness import free_port, pod_addresses
from tests.support.traces import PodSet, Simulation, TraceBuilder

SAMPLES = Path(__file__).resolve().parents[1] / "examples" / "traces"
ROLLING_UPDATE = SAMPLES / "rolling-update.jsonl"
HEADER = TraceHeader(
    recorder="ingressd 0.1.0",
    started_at="2026-03-02T10:00:00.000000Z",
    options={"configmap": "ingressd/ingressd-controller", "watch-namespace": None},
)


def dry_run_options(work_dir: Path, routing: str = "lua") -> Options:
    return Options(work_dir=work_dir, status_port=0, status_address="127.0.0.1", routing=routing)


def small_trace(path: Path) -> Path:
    """Initial state (one Ingress, 2 pods); t=1 a second Ingress; t=2 a third pod starts."""
    trace, sim, rng = TraceBuilder(), Simulation(), random.Random(1)
    trace.added(0, traceobjects.ingress_class())
    pods = PodSet(trace, sim, rng, "shop", "web")
    pods.initial("5d8f7c9b6", 2)
    trace.added(0, traceobjects.service("web", "shop"))
    trace.added(0, pods.slice)
    a_rules = [("a.example.com", [("/", "Prefix", "web", 80)])]
    trace.added(0, traceobjects.ingress("a", "shop", a_rules))
    b_rules = [("b.example.com", [("/", "Prefix", "web", 80)])]
    trace.added(1.0, traceobjects.ingress("b", "shop", b_rules, created=1))
    sim.at(2.0, lambda t: pods.start_pod(t, "5d8f7c9b6"))
    sim.run()
    trace.write(path)
    return path


def write_lines(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def cli_replay(*argv: str) -> int:
    args = parser().parse_args(["replay", *argv])
    return asyncio.run(command(args, options_from))


# -- determinism --------------------------------------------------------------------------------


async def test_fast_dry_run_replays_of_one_trace_make_the_same_decisions_and_hash(
    tmp_path: Path,
) -> None:
    results: list[ReplayResult] = []
    texts: list[str] = []
    for name in ("first", "second-in-a-longer-dir"):
        async with Replay(ROLLING_UPDATE, dry_run_options(tmp_path / name), speed=None) as run:
            results.append(await run.wait())
            assert isinstance(run.ingressd.nginx, DryRunNginx)
            texts.append(run.ingressd.nginx.paths.conf.read_text())
    first, second = results
    assert len(first.syncs) > 20
    assert first.decisions() == second.decisions()
    assert first.final_config_hash is not None
    assert first.final_config_hash == second.final_config_hash
    assert first.final_model_sha256 == second.final_model_sha256
    assert first.final_conf_sha256 == second.final_conf_sha256
    # The nginx.conf each replay wrote names its own work dir: the hash does not depend on it.
    assert texts[0] != texts[1]


# -- timeline and summary ----------------------------------------------------------------------


async def test_rolling_update_applies_all_endpoint_churn_without_a_reload(tmp_path: Path) -> None:
    result = await replay(ROLLING_UPDATE, dry_run_options(tmp_path / "w"))
    first, *rest = result.syncs
    assert (first.decision, first.result, first.reasons) == ("reload", "ok", ("first sync",))
    assert "initial" in first.causes
    assert rest, "the rollout produced no sync"
    assert {s.applied_as for s in rest} <= {"dynamic", "nothing"}
    assert sum(s.applied_as == "dynamic" for s in rest) >= 10
    assert all(set(s.kinds) == {"EndpointSlice"} for s in rest)
    summary = result.summary()
    assert summary["reloads"] == 1
    assert summary["applied_without_reload_after_initial"] == 1.0
    deployments = ROLLING_UPDATE.read_text().count('"kind":"Deployment"')
    assert summary["skipped_kinds"] == {"Deployment": deployments}
    assert summary["outcomes"]["pending"] == 0
    assert summary["settled"] and summary["stopped_at"] is None


async def test_timeline_names_each_syncs_events_decision_and_reasons(tmp_path: Path) -> None:
    result = await replay(small_trace(tmp_path / "t.jsonl"), dry_run_options(tmp_path / "w"))
    rows = [(s.t, s.decision, s.result, s.reasons) for s in result.syncs]
    assert rows[0] == (0.0, "reload", "ok", ("first sync",))
    # A new Ingress whose settings class nginx.conf already has is a route update (--routing lua).
    assert rows[1] == (1.0, "dynamic", "ok", ("routes of b.example.com added",))
    # The new pod first appears not ready (nothing to do), then ready (dynamic, no reload).
    assert [r[1] for r in rows[2:]] == ["nothing", "dynamic"]
    assert rows[3][3] == ("backend shop-web-80 endpoints 2 -> 3",)
    assert result.syncs[1].keys == ("Ingress shop/b ADDED",)

    lines = replay_report.timeline_lines(result)
    assert len(lines) == 1 + len(result.syncs)
    assert "Ingress shop/b ADDED" in lines[2] and "routes of b.example.com added" in lines[2]
    assert "dynamic" in lines[4] and "endpoints 2 -> 3" in lines[4]


async def test_a_new_host_reloads_with_nginx_routing_and_not_with_lua_routing(
    tmp_path: Path,
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    nginx = await replay(trace, dry_run_options(tmp_path / "n", routing="nginx"))
    assert nginx.syncs[1].decision == "reload"
    assert "server b.example.com added" in nginx.syncs[1].reasons
    lua = await replay(trace, dry_run_options(tmp_path / "l", routing="lua"))
    assert lua.syncs[1].decision == "dynamic"
    assert [s.decision for s in nginx.syncs[2:]] == [s.decision for s in lua.syncs[2:]]


async def test_summary_counts_decisions_and_gives_latency_percentiles(tmp_path: Path) -> None:
    result = await replay(
        small_trace(tmp_path / "t.jsonl"), dry_run_options(tmp_path / "w", routing="nginx")
    )
    summary = result.summary()
    assert summary["syncs"] == 4
    assert summary["decisions"] == {
        "reload": 2,
        "dynamic": 1,
        "nothing": 1,
        "rejected": 0,
        "error": 0,
    }
    assert (summary["reloads"], summary["dynamic_updates"]) == (2, 1)
    assert summary["applied_without_reload"] == pytest.approx(1 / 3)
    assert summary["applied_without_reload_after_initial"] == pytest.approx(1 / 2)
    latency = summary["event_to_applied_seconds"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert summary["outcomes"]["applied"] == summary["events"]
    text = "\n".join(replay_report.summary_lines(result))
    for needle in (
        "2 reload, 1 dynamic, 1 nothing",
        "33.3% of applied changes",
        "p50",
        "p99",
        "max",
        summary["final_config_hash"],
    ):
        assert needle in text


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0, "max": 100.0}
    assert percentiles([]) == {"p50": None, "p90": None, "p99": None, "max": None}


# -- bad lines and unknown kinds ---------------------------------------------------------------


def _event(t: float, obj: dict[str, Any], type_: str = "ADDED") -> dict[str, Any]:
    return {"t": t, "type": type_, "object": obj}


async def test_a_line_that_does_not_parse_stops_the_replay_with_its_line_number(
    tmp_path: Path,
) -> None:
    trace = write_lines(
        tmp_path / "bad.jsonl",
        _event(0, objects.ingress_class()),
        _event(0, objects.service("web")),
        "",
        _event(0.5, objects.ingress("web", rules=[objects.rule("a.test", objects.path())])),
        '{"t": 1.0, "type": "MODIFIED", "object": {"kind": "Service"',
        _event(2.0, objects.ingress("other", rules=[objects.rule("b.test", objects.path())])),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    assert result.error is not None
    assert result.error.line == 5
    assert "invalid JSON" in result.error.reason
    assert [e.line for e in result.events] == [1, 2, 4]
    assert result.summary()["stopped_at"] == {"line": 5, "reason": result.error.reason}
    assert [s.t for s in result.syncs] == [0.0, 0.5]  # line 4 applied before the stop


def test_the_command_exits_1_and_prints_the_bad_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = write_lines(tmp_path / "bad.jsonl", _event(0, objects.ingress_class()), "[1, 2]")
    assert cli_replay(str(trace), "--fast") == 1
    assert "at line 2: expected a JSON object, got list" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"type": "ADDED", "object": {"kind": "Service"}}', "t: expected seconds"),
        ('{"t": -1, "type": "ADDED", "object": {"kind": "Service"}}', "t: expected a finite"),
        ('{"t": true, "type": "ADDED", "object": {"kind": "Service"}}', "t: expected seconds"),
        ('{"t": 1, "type": "CHANGED", "object": {"kind": "Service"}}', "type: expected ADDED"),
        ('{"t": 1, "type": "ADDED", "object": []}', "object: expected a mapping"),
        ('{"t": 1, "type": "ADDED", "object": {"metadata": {}}}', "object.kind"),
        ("not json", "invalid JSON"),
    ],
)
def test_parse_line_names_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_line(7, text)
    assert caught.value.line == 7
    assert reason in caught.value.reason
    assert str(caught.value).startswith("line 7: ")


async def test_unknown_kinds_and_bookmarks_are_counted_and_skipped(tmp_path: Path) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "shop"}}
    deployment = traceobjects.deployment("web", "shop", 2, image="web:1")
    trace = write_lines(
        tmp_path / "kinds.jsonl",
        _event(0, objects.ingress_class()),
        _event(0, pod),
        _event(0, objects.ingress("web", rules=[objects.rule("a.test", objects.path())])),
        _event(1.0, pod, "MODIFIED"),
        _event(1.5, deployment, "MODIFIED"),
        {
            "t": 1.7,
            "type": "BOOKMARK",
            "object": {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "12"}},
        },
        _event(2.0, pod, "DELETED"),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    summary = result.summary()
    assert summary["skipped_kinds"] == {"Pod": 3, "Deployment": 1}
    assert summary["skipped"] == 4
    assert summary["watch_markers"] == 1
    outcomes = {(e.line, e.kind): e.outcome for e in result.events}
    assert outcomes[(4, "Pod")] == outcomes[(5, "Deployment")] == "skipped"
    assert len(result.syncs) == 1, "skipped kinds must not cause syncs"
    assert result.error is None


async def test_redacted_tls_secrets_replay_with_a_placeholder_certificate(
    tmp_path: Path,
) -> None:
    meta = {"name": "shop-tls", "namespace": "default", "resourceVersion": "5"}
    secret: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": meta,
        "data": {"tls.crt": "REDACTED", "tls.key": "REDACTED"},
    }
    trace = write_lines(
        tmp_path / "redacted.jsonl",
        _event(0, objects.ingress_class()),
        _event(0, objects.service("web")),
        _event(0, objects.endpoint_slice("web", endpoints=["10.0.0.1"])),
        _event(0, secret),
        _event(
            0,
            objects.ingress(
                "web",
                rules=[objects.rule("shop.test", objects.path())],
                tls_entries=[objects.tls("shop.test", secret_name="shop-tls")],
            ),
        ),
        _event(1.0, {**secret, "metadata": {**meta, "resourceVersion": "9"}}, "MODIFIED"),
    )
    async with Replay(trace, dry_run_options(tmp_path / "w"), speed=None) as run:
        result = await run.wait()
        running = run.ingressd.worker.running
        build = run.ingressd.worker.last_build
    assert running is not None and build is not None
    (server,) = [s for s in running.servers if s.hostname == "shop.test"]
    assert server.certificate is not None and server.ssl_redirect
    assert build.problems == ()
    assert result.summary()["placeholder_certificates"] == 2
    # Both versions get the same placeholder: the redacted "rotation" changes nothing.
    assert [e.outcome for e in result.events][-1] == "unchanged"


# -- outputs -------------------------------------------------------------------------------------


def test_report_json_has_the_documented_keys(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert (
        cli_replay(str(small_trace(tmp_path / "t.jsonl")), "--fast", "--report", str(report)) == 0
    )
    data = json.loads(report.read_text())
    assert set(data) == {
        "version",
        "trace",
        "trace_sha256",
        "header",
        "from_header",
        "mode",
        "pace",
        "summary",
        "timeline",
        "events",
    }
    assert data["trace_sha256"] == hashlib.sha256((tmp_path / "t.jsonl").read_bytes()).hexdigest()
    assert (data["header"], data["from_header"]) == (None, {})
    assert (data["version"], data["mode"], data["pace"]) == (1, "dry-run", "fast")
    assert set(data["summary"]) == {
        "events",
        "skipped",
        "skipped_kinds",
        "watch_markers",
        "placeholder_certificates",
        "outcomes",
        "rejected_lines",
        "syncs",
        "decisions",
        "reloads",
        "dynamic_updates",
        "applied_without_reload",
        "applied_without_reload_after_initial",
        "sync_seconds",
        "event_to_applied_seconds",
        "trace_seconds",
        "wall_seconds",
        "final_config_hash",
        "final_model_sha256",
        "final_nginx_conf_sha256",
        "settled",
        "interrupted",
        "stopped_at",
    }
    assert set(data["summary"]["sync_seconds"]) == {"p50", "p90", "p99", "max"}
    assert set(data["timeline"][0]) == {
        "number",
        "t",
        "wall",
        "events",
        "kinds",
        "keys",
        "causes",
        "decision",
        "result",
        "reasons",
        "build_seconds",
        "diff_seconds",
        "apply_seconds",
        "total_seconds",
        "backends_posted",
        "error",
        "config_hash",
    }
    assert set(data["events"][0]) == {
        "line",
        "t",
        "type",
        "kind",
        "name",
        "outcome",
        "sync",
        "latency",
        "reason",
    }
    assert [s["decision"] for s in data["timeline"]] == ["reload", "dynamic", "nothing", "dynamic"]


def test_plot_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "replay.png"
    assert cli_replay(str(small_trace(tmp_path / "t.jsonl")), "--fast", "--plot", str(png)) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 30_000


def test_plot_without_matplotlib_says_what_to_install_before_replaying(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in sys.modules if n.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.delitem(sys.modules, "ingressd.tools.replay.plot", raising=False)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # ``import matplotlib`` now fails
    png = tmp_path / "replay.png"
    assert cli_replay(str(small_trace(tmp_path / "t.jsonl")), "--fast", "--plot", str(png)) == 2
    out, err = capsys.readouterr()
    assert "--plot needs matplotlib: pip install 'ingressd[plot]'" in err
    assert out == ""  # nothing replayed
    assert not png.exists()


def test_progress_bar_draws_only_on_a_terminal() -> None:
    class Terminal(list[str]):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

        def write(self, text: str) -> int:
            self.append(text)
            return len(text)

        def flush(self) -> None:
            pass

    clock = iter(float(i) for i in range(100))
    on_tty, piped = Terminal(True), Terminal(False)
    for stream in (on_tty, piped):
        bar = replay_report.ProgressBar(4, stream, width=4, clock=lambda: next(clock))  # type: ignore[arg-type]
        bar(2, 1)
        bar.close()
    assert piped == []
    assert on_tty[0] == "\rreplay [##..]  50%  2/4 events  1 syncs"
    assert on_tty[-1] == "\n"


# -- the initial state --------------------------------------------------------------------------


def _initial_lines(path: Path) -> list[dict[str, Any]]:
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if "t" in e and e["t"] == 0]


async def test_the_first_sync_counts_every_event_of_the_initial_state(tmp_path: Path) -> None:
    # The Store lets most of the initial load pass without an event (ConfigMaps, a Service
    # before the Ingress that uses it): the first sync still applied them all.
    trace = SAMPLES / "configmap.jsonl"
    initial = _initial_lines(trace)
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    first = result.syncs[0]
    assert first.events == len(initial) == 6
    assert first.kinds == dict(collections.Counter(e["object"]["kind"] for e in initial))
    assert first.keys[0] == "IngressClass ingressd ADDED"
    assert "initial + 6: ConfigMap x2" in replay_report.timeline_lines(result)[1]
    # Each applied event is counted by exactly one successful sync: the one that applied it.
    applied = collections.Counter(e.sync for e in result.events if e.outcome == "applied")
    assert {s.number: s.events for s in result.syncs if s.events} == dict(applied)


async def test_every_applied_event_of_a_rollout_is_counted_once(tmp_path: Path) -> None:
    result = await replay(ROLLING_UPDATE, dry_run_options(tmp_path / "w"))
    applied = [e for e in result.events if e.outcome == "applied"]
    assert sum(s.events for s in result.syncs if s.result == "ok") == len(applied)
    assert result.syncs[0].events == len(_initial_lines(ROLLING_UPDATE)) - 1  # - the Deployment


# -- rejected lines, empty traces ----------------------------------------------------------------


async def test_rejected_lines_are_named_with_line_number_and_reason_and_the_replay_goes_on(
    tmp_path: Path,
) -> None:
    nameless = objects.service("api")
    del nameless["metadata"]["name"]
    trace = write_lines(
        tmp_path / "rejected.jsonl",
        _event(0, objects.ingress_class()),
        {
            "t": 0,
            "type": "ADDED",
            "object": {"kind": "Ingress", "apiVersion": "networking.k8s.io/v1"},
        },
        _event(0, objects.ingress("web", rules=[objects.rule("a.test", objects.path())])),
        _event(1.0, nameless),
        _event(2.0, objects.ingress("b", rules=[objects.rule("b.test", objects.path())])),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    summary = result.summary()
    assert summary["outcomes"]["rejected"] == 2
    assert summary["rejected_lines"] == [
        {
            "line": 2,
            "kind": "Ingress",
            "name": "?",
            "reason": "metadata: missing (expected a mapping with a name)",
        },
        {
            "line": 4,
            "kind": "Service",
            "name": "default/None",
            "reason": "metadata.name: expected a non-empty string, got None",
        },
    ]
    assert result.error is None
    assert any("routes of b.test added" in s.reasons for s in result.syncs)  # it went on
    text = "\n".join(replay_report.summary_lines(result))
    assert "rejected           line 2 (Ingress ?): metadata: missing" in text
    assert "line 4 (Service default/None): metadata.name" in text


def test_the_summary_names_ten_rejected_lines_and_counts_the_rest(tmp_path: Path) -> None:
    events: list[EventLine] = [
        EventLine(n, 0.0, "ADDED", "Ingress", "?", "rejected", reason="metadata: missing")
        for n in range(1, 14)
    ]
    result = ReplayResult("t", "dry-run", None, events, [], {}, 0, 0, 0.0, None, None, None)
    text = replay_report.summary_lines(result)
    assert sum(line.startswith("rejected ") for line in text) == 10
    assert any("and 3 more rejected lines" in line for line in text)


@pytest.mark.parametrize(
    "lines",
    [
        [],
        ["", "   "],
        [json.dumps(HEADER.to_json())],
        ['{"t": 0, "type": "BOOKMARK", "object": {"kind": "Pod"}}'],
    ],
    ids=["empty", "blank", "header only", "bookmark only"],
)
def test_a_trace_without_events_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str]
) -> None:
    trace = write_lines(tmp_path / "empty.jsonl", *lines)
    assert cli_replay(str(trace), "--fast") == 1
    out, err = capsys.readouterr()
    assert "no events" in err and str(trace) in err
    assert "summary" not in out  # nothing replayed, no summary that looks like a result


# -- the header --------------------------------------------------------------------------------


def without_header(path: Path, into: Path) -> Path:
    first, rest = path.read_text().split("\n", 1)
    assert json.loads(first)["format"] == "ingressd-trace"
    into.write_text(rest)
    return into


async def test_replay_takes_the_configmap_from_the_trace_header(tmp_path: Path) -> None:
    sample = SAMPLES / "configmap.jsonl"
    headed = await replay(sample, dry_run_options(tmp_path / "a"))
    assert headed.from_header == {"configmap": "ingressd/ingressd-controller"}
    assert headed.header is not None and headed.header["recorder"]
    # The same trace without its header (as recorded before headers) still replays; it needs
    # the flag to give the same result, and without it the ConfigMap edits change nothing.
    old = without_header(sample, tmp_path / "old.jsonl")
    flagged = dataclasses.replace(
        dry_run_options(tmp_path / "b"), configmap=ObjectKey("ingressd/ingressd-controller")
    )
    with_flag = await replay(old, flagged)
    without_flag = await replay(old, dry_run_options(tmp_path / "c"))
    assert (with_flag.header, with_flag.from_header) == (None, {})
    assert headed.decisions() == with_flag.decisions()
    assert headed.final_config_hash == with_flag.final_config_hash
    assert without_flag.final_config_hash != headed.final_config_hash
    assert [s.applied_as for s in headed.syncs].count("reload") == 3
    assert [s.applied_as for s in without_flag.syncs].count("reload") == 1


async def test_the_command_line_wins_over_the_trace_header(tmp_path: Path) -> None:
    options = dataclasses.replace(
        dry_run_options(tmp_path / "w"), configmap=ObjectKey("ingressd/another")
    )
    result = await replay(SAMPLES / "configmap.jsonl", options)
    assert result.from_header == {}
    assert [s.applied_as for s in result.syncs].count("reload") == 1  # edits not the controller's


def test_the_command_prints_what_it_took_from_the_header(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_replay(str(SAMPLES / "configmap.jsonl"), "--fast") == 0
    out = capsys.readouterr().out
    assert "trace header: recorded by examples/traces/generate.py at 2026-03-02T10:00:00" in out
    assert "options taken from it: --configmap ingressd/ingressd-controller" in out


async def test_a_watched_namespace_from_the_header_skips_other_namespaces(tmp_path: Path) -> None:
    header = TraceHeader("ingressd 0.1.0", options={"watch-namespace": "shop"})
    trace = write_lines(
        tmp_path / "ns.jsonl",
        header.line(),
        _event(0, objects.ingress_class()),
        _event(0, objects.service("web", namespace="shop")),
        _event(0, objects.ingress("web", "shop", rules=[objects.rule("a.test", objects.path())])),
        _event(1, objects.ingress("web", "other", rules=[objects.rule("b.test", objects.path())])),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    assert result.from_header == {"watch-namespace": "shop"}
    other = result.events[-1]
    assert (other.name, other.outcome) == ("other/web", "skipped")
    assert other.reason == "namespace not watched (--watch-namespace shop)"
    assert result.summary()["skipped_kinds"] == {"Ingress (other namespaces)": 1}
    assert len(result.syncs) == 1  # b.test never reached the Store


@pytest.mark.parametrize(
    ("line", "first", "reason"),
    [
        (HEADER.line(), False, "a trace header (format) may only be the first line"),
        ('{"format": "ingressd-trace", "version": 2, "recorder": "x"}', True, "version 2 is newer"),
        ('{"format": "other", "version": 1, "recorder": "x"}', True, "header: format: expected"),
        (
            '{"format": "ingressd-trace", "version": 1, "recorder": "x", '
            '"options": {"configmap": "no-slash"}}',
            True,
            "header: options.configmap: expected NAMESPACE/NAME, got 'no-slash'",
        ),
    ],
)
def test_a_bad_header_is_named(line: str, first: bool, reason: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_line(3, line, first=first)
    assert caught.value.line == 3
    assert reason in caught.value.reason


def test_a_header_keeps_options_it_does_not_know() -> None:
    raw = {**HEADER.to_json(), "options": {"configmap": "a/b", "future-flag": [1, 2]}}
    header = parse_line(1, json.dumps(raw), first=True)
    assert isinstance(header, TraceHeader)
    assert header.configmap == "a/b" and header.options["future-flag"] == [1, 2]


# -- redacted Secrets ----------------------------------------------------------------------------


def _redacted_tls(meta: dict[str, Any], crt: str, key: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": meta,
        "data": {"tls.crt": crt, "tls.key": key},
    }


async def test_a_rotation_redacted_to_digests_replays_as_a_new_certificate(tmp_path: Path) -> None:
    meta = {"name": "shop-tls", "namespace": "default", "resourceVersion": "5"}
    v1 = _redacted_tls(
        meta, "REDACTED:hmac-sha256:1111111111111111", "REDACTED:hmac-sha256:aaaaaaaaaaaaaaaa"
    )
    v2 = _redacted_tls(
        {**meta, "resourceVersion": "9"},
        "REDACTED:hmac-sha256:2222222222222222",
        "REDACTED:hmac-sha256:bbbbbbbbbbbbbbbb",
    )
    relabelled = {**v2, "metadata": {**v2["metadata"], "labels": {"team": "shop"}}}
    trace = write_lines(
        tmp_path / "rotation.jsonl",
        _event(0, objects.ingress_class()),
        _event(0, objects.service("web")),
        _event(0, v1),
        _event(
            0,
            objects.ingress(
                "web",
                rules=[objects.rule("shop.test", objects.path())],
                tls_entries=[objects.tls("shop.test", secret_name="shop-tls")],
            ),
        ),
        _event(1.0, v2, "MODIFIED"),
        _event(2.0, relabelled, "MODIFIED"),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    rotation = result.syncs[1]
    assert (rotation.decision, rotation.result) == ("dynamic", "ok")  # --routing lua
    assert any("certificate" in reason for reason in rotation.reasons), rotation.reasons
    assert [e.outcome for e in result.events][-1] == "unchanged"  # same digests: same cert
    assert result.summary()["placeholder_certificates"] == 3


def test_placeholders_differ_by_digest_and_stay_as_before_for_bare_redacted() -> None:
    def placeholder(crt: str, key: str) -> str:
        event = WatchEvent(
            EventType.ADDED, _redacted_tls({"name": "s", "namespace": "n"}, crt, key)
        )
        unredacted = unredact(event)
        assert unredacted is not None
        return str(unredacted.object["data"]["tls.crt"])

    bare = placeholder("REDACTED", "REDACTED")
    assert bare == placeholder_tls_data("n", "s")[0]  # old traces keep their config hashes
    one = placeholder("REDACTED:hmac-sha256:0123456789abcdef", "REDACTED:hmac-sha256:0a0a0a0a")
    two = placeholder("REDACTED:hmac-sha256:fedcba9876543210", "REDACTED:hmac-sha256:0a0a0a0a")
    assert len({bare, one, two}) == 3
    assert one == placeholder(
        "REDACTED:hmac-sha256:0123456789abcdef", "REDACTED:hmac-sha256:0a0a0a0a"
    )
    assert (
        unredact(WatchEvent(EventType.ADDED, _redacted_tls({"name": "s"}, "REDACTED", "eA==")))
        is None
    )


# -- limits ----------------------------------------------------------------------------------------


def _nested(levels: int) -> str:
    """An event line whose JSON nests ``levels`` deep in all."""
    inner = "[" * (levels - 2) + "]" * (levels - 2)
    return '{"t": 1, "type": "ADDED", "object": {"kind": "Service", "x": ' + inner + "}}"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (_nested(101), "nested deeper than 100 levels"),
        (_nested(100_000), "nested deeper than 100 levels"),
        (
            '{"t": 1, "type": "ADDED", "object": {"kind": "S", "n": ' + "9" * 101 + "}}",
            "101 digits",
        ),
        (
            '{"t": 1, "type": "ADDED", "object": {"kind": "S", "n": ' + "9" * 5000 + "}}",
            "5000 digits",
        ),
        (
            '{"t": 1, "type": "ADDED", "object": {"kind": "S", "n": 0.' + "1" * 120 + "}}",
            "121 digits",
        ),
    ],
    ids=["101 levels", "100000 levels", "101 digits", "5000 digits", "long float"],
)
def test_a_line_past_a_limit_is_refused_naming_the_limit(text: str, reason: str) -> None:
    with pytest.raises(TraceError) as caught:
        parse_line(9, text)
    assert caught.value.line == 9
    assert reason in caught.value.reason


def test_a_line_within_the_limits_parses() -> None:
    assert isinstance(parse_line(1, _nested(100)), TraceEvent)
    number = '{"t": 1, "type": "ADDED", "object": {"kind": "S", "n": ' + "9" * 100 + "}}"
    assert isinstance(parse_line(1, number), TraceEvent)


async def test_a_line_over_4_mib_stops_the_replay_at_that_line(tmp_path: Path) -> None:
    huge = objects.service("huge")
    huge["metadata"]["annotations"] = {"big": "x" * (4 * 1024 * 1024)}
    trace = write_lines(
        tmp_path / "long.jsonl",
        _event(0, objects.ingress_class()),
        _event(0, objects.ingress("web", rules=[objects.rule("a.test", objects.path())])),
        _event(1.0, huge),
        _event(2.0, objects.ingress("b", rules=[objects.rule("b.test", objects.path())])),
    )
    result = await replay(trace, dry_run_options(tmp_path / "w"))
    assert result.error is not None
    assert (result.error.line, result.error.reason) == (
        3,
        "longer than 4 MiB, the limit for one trace line",
    )
    assert [e.line for e in result.events] == [1, 2]
    assert result.trace_sha256 is None  # not read to the end


def test_a_trace_file_over_1_gib_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    with trace.open("r+b") as stream:
        stream.truncate(1024**3 + 1)  # sparse: no disk used
    assert cli_replay(str(trace), "--fast") == 1
    out, err = capsys.readouterr()
    assert "more than the 1 GiB a trace file may hold" in err
    assert out == ""


async def test_the_reader_stops_where_the_file_passes_its_size_limit(tmp_path: Path) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    sizes = [len(line) + 1 for line in trace.read_text().splitlines()]
    limit = sum(sizes[:3]) + 10  # within line 4
    source = TraceSource(trace, speed=None, max_bytes=limit)
    fed: list[WatchEvent] = []
    source.load_once(fed.append)
    assert len(fed) == 3
    assert source.error is not None and source.error.line == 4
    assert "the trace passes" in source.error.reason


# -- output as it happens --------------------------------------------------------------------------


class Recorder:
    """A stdout that notes when each line was written."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty
        self.lines: list[tuple[float, str]] = []

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.lines.extend((time.monotonic(), line) for line in text.splitlines())
        return len(text)

    def flush(self) -> None:
        pass

    def written(self, needle: str) -> float:
        return next(t for t, line in self.lines if needle in line)


def _paced_trace(path: Path) -> Path:
    """One sync at the start, another 1.5 s later (replayed at speed 1)."""
    return write_lines(
        path,
        _event(0, objects.ingress_class()),
        _event(0, objects.ingress("a", rules=[objects.rule("a.test", objects.path())])),
        _event(1.5, objects.ingress("b", rules=[objects.rule("b.test", objects.path())])),
    )


@pytest.mark.parametrize("tty", [False, True], ids=["piped", "terminal"])
def test_sync_lines_are_printed_as_they_happen_unless_on_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tty: bool
) -> None:
    out = Recorder(tty)
    monkeypatch.setattr(sys, "stdout", out)
    trace = _paced_trace(tmp_path / "paced.jsonl")
    assert cli_replay(str(trace), "--speed", "1") == 0
    # (needles of the timeline, not of the log lines that may go to the same stdout)
    first = out.written("initial + ")
    second = out.written("Ingress default/b ADDED")
    summary = out.written("final config hash")
    if tty:  # the progress bar shows progress; the timeline comes with the summary
        assert summary - first < 0.5
    else:
        assert second - first > 1.0  # sync 1 was out while the trace still ran
        assert out.written("decision") < first  # the column header came first


def test_output_to_a_closed_pipe_is_dropped_not_raised(tmp_path: Path) -> None:
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as stream:
        output = Output(stream)
        output.line("sync 1")  # EPIPE: the reader is gone
        assert output.closed
        output.line("sync 2")  # dropped, silently
        stream.write("at exit Python flushes stdout\n")
        stream.flush()  # now /dev/null: does not raise


# -- comparing two replays -------------------------------------------------------------------------


def _report(tmp_path: Path, name: str, trace: Path, *flags: str) -> Path:
    path = tmp_path / f"{name}.json"
    assert cli_replay(str(trace), "--fast", "--report", str(path), *flags) in (0, 1)
    return path


def cli_compare(a: Path, b: Path) -> int:
    args = parser().parse_args(["replay", "--compare", str(a), str(b)])
    return asyncio.run(command(args, options_from))


def test_compare_says_two_replays_of_one_trace_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    a, b = _report(tmp_path, "a", trace), _report(tmp_path, "b", trace)
    capsys.readouterr()
    assert cli_compare(a, b) == 0
    out = capsys.readouterr().out
    assert "agree: 4 syncs with the same decisions, reasons and config hashes" in out


def test_compare_names_the_first_sync_where_the_decisions_diverge(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = SAMPLES / "configmap.jsonl"
    a = _report(tmp_path, "a", sample)  # the header's ConfigMap: its edits reload
    b = _report(tmp_path, "b", sample, "--configmap", "ingressd/another")
    capsys.readouterr()
    assert cli_compare(a, b) == 1
    out = capsys.readouterr().out
    assert "diverge at sync 2: decision, reasons, config hash differ" in out
    assert "global options changed: proxy-body-size 1m -> 8m" in out  # A's reasons
    assert "backend shop-web-80 endpoints 4 -> 3" in out  # B's
    assert "sync 1 agrees" in out


def test_compare_catches_a_config_that_differs_under_the_same_decisions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    a = _report(tmp_path, "a", trace)
    data = json.loads(a.read_text())
    data["timeline"][2]["config_hash"] = "0" * 64  # as if sync 3 rendered another nginx.conf
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    capsys.readouterr()
    assert cli_compare(a, b) == 1
    assert "diverge at sync 3: config hash differ" in capsys.readouterr().out


def test_compare_names_a_sync_only_one_replay_made(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = small_trace(tmp_path / "t.jsonl")
    a = _report(tmp_path, "a", trace)
    data = json.loads(a.read_text())
    del data["timeline"][3:]
    b = tmp_path / "b.json"
    b.write_text(json.dumps(data))
    capsys.readouterr()
    assert cli_compare(a, b) == 1
    assert "diverge at sync 4: only in A (the other ends after 3 syncs)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ('{"version": 1}', "not a replay report"),
        ('{"version": 9, "timeline": []}', "report version 9"),
        ('{"version": 1, "timeline": [{"number": "one"}]}', "timeline[0].reasons"),
    ],
)
def test_compare_refuses_a_file_that_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    good = _report(tmp_path, "a", small_trace(tmp_path / "t.jsonl"))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    capsys.readouterr()
    assert cli_compare(good, bad) == 2
    assert message in capsys.readouterr().err


def test_compare_and_a_trace_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_replay("t.jsonl", "--compare", "a.json", "b.json") == 2
    assert "not both" in capsys.readouterr().err


# -- the command line ----------------------------------------------------------------------------


def test_replay_offers_only_the_options_that_apply_to_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        parser().parse_args(["replay", "--help"])
    text = capsys.readouterr().out
    assert "--manifests" not in text and "--kubeconfig" not in text
    for flag in ("--fast", "--configmap", "--watch-namespace", "--compare", "--log-level"):
        assert flag in text
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["replay", "t.jsonl", "--manifests", "dir"])
    assert caught.value.code == 2


# -- live ------------------------------------------------------------------------------------------


@pytest.mark.nginx
async def test_live_replay_serves_traffic_during_and_after_the_replay(
    world_readable_tmp: Path,
) -> None:
    addresses = pod_addresses(3)
    port = free_port()
    trace = TraceBuilder()
    svc = objects.service("web", ports=[objects.service_port(80, "http", target_port=port)])
    trace.added(0, objects.ingress_class())
    trace.added(0, svc)
    trace.added(
        0, objects.endpoint_slice("web", endpoints=addresses[:1], port=port, port_name="http")
    )
    trace.added(0, objects.ingress("web", rules=[objects.rule("live.test", objects.path())]))
    trace.modified(
        1.5, objects.endpoint_slice("web", endpoints=addresses, port=port, port_name="http")
    )
    trace.write(world_readable_tmp / "live.jsonl")
    options = Options(
        work_dir=world_readable_tmp / "work",
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        status_address="127.0.0.1",
        worker_processes="2",
        allow_loopback_endpoints=True,  # the pods are on 127.x addresses
    )

    async def pods_seen(session: aiohttp.ClientSession, requests: int) -> collections.Counter[str]:
        seen: collections.Counter[str] = collections.Counter()
        for _ in range(requests):
            async with session.get(
                f"http://127.0.0.1:{options.http_port}/", headers={"Host": "live.test"}
            ) as resp:
                assert resp.status == 200
                seen[resp.headers["X-Pod"]] += 1
        return seen

    pods = EchoPods({a: f"web-{i}" for i, a in enumerate(addresses)}, port)
    await pods.start()
    try:
        async with (
            Replay(world_readable_tmp / "live.jsonl", options, live=True, speed=1.0) as run,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session,
        ):
            await run.ingressd.wait_until_synced()
            during = await pods_seen(session, 5)
            assert not run.source.done.is_set(), "the replay ended before the first request"
            assert set(during) <= {"web-0", "web-1", "web-2"}
            result = await run.wait()
            after = await pods_seen(session, 30)
    finally:
        await pods.stop()
    assert set(after) == {"web-0", "web-1", "web-2"}
    assert result.mode == "live"
    assert [s.applied_as for s in result.syncs] == ["reload", "dynamic"]
