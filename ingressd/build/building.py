"""Building: a Store snapshot in, the model of what nginx must do out.  Pure in behaviour.

    Snapshot --build_configuration(snapshot, options)--> BuildResult
        BuildCache (the Store's, reached through the snapshot; or one given):
        full         first build, options or IngressClasses changed, a change too wide, or
                     a case below that needs the whole picture: every Ingress is assembled
                     (``ingressd.build.assembly``, from per-object plans, ``ingressd.build.plan``)
        incremental  1. diff     this snapshot against the last build's, by object identity
                                 (the Store replaces an object on change, never edits one):
                                 Ingresses, Services, EndpointSlices, Secrets
                     2. seeds    changed Ingresses, and the Ingresses naming a changed
                                 Service (or its slices) or Secret
                     3. closure  + every Ingress sharing a server with one of those, + every
                                 Ingress naming a Service they name when a balancing policy is
                                 involved; repeated until closed (small, or a full build)
                     4. assemble those Ingresses only: the same code as a full build
                     5. splice   their servers, the backends those servers use and their
                                 problems into the last result; every other Server and Backend
                                 is the last result's object
        endpoints    only EndpointSlices changed, none with problems: the backends of their
                     Services get the new endpoints, nothing is assembled
        Either way the result is the one a full build of the snapshot gives
        (``tests/test_incremental.py`` checks it on random changes).

The last build is a ``BuildState`` (``ingressd.build.state``: inputs, result, the indexes of
the seeds and the closure, problems in buckets); splicing and the endpoint patch are
``ingressd.build.splicing``.

A full build falls back on the incremental path's assumptions where they do not hold: two
Services claiming one backend name (the oldest reference wins: global order), ``server-alias``
(aliases are checked against every server), canaries (they read other Ingresses' locations and
extend other backends).

Nothing is raised and nothing is logged: whatever is wrong in an object becomes a ``Problem``
naming the object and the field, and only the offending rule, path or TLS entry is skipped (the
whole Ingress only when its structure is broken).  An invalid annotation is left out (its default
applies), except the security ones (access lists, authentication, backend TLS): their Ingress's
locations then answer 503 (``LocationSettings.denied``) rather than serve unprotected.  Every
value copied into the model has passed ``ingressd.model.validation`` or ``ingressd.annotations``.
Results depend only on the snapshot's content, never on dict order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingressd.build.assembly import Assembly
from ingressd.build.plan import IngressPlan
from ingressd.build.reading import Memo, parse_tls_secret
from ingressd.build.selection import BuildOptions, is_ours, our_classes
from ingressd.build.splicing import (
    backends_by_service,
    patch_endpoints,
    splice_backends,
    splice_servers,
    used_backends,
)
from ingressd.build.state import BuildResult, BuildState
from ingressd.memory import gc_paused
from ingressd.model import BackendName, Configuration, ObjectKey
from ingressd.store import keyindex
from ingressd.store.snapshot import Snapshot

__all__ = [
    "BuildCache",
    "BuildOptions",
    "BuildResult",
    "build_configuration",
    "gc_paused",
    "parse_tls_secret",
]


def build_configuration(
    snapshot: Snapshot, options: BuildOptions, *, cache: BuildCache | None = None
) -> BuildResult:
    """Turn the snapshot's objects into the ``Configuration`` nginx must serve.

    ``cache``: where the last build is kept for the next one; by default the one of the Store
    the snapshot comes from (none for a hand-made snapshot: a full build every time).
    """
    if cache is None:
        cache = snapshot.derived.get(BuildCache) if snapshot.derived is not None else BuildCache()
    with gc_paused():
        return cache.build(snapshot, options)


_keys = keyindex.members


def _changes(old: Mapping[ObjectKey, Any], new: Mapping[ObjectKey, Any]) -> set[ObjectKey]:
    """Keys whose object was added, replaced or deleted between two snapshots."""
    if old is new:
        return set()
    get = old.get
    changed = {key for key, value in new.items() if get(key) is not value}
    added = sum(1 for key in changed if key not in old)
    if len(new) - added != len(old):
        changed.update(key for key in old if key not in new)
    return changed


class BuildCache:
    """The last build and what was derived from each object, for the next build.

    One per Store (``Store.snapshot()`` hands it on) or per caller; never shared between
    threads.  Holding it costs the memo of the objects' readings (plans, Service and slice
    views, certificates) and the indexes of ``BuildState``, a few KB per Ingress.
    """

    #: The closure of a change stays below this share of our Ingresses (else: full build).
    MAX_SHARE = 0.125

    def __init__(self) -> None:
        self.memo = Memo()
        self._state: BuildState | None = None
        #: How the last build went: ``full`` or ``incremental`` (and how many Ingresses), or
        #: ``endpoints`` (and how many backends got new endpoints).
        self.last: tuple[str, int] = ("none", 0)
        #: Service key -> names of the backends of the last result made from it; built on the
        #: first endpoint patch after a build that may have changed them.
        self._by_service: dict[ObjectKey, list[BackendName]] | None = None

    def build(self, snapshot: Snapshot, options: BuildOptions) -> BuildResult:
        state = self._state
        if state is not None and state.options == options:
            result = self._incremental(snapshot, state)
            if result is not None:
                if self.last[0] != "endpoints":
                    self._by_service = None
                return result
        self._by_service = None
        return self._full(snapshot, options)

    # -- full -------------------------------------------------------------------------------

    def _full(self, snapshot: Snapshot, options: BuildOptions) -> BuildResult:
        self._state = None
        if not self.memo.fits(options.annotation_options, options.allow_loopback_endpoints):
            self.memo = Memo(
                options.annotation_options,
                allow_loopback_endpoints=options.allow_loopback_endpoints,
            )
        memo = self.memo = self.memo.renewed()
        assembled = Assembly(snapshot, options, memo).run()
        memo.settle()
        memo.settings = assembled.settings
        memo.backends = dict(assembled.resolved)
        memo.servers = {s.hostname: s for s in assembled.servers}
        memo.final_backends = {b.name: b for b in assembled.backends}
        our, have_default, _ = our_classes(snapshot, options)
        state = BuildState(
            options=options,
            snapshot=snapshot,
            result=BuildResult(Configuration(), (), ()),
            our_classes=our,
            have_default=have_default,
            ours=memo.plans,
            ignored=set(assembled.ignored),
            class_problems=tuple(assembled.class_problems),
            ingress_problems=({}, {}, {}),
            finish_problems=tuple(assembled.finish_problems),
            collided=assembled.collided,
        )
        for plan in assembled.ours:
            state.index(plan)
        state.take_problems(assembled, ())
        result = BuildResult(
            Configuration(servers=tuple(assembled.servers), backends=tuple(assembled.backends)),
            state.problems(ordered=True),
            tuple(sorted(assembled.ignored)),
        )
        state.result = result
        self._state = state
        self.last = ("full", len(assembled.ours))
        return result

    # -- incremental --------------------------------------------------------------------------

    def _incremental(self, snapshot: Snapshot, state: BuildState) -> BuildResult | None:
        """The build of ``snapshot`` from the last one, or ``None`` when a full build is due."""
        old = state.snapshot
        if _changes(old.ingress_classes, snapshot.ingress_classes):
            return None
        ingresses = _changes(old.ingresses, snapshot.ingresses)
        services = _changes(old.services, snapshot.services)
        slices = _changes(old.endpoint_slices, snapshot.endpoint_slices)
        secrets = _changes(old.secrets, snapshot.secrets)
        state.snapshot = snapshot
        if not (ingresses or services or slices or secrets):
            self.last = ("incremental", 0)
            return state.result
        memo = self.memo
        for kind, keys in (("Service", services), ("EndpointSlice", slices), ("Secret", secrets)):
            for key in keys:
                memo.forget(kind, key)
        if not (ingresses or services or secrets):
            if self._by_service is None:
                self._by_service = backends_by_service(memo.final_backends.values())
            patched = patch_endpoints(snapshot, state, memo, self._by_service, slices)
            if patched is not None:
                result, replaced = patched
                self.last = ("endpoints", replaced)
                return result
        seeds = set(ingresses)
        for key in services | slices:
            seeds.update(_keys(state.services, key))
        for key in secrets:
            seeds.update(_keys(state.secrets, key))
        old_plans: dict[ObjectKey, IngressPlan] = {}
        ignored_changed = False
        for key in ingresses:
            old_plan = state.ours.pop(key, None)  # state.ours is memo.plans
            if old_plan is not None:
                state.unindex(old_plan)
                old_plans[key] = old_plan
            elif key in state.ignored:
                state.ignored.discard(key)
                ignored_changed = True
            raw = snapshot.ingresses.get(key)
            if raw is None:
                continue
            if is_ours(raw, state.options, state.our_classes, state.have_default):
                plan = state.ours[key] = memo.plan(key, raw)
                state.index(plan)
            else:
                state.ignored.add(key)
                ignored_changed = True
        if state.collided or state.aliased:
            return None
        closed = self._closure(seeds, old_plans, state)
        if closed is None:
            return None
        members, hosts = closed
        assembled = Assembly(snapshot, state.options, memo).run(members)
        if assembled.collided or assembled.finish_problems:
            return None
        resolved = memo.backends  # every backend resolved so far, by name
        for name, backend in assembled.resolved.items():
            known = resolved.get(name)
            if known is not None and (
                known.namespace != backend.namespace or known.service != backend.service
            ):
                return None  # two Services claim one name: the oldest reference decides
        previous = state.result.configuration
        made_servers = {s.hostname: s for s in assembled.servers if s.hostname in hosts}
        made_backends = {b.name: b for b in assembled.backends}
        final = memo.final_backends
        names: set[BackendName] = set()
        for host in hosts:
            names |= used_backends(memo.servers.get(host))
            names |= used_backends(made_servers.get(host))
        for name in names:
            for candidate in (final.get(name), made_backends.get(name)):
                if candidate is not None and (
                    candidate.policy.alternatives or candidate.policy.traffic_shaping is not None
                ):
                    return None  # canaries: their backends depend on other hosts
        servers = splice_servers(memo, previous, made_servers, hosts)
        backends = splice_backends(memo, previous, made_backends, names, hosts, state)
        # Committed: from here on the state follows the new result.
        memo.backends.update(assembled.resolved)
        for key in members:
            memo.settings.pop(key, None)
        memo.settings.update(assembled.settings)
        state.take_problems(assembled, members)
        state.finish_problems = ()  # alias problems, and no Ingress has aliases any more
        ignored = (
            tuple(sorted(state.ignored)) if ignored_changed else state.result.ignored
        )
        result = BuildResult(
            Configuration(servers=tuple(servers), backends=tuple(backends)),
            state.problems(ordered=False),
            ignored,
        )
        state.result = result
        self.last = ("incremental", len(members))
        return result

    def _closure(
        self, seeds: set[ObjectKey], old_plans: dict[ObjectKey, IngressPlan], state: BuildState
    ) -> tuple[set[ObjectKey], set[str]] | None:
        """The Ingresses to assemble again and the servers they may change, or ``None``."""
        limit = max(64, int(len(state.ours) * self.MAX_SHARE))
        members: set[ObjectKey] = set()
        hosts: set[str] = set()
        services: set[ObjectKey] = set()
        stack = list(seeds)
        while stack:
            key = stack.pop()
            if key in members:
                continue
            members.add(key)
            if len(members) > limit:
                return None
            for plan in (state.ours.get(key), old_plans.get(key)):
                if plan is None:
                    continue
                if plan.canary:
                    return None
                for host in plan.hosts:
                    if host not in hosts:
                        hosts.add(host)
                        stack.extend(_keys(state.hosts, host))
                policy = plan.sets_policy
                for service in plan.services:
                    if service not in services and (policy or service in state.policies):
                        services.add(service)
                        stack.extend(_keys(state.services, service))
        return members, hosts
