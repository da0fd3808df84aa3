"""Comparing two replays of one trace: ``ingressd replay --compare A.json B.json``.

    A.json, B.json (``replay --report`` files) --load_report()--> Report
        --compare()--> Comparison: the first sync where the two diverge (decision and result,
                       reasons, config hash after it), or none: they agree
        --Comparison.lines()--> stdout;  exit 0 they agree, 1 they diverge, 2 not a report

The tool for checking a controller upgrade against a recorded trace: replay the trace with
the running version and with the new one (``--fast --dry-run``: deterministic), then compare.
Syncs are matched by number.  When every common sync agrees, a replay with more syncs diverges
at its first extra one; then the final config hashes are compared too.  Notes, which do not
change the verdict, say when the two replayed different traces (``trace_sha256``), when either
was paced (its syncs coalesce by timing, so they may differ from run to run), and when a report
predates per-sync config hashes.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ingressd.tools.replay.report import REPORT_VERSION

__all__ = ["Comparison", "Report", "ReportError", "compare", "compare_files", "load_report"]


class ReportError(ValueError):
    """A file that is not a ``replay --report`` file."""


@dataclass(frozen=True, slots=True)
class Sync:
    """What two replays must agree on for one sync, and what locates it."""

    number: int
    t: float
    decision: str
    result: str
    reasons: tuple[str, ...]
    config_hash: str | None
    keys: tuple[str, ...]
    events: int

    @property
    def outcome(self) -> str:
        return self.decision if self.result == "ok" else f"{self.decision}:{self.result}"


@dataclass(frozen=True, slots=True)
class Report:
    path: str
    trace: str
    trace_sha256: str | None
    mode: str
    pace: str
    syncs: tuple[Sync, ...]
    final_config_hash: str | None


def _field(entry: dict[str, Any], name: str, kinds: type | tuple[type, ...], where: str) -> Any:
    value = entry.get(name)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ReportError(f"{where}.{name}: unexpected value {value!r}")
    return value


def _sync(entry: object, where: str) -> Sync:
    if not isinstance(entry, dict):
        raise ReportError(f"{where}: expected an object")
    reasons = _field(entry, "reasons", list, where)
    keys = entry.get("keys", [])
    config_hash = entry.get("config_hash")
    if config_hash is not None and not isinstance(config_hash, str):
        raise ReportError(f"{where}.config_hash: unexpected value {config_hash!r}")
    return Sync(
        number=_field(entry, "number", int, where),
        t=float(_field(entry, "t", (int, float), where)),
        decision=_field(entry, "decision", str, where),
        result=_field(entry, "result", str, where),
        reasons=tuple(str(r) for r in reasons),
        config_hash=config_hash,
        keys=tuple(str(k) for k in keys) if isinstance(keys, list) else (),
        events=entry["events"] if isinstance(entry.get("events"), int) else 0,
    )


def load_report(path: Path) -> Report:
    """Read a ``--report`` file; ``ReportError`` saying what is wrong with it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"cannot read it: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ReportError(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or "timeline" not in data:
        raise ReportError("not a replay report (written by ingressd replay --report)")
    if data.get("version") != REPORT_VERSION:
        raise ReportError(
            f"report version {data.get('version')!r}; this ingressd reads version {REPORT_VERSION}"
        )
    timeline = data["timeline"]
    if not isinstance(timeline, list):
        raise ReportError("timeline: expected a list")
    summary = data.get("summary")
    final = summary.get("final_config_hash") if isinstance(summary, dict) else None
    sha = data.get("trace_sha256")
    return Report(
        path=str(path),
        trace=str(data.get("trace", "?")),
        trace_sha256=sha if isinstance(sha, str) else None,
        mode=str(data.get("mode", "?")),
        pace=str(data.get("pace", "?")),
        syncs=tuple(_sync(entry, f"timeline[{i}]") for i, entry in enumerate(timeline)),
        final_config_hash=final if isinstance(final, str) else None,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict: ``agree``, or where (``number``) and how (``differences``) they diverge."""

    a: Report
    b: Report
    agree: bool
    #: The first sync that differs (None when they agree, or only the final hashes differ).
    number: int | None = None
    #: What differs there: ``decision``, ``reasons``, ``config hash``, ``only in A`` ...
    differences: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: False when a report has no per-sync config hashes (then decisions and reasons only).
    hashes_compared: bool = True

    def lines(self) -> list[str]:
        a, b = self.a, self.b
        out = [f"compare A {a.path}", f"        B {b.path}"]
        for name, report in (("A", a), ("B", b)):
            out.append(
                f"  {name}  {report.trace} ({report.mode}, {report.pace}): "
                f"{len(report.syncs)} syncs, final config hash {_short(report.final_config_hash)}"
            )
        out.extend(f"  note: {note}" for note in self.notes)
        if self.agree:
            same = (
                "decisions, reasons and config hashes"
                if self.hashes_compared
                else ("decisions and reasons")
            )
            out.append(
                f"agree: {len(a.syncs)} syncs with the same {same}, and the same final config hash"
            )
            return out
        if self.number is None:
            out.append(
                f"diverge after the last sync: final config hash A {_short(a.final_config_hash)}"
                f", B {_short(b.final_config_hash)}"
            )
            return out
        first = self.number
        where = {s.number: s for s in a.syncs}, {s.number: s for s in b.syncs}
        if self.differences[0].startswith("only in"):
            what = f"{self.differences[0]} (the other ends after {first - 1} syncs)"
        else:
            what = f"{', '.join(self.differences)} differ"
        out.append(f"diverge at sync {first}: {what}")
        for name, syncs in zip(("A", "B"), where, strict=True):
            sync = syncs.get(first)
            if sync is None:
                out.append(f"  {name}  (no sync {first}: {len(syncs)} syncs in all)")
                continue
            out.append(
                f"  {name}  trace t {sync.t:.3f}s  {sync.outcome:<16} "
                f"config hash {_short(sync.config_hash)}  events: "
                f"{'; '.join(sync.keys) or sync.events}"
            )
            out.append(f"      reasons: {'; '.join(sync.reasons) or '-'}")
        if first == 2:
            out.append("  sync 1 agrees")
        elif first > 2:
            out.append(f"  syncs 1 to {first - 1} agree")
        return out


def _short(digest: str | None) -> str:
    return digest[:16] if digest else "-"


def compare(a: Report, b: Report) -> Comparison:
    """The first sync where ``a`` and ``b`` diverge, or that they agree."""
    notes = []
    if a.trace_sha256 and b.trace_sha256 and a.trace_sha256 != b.trace_sha256:
        notes.append("the two replayed different traces (their sha256 differ)")
    paced = [name for name, r in (("A", a), ("B", b)) if r.pace != "fast"]
    if paced:
        notes.append(
            f"{' and '.join(paced)} paced ({'/'.join(r.pace for r in (a, b))}): syncs coalesce "
            "by timing, so they may differ between two runs of one version; compare --fast "
            "replays"
        )
    hashes = all(s.config_hash is not None for s in (*a.syncs, *b.syncs) if s.result == "ok")
    if not hashes:
        notes.append("a report without per-sync config hashes: decisions and reasons compared")
    for left, right in zip(a.syncs, b.syncs, strict=False):
        differences = []
        if left.outcome != right.outcome:
            differences.append("decision")
        if left.reasons != right.reasons:
            differences.append("reasons")
        if hashes and left.config_hash != right.config_hash:
            differences.append("config hash")
        if differences:
            return Comparison(a, b, False, left.number, tuple(differences), tuple(notes), hashes)
    if len(a.syncs) != len(b.syncs):
        longer, name = (a, "A") if len(a.syncs) > len(b.syncs) else (b, "B")
        extra = longer.syncs[min(len(a.syncs), len(b.syncs))]
        return Comparison(a, b, False, extra.number, (f"only in {name}",), tuple(notes), hashes)
    if a.final_config_hash != b.final_config_hash:
        return Comparison(a, b, False, None, ("final config hash",), tuple(notes), hashes)
    return Comparison(a, b, True, notes=tuple(notes), hashes_compared=hashes)


def compare_files(a: Path, b: Path, *, out: TextIO) -> int:
    """``replay --compare``: print the verdict; 0 they agree, 1 they diverge, 2 a bad file."""
    reports = []
    for path in (a, b):
        try:
            reports.append(load_report(path))
        except ReportError as exc:
            out.flush()
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    verdict = compare(*reports)
    for line in verdict.lines():
        out.write(line + "\n")
    out.flush()
    return 0 if verdict.agree else 1
