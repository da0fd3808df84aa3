"""The migration check: what ingressd would do differently from ingress-nginx, per Ingress.  Pure.

    Snapshot + BuildOptions --check()--> CheckReport
        for every Ingress ingressd would serve (oldest first):
            each annotation with our prefix: supported / supported with a difference (which) /
                unsupported / invalid value (why) / unknown / ignored / not allowed
            findings from building: a Service or Secret that is missing ("missing"), a host +
                path another Ingress already has ("conflict", naming the winner), anything else
                skipped ("problem")
    CheckReport --format_table()--> text for people;  --to_json()--> dict for scripts
    CheckReport.changes_behaviour: ``ingressd check`` exits 1 when true

What changes behaviour: an annotation that is unsupported, invalid, not allowed, or supported
with a difference that applies to its value; a missing Service or Secret; any other skipped
part.  Unknown and ignored annotations are listed but do not count (ingress-nginx ignores them
too), nor do host/path conflicts (the oldest Ingress wins in both).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ingressd.annotations import AnnotationOptions, Status, parse_annotations
from ingressd.build.building import BuildOptions, build_configuration
from ingressd.model import ObjectKey, Problem
from ingressd.store.snapshot import Snapshot

__all__ = ["AnnotationCheck", "CheckReport", "Finding", "IngressCheck", "check"]

#: Annotation statuses that mean ingressd behaves differently from ingress-nginx.
BEHAVIOUR_CHANGING = frozenset(
    {Status.DIFFERENT, Status.UNSUPPORTED, Status.INVALID, Status.NOT_ALLOWED}
)


@dataclass(frozen=True, slots=True)
class AnnotationCheck:
    annotation: str
    value: str
    status: Status
    detail: str = ""

    @property
    def changes_behaviour(self) -> bool:
        return self.status in BEHAVIOUR_CHANGING


@dataclass(frozen=True, slots=True)
class Finding:
    #: ``missing`` (a Service or Secret), ``conflict`` (host + path taken), ``problem``.
    kind: str
    field: str
    reason: str
    #: For conflicts: the Ingress that keeps the host + path.
    winner: str | None = None

    @property
    def changes_behaviour(self) -> bool:
        return self.kind != "conflict"


@dataclass(frozen=True, slots=True)
class IngressCheck:
    ingress: ObjectKey
    annotations: tuple[AnnotationCheck, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def changes_behaviour(self) -> bool:
        return any(a.changes_behaviour for a in self.annotations) or any(
            f.changes_behaviour for f in self.findings
        )


@dataclass(frozen=True, slots=True)
class CheckReport:
    prefix: str
    ingresses: tuple[IngressCheck, ...]
    #: Ingresses of other classes (not checked).
    not_served: tuple[ObjectKey, ...] = ()
    #: Problems of other objects (Secrets, EndpointSlices, IngressClasses, the ConfigMap).
    other: tuple[Problem, ...] = field(default=())

    @property
    def changes_behaviour(self) -> bool:
        return any(i.changes_behaviour for i in self.ingresses)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {s.value: 0 for s in Status}
        for ingress in self.ingresses:
            for a in ingress.annotations:
                out[a.status.value] += 1
        for kind in ("missing", "conflict", "problem"):
            out[kind] = sum(1 for i in self.ingresses for f in i.findings if f.kind == kind)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "annotationsPrefix": self.prefix,
            "changesBehaviour": self.changes_behaviour,
            "summary": self.counts(),
            "ingresses": [
                {
                    "ingress": i.ingress,
                    "changesBehaviour": i.changes_behaviour,
                    "annotations": [
                        {
                            "annotation": a.annotation,
                            "value": a.value,
                            "status": a.status.value,
                            "detail": a.detail,
                            "changesBehaviour": a.changes_behaviour,
                        }
                        for a in i.annotations
                    ],
                    "findings": [
                        {
                            "kind": f.kind,
                            "field": f.field,
                            "reason": f.reason,
                            **({"winner": f.winner} if f.winner else {}),
                            "changesBehaviour": f.changes_behaviour,
                        }
                        for f in i.findings
                    ],
                }
                for i in self.ingresses
            ],
            "notServed": list(self.not_served),
            "otherProblems": [str(p) for p in self.other],
        }

    def format_table(self) -> str:
        """One line per annotation and finding, grouped by Ingress, then a summary."""
        prefix = self.prefix.rstrip("/") + "/"
        rows: list[tuple[str, str, str, str]] = []
        for ingress in self.ingresses:
            name = str(ingress.ingress)
            if not ingress.annotations and not ingress.findings:
                rows.append((name, "-", "ok", "no annotations, nothing missing"))
            for a in ingress.annotations:
                short = (
                    a.annotation[len(prefix) :]
                    if a.annotation.startswith(prefix)
                    else (a.annotation)
                )
                rows.append((name, short, a.status.value, a.detail))
                name = ""
            for f in ingress.findings:
                detail = f"{f.field}: {f.reason}"
                rows.append((name, f"({f.kind})", "conflict" if f.winner else f.kind, detail))
                name = ""
        widths = [max([len(r[i]) for r in rows] + [len(h)]) for i, h in enumerate(_HEADER[:3])]
        lines = [_row(_HEADER, widths)]
        lines += [_row(r, widths) for r in rows]
        counts = self.counts()
        lines.append("")
        lines.append(
            f"{len(self.ingresses)} Ingresses checked, annotations: "
            + ", ".join(f"{counts[s.value]} {s.value}" for s in Status if counts[s.value])
            + f"; {counts['missing']} missing Service/Secret, {counts['conflict']} host/path"
            f" conflict(s), {counts['problem']} other problem(s)."
        )
        if self.not_served:
            lines.append(
                f"{len(self.not_served)} Ingresses of other classes not checked (see "
                "--ingress-class): " + ", ".join(self.not_served)
            )
        for problem in self.other:
            lines.append(f"also: {problem}")
        changed = sum(1 for i in self.ingresses if i.changes_behaviour)
        lines.append(
            f"Behaviour would change for {changed} of {len(self.ingresses)} Ingresses."
            if changed
            else "No behaviour change expected."
        )
        return "\n".join(lines) + "\n"


_HEADER = ("INGRESS", "ANNOTATION", "STATUS", "DETAIL")


def _row(cells: Iterable[str], widths: list[int]) -> str:
    cells = list(cells)
    left = "  ".join(c.ljust(w) for c, w in zip(cells[:3], widths, strict=True))
    return f"{left}  {cells[3]}".rstrip()


def _finding(problem: Problem) -> Finding:
    if problem.winner:
        return Finding("conflict", problem.field, problem.reason, problem.winner)
    if problem.missing:
        return Finding("missing", problem.field, problem.reason)
    return Finding("problem", problem.field, problem.reason)


def check(
    snapshot: Snapshot, options: BuildOptions, *, option_problems: Iterable[Problem] = ()
) -> CheckReport:
    """What ingressd would make of the snapshot's Ingresses, as a report; ``option_problems``
    (the ConfigMap's unknown keys and invalid values) are listed with the other problems."""
    result = build_configuration(snapshot, options)
    annotation_options = AnnotationOptions(
        prefix=options.annotations_prefix, allow_snippets=options.allow_snippet_annotations
    )
    ignored = set(result.ignored)
    by_ingress: dict[str, list[Problem]] = {}
    other: list[Problem] = list(option_problems)
    for problem in result.problems:
        if problem.kind == "Ingress":
            by_ingress.setdefault(problem.key, []).append(problem)
        else:
            other.append(problem)
    checks: list[IngressCheck] = []
    for key in sorted(k for k in snapshot.ingresses if k not in ignored):
        raw = snapshot.ingresses[key]
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if not isinstance(annotations, dict):
            annotations = {}
        parsed = parse_annotations(key, annotations, annotation_options)
        reported = {
            (r.field, f"{r.status.value}: {r.detail}" if r.detail else r.status.value)
            for r in parsed.report
        }
        findings = [
            _finding(p) for p in by_ingress.get(key, []) if (p.field, p.reason) not in reported
        ]
        checks.append(
            IngressCheck(
                ingress=key,
                annotations=tuple(
                    AnnotationCheck(r.key, str(annotations.get(r.key, "")), r.status, r.detail)
                    for r in parsed.report
                ),
                findings=tuple(findings),
            )
        )
    return CheckReport(
        prefix=options.annotations_prefix,
        ingresses=tuple(checks),
        not_served=tuple(sorted(ignored)),
        other=tuple(other),
    )
