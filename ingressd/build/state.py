"""Build state: the last build, kept as the next build needs it.

    BuildCache (``ingressd.build.building``), after a full build --> BuildState
        inputs       options, snapshot, our IngressClasses, our Ingresses' plans, the others
        result       the BuildResult handed out (its servers and backends spliced next time)
        indexes      index(plan) / unindex(plan): server host, Service, Secret -> our Ingresses
                     that may change it or name it; per Service, how many of them set a
                     balancing policy; our Ingresses with ``server-alias``
        problems     in the buckets of ``Assembled`` (``ingressd.build.assembly``), with who met
                     each object bucket; take_problems(assembled, keys) replaces those of the
                     Ingresses ``keys`` with what an assembly of them found; problems() lists
                     them in ``BuildResult.problems`` order
    an incremental build reads the indexes for its seeds and closure, and updates the state
    only once its result is sure (``ingressd.build.splicing`` splices the result)

A few KB per Ingress: sets of keys, no model values beyond the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ingressd.build.assembly import Assembled, ObjectBucket
from ingressd.build.plan import IngressPlan
from ingressd.build.selection import BuildOptions
from ingressd.model import Configuration, ObjectKey, Problem
from ingressd.store import keyindex
from ingressd.store.snapshot import Snapshot

__all__ = ["BuildResult", "BuildState"]

_Keys = keyindex.Entry
_add = keyindex.add
_discard = keyindex.discard


@dataclass(frozen=True, slots=True)
class BuildResult:
    """What a build hands out (``ingressd.build.building.build_configuration``)."""

    configuration: Configuration
    #: Everything refused: IngressClasses; EndpointSlices and Secrets (by kind and key); then
    #: each Ingress's, oldest first (rules, then default backends, then canaries); aliases.
    problems: tuple[Problem, ...]
    #: Ingresses of other classes, sorted; not problems.
    ignored: tuple[ObjectKey, ...]


@dataclass(slots=True)
class BuildState:
    """The last build: its inputs, its result and the indexes an incremental build needs."""

    options: BuildOptions
    snapshot: Snapshot
    result: BuildResult
    our_classes: set[str]
    have_default: bool
    #: Our Ingresses' plans; the other Ingresses.
    ours: dict[ObjectKey, IngressPlan]
    ignored: set[ObjectKey]
    #: Server host name -> our Ingresses that may change it (``IngressPlan.hosts``).
    hosts: dict[str, _Keys] = field(default_factory=dict)
    #: Service / Secret key -> our Ingresses naming it.
    services: dict[ObjectKey, _Keys] = field(default_factory=dict)
    secrets: dict[ObjectKey, _Keys] = field(default_factory=dict)
    #: Service key -> how many of our Ingresses naming it set a balancing policy.
    policies: dict[ObjectKey, int] = field(default_factory=dict)
    #: Our Ingresses with ``server-alias``.
    aliased: set[ObjectKey] = field(default_factory=set)
    #: Problems in the buckets of ``Assembled``; who met each object bucket.
    class_problems: tuple[Problem, ...] = ()
    object_problems: dict[ObjectBucket, tuple[Problem, ...]] = field(default_factory=dict)
    touched: dict[ObjectBucket, set[ObjectKey]] = field(default_factory=dict)
    touched_by: dict[ObjectKey, set[ObjectBucket]] = field(default_factory=dict)
    ingress_problems: tuple[dict[ObjectKey, tuple[Problem, ...]], ...] = ()
    finish_problems: tuple[Problem, ...] = ()
    collided: bool = False

    def index(self, plan: IngressPlan) -> None:
        key = plan.key
        for host in plan.hosts:
            _add(self.hosts, host, key)
        for service in plan.services:
            _add(self.services, service, key)
        for secret in plan.secrets:
            _add(self.secrets, secret, key)
        if plan.sets_policy:
            for service in plan.services:
                self.policies[service] = self.policies.get(service, 0) + 1
        if plan.annotations.aliases:
            self.aliased.add(key)

    def unindex(self, plan: IngressPlan) -> None:
        key = plan.key
        for host in plan.hosts:
            _discard(self.hosts, host, key)
        for service in plan.services:
            _discard(self.services, service, key)
        for secret in plan.secrets:
            _discard(self.secrets, secret, key)
        if plan.sets_policy:
            for service in plan.services:
                left = self.policies.get(service, 0) - 1
                if left > 0:
                    self.policies[service] = left
                else:
                    self.policies.pop(service, None)
        self.aliased.discard(key)

    def take_problems(self, assembled: Assembled, keys: Iterable[ObjectKey]) -> None:
        """Replace the problems of Ingresses ``keys`` with those ``assembled`` found."""
        for key in keys:
            for phase in self.ingress_problems:
                phase.pop(key, None)
            for bucket in self.touched_by.pop(key, ()):
                users = self.touched[bucket]
                users.discard(key)
                if not users:
                    del self.touched[bucket]
                    del self.object_problems[bucket]
        for phase, found in zip(self.ingress_problems, assembled.ingress_problems, strict=True):
            for key, problems in found.items():
                phase[key] = tuple(problems)
        for bucket, users in assembled.touched.items():
            self.object_problems[bucket] = assembled.object_problems[bucket]
            self.touched.setdefault(bucket, set()).update(users)
            for user in users:
                self.touched_by.setdefault(user, set()).add(bucket)

    def problems(self, *, ordered: bool) -> tuple[Problem, ...]:
        """Every problem, in ``BuildResult.problems`` order (``ordered``: each phase's dict is
        already oldest Ingress first)."""
        out = list(self.class_problems)
        for bucket in sorted(self.object_problems):
            out.extend(self.object_problems[bucket])
        for phase in self.ingress_problems:
            keys: Iterable[ObjectKey] = phase
            if not ordered and len(phase) > 1:
                keys = sorted(phase, key=lambda k: self.ours[k].age)
            for key in keys:
                out.extend(phase[key])
        out.extend(self.finish_problems)
        return tuple(out)

