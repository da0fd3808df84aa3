"""Building: a Store snapshot in, the model of what nginx must do out.  Pure in behaviour.

    Snapshot --build_configuration(snapshot, options)--> BuildResult
        BuildCache (the Store's, reached through the snapshot; or one given):
        full         first build, options or IngressClasses changed, a change too wide, or
                     a case below that needs the whole picture: every Ingress is assembled
                     (``ingressd.assembling``, from per-object plans, ``ingressd.planning``)
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

A full build falls back on the incremental path's assumptions where they do not hold: two
Services claiming one backend name (the oldest reference wins: global order), ``server-alias``
(aliases are checked against every server), canaries (they read other Ingresses' locations and
extend other backends).

Nothing is raised and nothing is logged: whatever is wrong in an object becomes a ``Problem``
naming the object and the field, and only the offending rule, path or TLS entry is skipped (the
whole Ingress only when its structure is broken).  An invalid annotation is left out (its default
applies), except the security ones (access lists, authentication, backend TLS): their Ingress's
locations then answer 503 (``LocationSettings.denied``) rather than serve unprotected.  Every
value copied into the model has passed ``ingressd.validation`` or ``ingressd.annotations``.
Results depend only on the snapshot's content, never on dict order.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ingressd import kube
from ingressd.assembling import (
    Assembled,
    Assembly,
    BuildOptions,
    ObjectBucket,
    is_ours,
    our_classes,
)
from ingressd.memory import gc_paused
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Configuration,
    ObjectKey,
    Problem,
    Server,
)
from ingressd.planning import IngressPlan
from ingressd.reading import Memo, parse_tls_secret
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


@dataclass(frozen=True, slots=True)
class BuildResult:
    configuration: Configuration
    #: Everything refused: IngressClasses; EndpointSlices and Secrets (by kind and key); then
    #: each Ingress's, oldest first (rules, then default backends, then canaries); aliases.
    problems: tuple[Problem, ...]
    #: Ingresses of other classes, sorted; not problems.
    ignored: tuple[ObjectKey, ...]


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


@dataclass(slots=True)
class _State:
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


_Keys = keyindex.Entry
_add = keyindex.add
_discard = keyindex.discard
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


def _used(server: Server | None) -> set[BackendName]:
    """Backends a server's locations use (as ``Assembly.finish`` counts them)."""
    found: set[BackendName] = set()
    if server is not None:
        for location in server.locations:
            if location.backend:
                found.add(location.backend)
            settings = location.settings
            if settings.default_backend and settings.denied is None:
                found.add(settings.default_backend)
    return found


def _server_order(server: Server) -> tuple[bool, str]:
    return (server.hostname != CATCH_ALL, server.hostname)


def _backend_order(backend: Backend) -> BackendName:
    return backend.name


class BuildCache:
    """The last build and what was derived from each object, for the next build.

    One per Store (``Store.snapshot()`` hands it on) or per caller; never shared between
    threads.  Holding it costs the memo of the objects' readings (plans, Service and slice
    views, certificates) and the indexes of ``_State``, a few KB per Ingress.
    """

    #: The closure of a change stays below this share of our Ingresses (else: full build).
    MAX_SHARE = 0.125

    def __init__(self) -> None:
        self.memo = Memo()
        self._state: _State | None = None
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
        if self.memo.annotation_options != options.annotation_options:
            self.memo = Memo(options.annotation_options)
        memo = self.memo = self.memo.renewed()
        assembled = Assembly(snapshot, options, memo).run()
        memo.settle()
        memo.settings = assembled.settings
        memo.backends = dict(assembled.resolved)
        memo.servers = {s.hostname: s for s in assembled.servers}
        memo.final_backends = {b.name: b for b in assembled.backends}
        our, have_default, _ = our_classes(snapshot, options)
        state = _State(
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

    def _incremental(self, snapshot: Snapshot, state: _State) -> BuildResult | None:
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
            patched = self._patch_endpoints(snapshot, state, slices)
            if patched is not None:
                return patched
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
            names |= _used(memo.servers.get(host))
            names |= _used(made_servers.get(host))
        for name in names:
            for candidate in (final.get(name), made_backends.get(name)):
                if candidate is not None and (
                    candidate.policy.alternatives or candidate.policy.traffic_shaping is not None
                ):
                    return None  # canaries: their backends depend on other hosts
        servers = self._splice_servers(previous, made_servers, hosts)
        backends = self._splice_backends(previous, made_backends, names, hosts, state)
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

    def _patch_endpoints(
        self, snapshot: Snapshot, state: _State, services: set[ObjectKey]
    ) -> BuildResult | None:
        """Only EndpointSlices changed: the backends of their Services get the new endpoints,
        everything else is the last result's.  ``None`` (the general path decides) when the
        slices of one of them have or had problems: those are listed per Service and
        Ingress, which this path does not redo.

        An endpoint change cannot change which Ingress wins a path, which backend a location
        uses or any problem but the slices' own, so no Ingress is assembled again: the cost
        is that of reading the changed slices, not of the Ingresses naming their Service.
        """
        memo = self.memo
        final = memo.final_backends
        by_service = self._by_service
        if by_service is None:
            by_service = self._by_service = {}
            for backend in final.values():
                key = ObjectKey(f"{backend.namespace}/{backend.service}")
                by_service.setdefault(key, []).append(backend.name)
        replaced: dict[BackendName, Backend] = {}
        for service_key in services:
            if ("EndpointSlice", service_key, "") in state.object_problems:
                return None
            names = by_service.get(service_key)
            if not names:
                continue  # no location routes to this Service: nothing nginx holds changes
            raws = snapshot.endpoint_slices.get(service_key, ())
            slices = memo.service_slices(service_key, raws)
            if slices.problems:
                return None
            raw_service = snapshot.services.get(service_key)
            view = None if raw_service is None else kube.read_service(raw_service)
            if not isinstance(view, kube.ServiceView):
                return None
            for name in names:
                backend = final[name]
                written = backend.service_port
                number = int(written) if written.isdigit() else None
                match = next(
                    (p for p in view.ports if (p[1] == number if number is not None
                                               else p[0] == written)),
                    None,
                )
                if match is None:
                    return None
                endpoints = slices.endpoints_of(match[0])
                if endpoints != backend.endpoints:
                    replaced[name] = replace(backend, endpoints=endpoints)
        self.last = ("endpoints", len(replaced))
        if not replaced:
            return state.result
        backends = list(state.result.configuration.backends)
        for name, backend in replaced.items():
            at = bisect.bisect_left(backends, name, key=_backend_order)
            backends[at] = backend
            final[name] = backend
            resolved = memo.backends.get(name)
            if resolved is not None:
                memo.backends[name] = replace(resolved, endpoints=backend.endpoints)
        previous = state.result
        result = BuildResult(
            Configuration(servers=previous.configuration.servers, backends=tuple(backends)),
            previous.problems,
            previous.ignored,
        )
        state.result = result
        return result

    def _closure(
        self, seeds: set[ObjectKey], old_plans: dict[ObjectKey, IngressPlan], state: _State
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

    def _splice_servers(
        self, previous: Configuration, made: dict[str, Server], hosts: set[str]
    ) -> list[Server]:
        """The servers of ``previous`` with those of ``hosts`` replaced, added or removed."""
        by_host = self.memo.servers
        servers = list(previous.servers)
        for host in hosts:
            at = bisect.bisect_left(servers, (host != CATCH_ALL, host), key=_server_order)
            present = at < len(servers) and servers[at].hostname == host
            new = made.get(host)
            if new is not None:
                if present:
                    servers[at] = new
                else:
                    servers.insert(at, new)
                by_host[host] = new
            elif present:
                del servers[at]
                by_host.pop(host, None)
        return servers

    def _splice_backends(
        self,
        previous: Configuration,
        made: dict[BackendName, Backend],
        names: set[BackendName],
        hosts: set[str],
        state: _State,
    ) -> list[Backend]:
        """The backends of ``previous`` with ``names`` (those the rebuilt servers used or use)
        as the assembly made them, kept when a server elsewhere still uses them, or dropped."""
        final = self.memo.final_backends
        backends = list(previous.backends)
        for name in names:
            new = made.get(name)
            if new is None and name in final and self._used_elsewhere(final[name], hosts, state):
                new = final[name]
            at = bisect.bisect_left(backends, name, key=_backend_order)
            present = at < len(backends) and backends[at].name == name
            if new is not None:
                if present:
                    backends[at] = new
                else:
                    backends.insert(at, new)
                final[name] = new
            elif present:
                del backends[at]
                final.pop(name, None)
        return backends

    def _used_elsewhere(self, backend: Backend, hosts: set[str], state: _State) -> bool:
        """Whether a server outside ``hosts`` uses ``backend`` (only Ingresses naming its
        Service can)."""
        service = ObjectKey(f"{backend.namespace}/{backend.service}")
        by_host = self.memo.servers
        for key in _keys(state.services, service):
            for host in state.ours[key].hosts:
                if host not in hosts and backend.name in _used(by_host.get(host)):
                    return True
        return False
