"""Quarantine: Ingresses that make ``nginx -t`` refuse the configuration, found and set aside.

    nginx -t refuses a candidate
        --suspects (Ingresses changed since the running model, or all at the first sync)-->
        isolate(suspects, passes)   bisection: candidates without part of the suspects are
                                    checked with ``nginx -t`` until the culprits are known
        --> Quarantine.add(key, object, why)
    every sync: Quarantine.apply(snapshot) -> the snapshot with each quarantined Ingress's
                last version nginx took (or without it, when it is new) and a Problem for each
                (an Ingress leaves quarantine as soon as its object changes: it is tried again)

What ingressd validates never reaches ``nginx -t`` broken; this is the second line for what slips
through (a snippet, a combination nginx refuses that no grammar knows): one tenant's object
never freezes every other tenant's changes.  ingress-nginx blocks every reload until the object
is fixed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

import structlog

from ingressd.model import ObjectKey, Problem
from ingressd.store.snapshot import KubeObject, Snapshot

__all__ = ["Quarantine", "isolate", "suspects"]

log = structlog.get_logger("ingressd.quarantine")

#: At most this many culprits are looked for in one rejection (each costs log2(n) nginx -t).
MAX_CULPRITS = 8


class Quarantine:
    """The Ingresses set aside, each with the very object that failed and why."""

    def __init__(self) -> None:
        #: key -> (the object that failed, why, the version the running model was built from)
        self._held: dict[ObjectKey, tuple[KubeObject, str, KubeObject | None]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def add(self, key: ObjectKey, obj: KubeObject, why: str, previous: KubeObject | None) -> None:
        """Set ``obj`` aside; ``previous`` (its last version nginx took) keeps serving."""
        self._held[key] = (obj, why, previous)
        log.warning(
            "ingress quarantined: nginx -t refused the configuration with it",
            ingress=key,
            error=why,
        )

    def apply(self, snapshot: Snapshot) -> tuple[Snapshot, tuple[Problem, ...]]:
        """``snapshot`` with each quarantined Ingress's last version nginx took (without it
        when it has none), and a Problem for each.

        An Ingress whose object changed (or that is gone) leaves quarantine here.
        """
        held = self._held
        for key in [k for k, (obj, _, _) in held.items() if snapshot.ingresses.get(k) is not obj]:
            del held[key]
            log.info("ingress released from quarantine: it changed", ingress=key)
        if not held:
            return snapshot, ()
        kept = dict(snapshot.ingresses)
        problems: list[Problem] = []
        for key, (_, why, previous) in sorted(held.items()):
            if previous is None:
                del kept[key]
            else:
                kept[key] = previous
            still = "its previous version keeps serving" if previous is not None else "not served"
            problems.append(
                Problem(
                    "Ingress",
                    key,
                    "spec",
                    f"quarantined: nginx -t refused the configuration with this version ({why}); "
                    f"{still}; the others apply, and it is tried again when it changes",
                )
            )
        return dataclasses.replace(snapshot, ingresses=kept), tuple(problems)


def suspects(snapshot: Snapshot, running: Snapshot | None) -> list[ObjectKey]:
    """The Ingresses that may have broken the candidate: those changed since the running
    model's snapshot (every one at the first sync), sorted."""
    if running is None:
        return sorted(snapshot.ingresses)
    before = running.ingresses
    return sorted(k for k, v in snapshot.ingresses.items() if before.get(k) is not v)


async def isolate(
    candidates: Sequence[ObjectKey], passes: Callable[[set[ObjectKey]], Awaitable[bool]]
) -> list[ObjectKey]:
    """The culprits among ``candidates``: ``passes(excluded)`` tells whether the configuration
    without ``excluded`` passes ``nginx -t``; the one with every candidate is known to fail.

    Each culprit is found by bisection over the prefix of the candidates included: the
    shortest failing prefix ends with a culprit.  The culprits are returned only once the
    configuration without them passes: when removing candidates does not help (the cause is
    elsewhere: a ConfigMap option, an unchanged object), the result is empty and nothing is
    quarantined.  With one culprit among two suspects this costs a single ``nginx -t``.
    """
    known: dict[frozenset[ObjectKey], bool] = {}

    async def ok(excluded: set[ObjectKey]) -> bool:
        key = frozenset(excluded)
        if key not in known:
            known[key] = await passes(excluded)
        return known[key]

    culprits: list[ObjectKey] = []
    while len(culprits) < MAX_CULPRITS:
        pool = [c for c in candidates if c not in culprits]
        if not pool:
            break
        # including pool[:hi] fails; including pool[:lo] is taken to pass (checked at the end)
        lo, hi = 0, len(pool)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await ok({*culprits, *pool[mid:]}):
                lo = mid
            else:
                hi = mid
        culprits.append(pool[hi - 1])
        if await ok(set(culprits)):
            return culprits
    return []
