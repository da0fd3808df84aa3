"""Incremental building: the last build, kept by one owner, and the next build made from it.

    BuildCache.build(snapshot, options) --> BuildResult
        full         first build, other options or IngressClasses, a ConfigMap an Ingress
                     names (auth-proxy-set-headers), a change too wide, or a
                     case below that needs the whole picture: every Ingress is assembled
                     (``ingressd.build.assembly``, from per-object plans, ``ingressd.build.plan``)
        incremental  1. diff     this snapshot against the last build's, by object identity
                                 (ARCHITECTURE.md, invariant 1):
                                 Ingresses, Services, EndpointSlices, Secrets; the Memo forgets
                                 what it read of the changed ones
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

    BuildCache owns, and only its methods change:
        _LastBuild   inputs, result, indexes (server host, Service, Secret -> our Ingresses
                     that may change it or name it), problems in the buckets of ``Assembled``
        Memo         what was read of each object and the model values of the last result
                     (``ingressd.build.reading``): the assembly reads it, this cache tells it
                     what changed and what the last build made
    A build takes the last build out of the cache while it works: one that gives up (or
    raises) leaves none, and the next build is a full one.  Splicing is pure: the last
    result's servers or backends and their maps in, new ones out.

A full build is also where the incremental path's assumptions do not hold: two Services
claiming one backend name (the oldest reference wins: global order), ``server-alias`` (aliases
are checked against every server), canaries (they read other Ingresses' locations and extend
other backends).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ingressd.build import kube
from ingressd.build.assembly import Assembled, Assembly, ObjectBucket
from ingressd.build.plan import IngressPlan
from ingressd.build.reading import Memo
from ingressd.build.selection import BuildOptions, is_ours, our_classes
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Configuration,
    ObjectKey,
    Problem,
    Server,
    backend_order,
)
from ingressd.store import keyindex
from ingressd.store.events import Kind
from ingressd.store.snapshot import Snapshot, changed_keys

__all__ = ["BuildCache", "BuildResult"]

_keys = keyindex.members
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


class BuildCache:
    """The last build and what was read of each object, for the next build.

    One per caller that builds again and again (the sync worker); never shared between
    threads.  Holding it costs the Memo (plans, slice views, certificates) and the indexes of
    the last build, a few KB per Ingress.
    """

    #: The closure of a change stays below this share of our Ingresses (else: full build).
    MAX_SHARE = 0.125

    def __init__(self) -> None:
        self._memo = Memo()
        self._state: _LastBuild | None = None
        self._way: tuple[str, int] = ("none", 0)
        #: Service key -> names of the backends of the last result made from it; made on the
        #: first endpoint patch after a build that may have changed them.
        self._by_service: dict[ObjectKey, list[BackendName]] | None = None

    @property
    def last(self) -> tuple[str, int]:
        """How the last build went: ``full`` or ``incremental`` (and how many Ingresses were
        assembled), or ``endpoints`` (and how many backends got new endpoints)."""
        return self._way

    @property
    def memo(self) -> Memo:
        """What was read of each object (to look at: only this cache changes it)."""
        return self._memo

    def build(self, snapshot: Snapshot, options: BuildOptions) -> BuildResult:
        """The build of ``snapshot``: from the last one when it can, else a full one."""
        state, self._state = self._state, None
        if state is not None and state.options == options:
            result = self._incremental(snapshot, state)
            if result is not None:
                self._state = state
                return result
        return self._full(snapshot, options)

    # -- full -------------------------------------------------------------------------------

    def _full(self, snapshot: Snapshot, options: BuildOptions) -> BuildResult:
        self._by_service = None
        memo = self._memo
        if not memo.fits(options.annotation_options, options.allow_loopback_endpoints):
            memo = Memo(
                options.annotation_options,
                allow_loopback_endpoints=options.allow_loopback_endpoints,
            )
        memo = self._memo = memo.renewed()
        assembled = Assembly(snapshot, options, memo).run()
        memo.settle()
        memo.keep_model(
            backends=dict(assembled.resolved),
            final_backends={b.name: b for b in assembled.backends},
            servers={s.hostname: s for s in assembled.servers},
            settings=assembled.settings,
        )
        our, have_default, _ = our_classes(snapshot, options)
        state = _LastBuild(
            options=options,
            snapshot=snapshot,
            our_classes=our,
            have_default=have_default,
            ours={plan.key: plan for plan in assembled.ours},
            ignored=set(assembled.ignored),
            collided=assembled.collided,
            class_problems=tuple(assembled.class_problems),
            finish_problems=tuple(assembled.finish_problems),
        )
        for plan in assembled.ours:
            state.index(plan)
        state.take_problems(assembled, ())
        state.result = BuildResult(
            Configuration(servers=tuple(assembled.servers), backends=tuple(assembled.backends)),
            state.problems(ordered=True),
            tuple(sorted(assembled.ignored)),
        )
        self._state = state
        self._way = ("full", len(assembled.ours))
        return state.result

    # -- incremental --------------------------------------------------------------------------

    def _incremental(self, snapshot: Snapshot, state: _LastBuild) -> BuildResult | None:
        """The build of ``snapshot`` from the last one, or ``None`` when a full build is due."""
        old = state.snapshot
        if _changes(old.ingress_classes, snapshot.ingress_classes):
            return None
        if state.config_maps and any(
            key in state.config_maps for key in _changes(old.config_maps, snapshot.config_maps)
        ):
            return None  # an auth-proxy-set-headers ConfigMap (rare): a full build
        changed = {
            Kind.INGRESS: _changes(old.ingresses, snapshot.ingresses),
            Kind.SERVICE: _changes(old.services, snapshot.services),
            Kind.ENDPOINT_SLICE: _changes(old.endpoint_slices, snapshot.endpoint_slices),
            Kind.SECRET: _changes(old.secrets, snapshot.secrets),
        }
        state.snapshot = snapshot
        if not any(changed.values()):
            self._way = ("incremental", 0)
            return state.result
        for kind, keys in changed.items():
            for key in keys:
                self._memo.forget(kind, key)
        ingresses, slices = changed[Kind.INGRESS], changed[Kind.ENDPOINT_SLICE]
        services, secrets = changed[Kind.SERVICE], changed[Kind.SECRET]
        if not (ingresses or services or secrets):
            result = self._patch_endpoints(snapshot, state, slices)
            if result is not None:
                return result
        return self._reassemble(snapshot, state, ingresses, services | slices, secrets)

    def _reassemble(
        self,
        snapshot: Snapshot,
        state: _LastBuild,
        ingresses: set[ObjectKey],
        services: set[ObjectKey],
        secrets: set[ObjectKey],
    ) -> BuildResult | None:
        """Assemble the Ingresses a change may touch and splice them into the last result."""
        default = state.options.default_backend_service
        if default is not None and (default in services or default in state.policies):
            # the default backend's Service, or a balancing policy an Ingress sets on it: every
            # server may use that backend
            return None
        seeds = set(ingresses)
        for key in services:
            seeds.update(_keys(state.services, key))
        for key in secrets:
            seeds.update(_keys(state.secrets, key))
        old_plans, ignored_changed = self._replan(snapshot, state, ingresses)
        if state.collided or state.aliased:
            return None
        closed = self._closure(seeds, old_plans, state)
        if closed is None:
            return None
        members, hosts = closed
        memo = self._memo
        assembled = Assembly(snapshot, state.options, memo).run(members)
        if assembled.collided or assembled.finish_problems:
            return None
        if _claimed_twice(memo.backends, assembled.resolved):
            return None  # two Services claim one name: the oldest reference decides
        made_servers = {s.hostname: s for s in assembled.servers if s.hostname in hosts}
        made_backends = {b.name: b for b in assembled.backends}
        names: set[BackendName] = set()
        for host in hosts:
            names |= _used_backends(memo.servers.get(host))
            names |= _used_backends(made_servers.get(host))
        if _canaries_among(names, memo.final_backends, made_backends):
            return None  # canaries: their backends depend on other hosts
        previous = state.result.configuration
        servers, by_host = _splice_servers(previous.servers, memo.servers, made_servers, hosts)
        backends, by_name = _splice_backends(
            previous.backends,
            memo.final_backends,
            made_backends,
            names,
            used_elsewhere=lambda backend: _used_elsewhere(backend, hosts, by_host, state),
        )
        # Committed: from here on the state follows the new result.
        settings = dict(memo.settings)
        for key in members:
            settings.pop(key, None)
        settings.update(assembled.settings)
        memo.keep_model(
            backends={**memo.backends, **assembled.resolved},
            final_backends=by_name,
            servers=by_host,
            settings=settings,
        )
        self._by_service = None
        state.take_problems(assembled, members)
        state.finish_problems = ()  # alias problems, and no Ingress has aliases any more
        state.result = BuildResult(
            Configuration(servers=tuple(servers), backends=tuple(backends)),
            state.problems(ordered=False),
            tuple(sorted(state.ignored)) if ignored_changed else state.result.ignored,
        )
        self._way = ("incremental", len(members))
        return state.result

    def _replan(
        self, snapshot: Snapshot, state: _LastBuild, ingresses: set[ObjectKey]
    ) -> tuple[dict[ObjectKey, IngressPlan], bool]:
        """Our Ingresses and the indexes follow the changed ``ingresses``; the old plans of
        those that were ours, and whether the Ingresses of other classes changed."""
        old_plans: dict[ObjectKey, IngressPlan] = {}
        ignored_changed = False
        for key in ingresses:
            old_plan = state.ours.pop(key, None)
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
                plan = state.ours[key] = self._memo.plan(key, raw)
                state.index(plan)
            else:
                state.ignored.add(key)
                ignored_changed = True
        return old_plans, ignored_changed

    def _closure(
        self, seeds: set[ObjectKey], old_plans: dict[ObjectKey, IngressPlan], state: _LastBuild
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
                    if service == state.options.default_backend_service and policy:
                        return None  # the default backend's policy: servers of no Ingress
                    if service not in services and (policy or service in state.policies):
                        services.add(service)
                        stack.extend(_keys(state.services, service))
        return members, hosts

    # -- endpoints ----------------------------------------------------------------------------

    def _patch_endpoints(
        self, snapshot: Snapshot, state: _LastBuild, services: set[ObjectKey]
    ) -> BuildResult | None:
        """Only the EndpointSlices of ``services`` changed: the backends of those Services get
        the new endpoints, everything else is the last result's.  ``None`` (the general path
        decides) when the slices of one of them have or had problems: those are listed per
        Service and Ingress, which this path does not redo.

        An endpoint change cannot change which Ingress wins a path, which backend a location
        uses or any problem but the slices' own, so no Ingress is assembled again: the cost
        is that of reading the changed slices, not of the Ingresses naming their Service.
        """
        memo = self._memo
        if self._by_service is None:
            self._by_service = _backends_by_service(memo.final_backends.values())
        replaced = _new_endpoints(snapshot, memo, state, self._by_service, services)
        if replaced is None:
            return None
        if replaced:
            previous = state.result
            backends = _replace_backends(previous.configuration.backends, replaced)
            if backends is None:
                return None  # the Memo's map and the result disagree: let a build decide
            resolved = dict(memo.backends)
            for name, backend in replaced.items():
                known = resolved.get(name)
                if known is not None:
                    resolved[name] = replace(known, endpoints=backend.endpoints)
            memo.keep_model(
                backends=resolved,
                final_backends={**memo.final_backends, **replaced},
                servers=memo.servers,
                settings=memo.settings,
            )
            state.result = BuildResult(
                Configuration(servers=previous.configuration.servers, backends=backends),
                previous.problems,
                previous.ignored,
            )
        self._way = ("endpoints", len(replaced))
        return state.result


@dataclass(slots=True, eq=False)
class _LastBuild:
    """The last build: its inputs, its result and the indexes an incremental build needs.

    Held by one ``BuildCache``, changed only by its methods.  A few KB per Ingress: sets of
    keys, no model values beyond the result.
    """

    options: BuildOptions
    snapshot: Snapshot
    our_classes: set[str]
    have_default: bool
    #: Our Ingresses' plans; the other Ingresses.
    ours: dict[ObjectKey, IngressPlan]
    ignored: set[ObjectKey]
    #: Two Services (or a canary and a Service) claimed one backend name.
    collided: bool
    result: BuildResult = BuildResult(Configuration(), (), ())
    #: Server host name -> our Ingresses that may change it (``IngressPlan.hosts``).
    hosts: dict[str, keyindex.Entry] = field(default_factory=dict)
    #: Service / Secret key -> our Ingresses naming it.
    services: dict[ObjectKey, keyindex.Entry] = field(default_factory=dict)
    secrets: dict[ObjectKey, keyindex.Entry] = field(default_factory=dict)
    #: ConfigMap key -> our Ingresses naming it (``auth-proxy-set-headers``).
    config_maps: dict[ObjectKey, keyindex.Entry] = field(default_factory=dict)
    #: Service key -> how many of our Ingresses naming it set a balancing policy.
    policies: dict[ObjectKey, int] = field(default_factory=dict)
    #: Our Ingresses with ``server-alias``.
    aliased: set[ObjectKey] = field(default_factory=set)
    #: Problems in the buckets of ``Assembled``; who met each object bucket.
    class_problems: tuple[Problem, ...] = ()
    object_problems: dict[ObjectBucket, tuple[Problem, ...]] = field(default_factory=dict)
    touched: dict[ObjectBucket, set[ObjectKey]] = field(default_factory=dict)
    touched_by: dict[ObjectKey, set[ObjectBucket]] = field(default_factory=dict)
    #: Per phase of the assembly (rules, default backends, canaries): Ingress -> problems.
    ingress_problems: tuple[dict[ObjectKey, tuple[Problem, ...]], ...] = field(
        default_factory=lambda: ({}, {}, {})
    )
    finish_problems: tuple[Problem, ...] = ()

    def index(self, plan: IngressPlan) -> None:
        key = plan.key
        for host in plan.hosts:
            _add(self.hosts, host, key)
        for service in plan.services:
            _add(self.services, service, key)
        for secret in plan.secrets:
            _add(self.secrets, secret, key)
        for config_map in plan.config_maps:
            _add(self.config_maps, config_map, key)
        if plan.sets_policy:
            for service in plan.services:
                self.policies[service] = self.policies.get(service, 0) + 1
        if plan.annotations.aliases or plan.annotations.from_to_www_redirect:
            # both names are checked against every server: only a full build knows them
            self.aliased.add(key)

    def unindex(self, plan: IngressPlan) -> None:
        key = plan.key
        for host in plan.hosts:
            _discard(self.hosts, host, key)
        for service in plan.services:
            _discard(self.services, service, key)
        for secret in plan.secrets:
            _discard(self.secrets, secret, key)
        for config_map in plan.config_maps:
            _discard(self.config_maps, config_map, key)
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


# -- diffing ----------------------------------------------------------------------------------


def _changes(old: Mapping[ObjectKey, Any], new: Mapping[ObjectKey, Any]) -> set[ObjectKey]:
    """Keys whose object was added, replaced or deleted between two snapshots: from the
    Store's change log when both copies have it (``snapshot.changed_keys``), else by
    comparing every key's object by identity."""
    if old is new:
        return set()
    logged = changed_keys(old, new)
    if logged is not None:
        return logged
    get = old.get
    changed = {key for key, value in new.items() if get(key) is not value}
    added = sum(1 for key in changed if key not in old)
    if len(new) - added != len(old):
        changed.update(key for key in old if key not in new)
    return changed


def _claimed_twice(
    known: Mapping[BackendName, Backend], made: Mapping[BackendName, Backend]
) -> bool:
    """Whether a backend name ``made`` now was made from another Service before."""
    for name, backend in made.items():
        other = known.get(name)
        if other is not None and (
            other.namespace != backend.namespace or other.service != backend.service
        ):
            return True
    return False


def _canaries_among(names: Iterable[BackendName], *maps: Mapping[BackendName, Backend]) -> bool:
    """Whether one of the backends ``names`` has canaries or is one (in any of ``maps``)."""
    for name in names:
        for backends in maps:
            found = backends.get(name)
            if found is not None and (
                found.policy.alternatives or found.policy.traffic_shaping is not None
            ):
                return True
    return False


# -- splicing ---------------------------------------------------------------------------------


def _used_backends(server: Server | None) -> set[BackendName]:
    """Backends a server's locations use (as the assembly's finish counts them)."""
    found: set[BackendName] = set()
    if server is not None:
        for location in server.locations:
            if location.backend:
                found.add(location.backend)
            settings = location.settings
            if settings.default_backend and settings.denied is None:
                found.add(settings.default_backend)
            if settings.errors_to:
                found.add(settings.errors_to)
    return found


def _splice_servers(
    servers: tuple[Server, ...],
    by_host: Mapping[str, Server],
    made: Mapping[str, Server],
    hosts: Iterable[str],
) -> tuple[list[Server], dict[str, Server]]:
    """``servers`` (and their map by host) with those of ``hosts`` replaced by what was
    ``made``, added, or removed when nothing was made for them.  Each is found by bisection:
    a change costs what it touches, not the size of the Configuration."""
    spliced = list(servers)
    spliced_by_host = dict(by_host)
    for host in hosts:
        at = bisect.bisect_left(spliced, (host != CATCH_ALL, host), key=_server_order)
        present = at < len(spliced) and spliced[at].hostname == host
        new = made.get(host)
        if new is not None:
            if present:
                spliced[at] = new
            else:
                spliced.insert(at, new)
            spliced_by_host[host] = new
        elif present:
            del spliced[at]
            spliced_by_host.pop(host, None)
    return spliced, spliced_by_host


def _splice_backends(
    backends: tuple[Backend, ...],
    by_name: Mapping[BackendName, Backend],
    made: Mapping[BackendName, Backend],
    names: Iterable[BackendName],
    *,
    used_elsewhere: Callable[[Backend], bool],
) -> tuple[list[Backend], dict[BackendName, Backend]]:
    """``backends`` (and their map by name) with ``names`` (those the rebuilt servers used or
    use) as the assembly ``made`` them, kept when a server elsewhere still uses them, or
    dropped."""
    spliced = list(backends)
    spliced_by_name = dict(by_name)
    for name in names:
        new = made.get(name)
        if new is None:
            old = by_name.get(name)
            if old is not None and used_elsewhere(old):
                new = old
        at = bisect.bisect_left(spliced, name, key=backend_order)
        present = at < len(spliced) and spliced[at].name == name
        if new is not None:
            if present:
                spliced[at] = new
            else:
                spliced.insert(at, new)
            spliced_by_name[name] = new
        elif present:
            del spliced[at]
            spliced_by_name.pop(name, None)
    return spliced, spliced_by_name


def _used_elsewhere(
    backend: Backend, hosts: set[str], by_host: Mapping[str, Server], state: _LastBuild
) -> bool:
    """Whether a server outside ``hosts`` uses ``backend`` (only Ingresses naming its
    Service can)."""
    service = ObjectKey(f"{backend.namespace}/{backend.service}")
    if service == state.options.default_backend_service:
        # the ``/`` of servers no Ingress gives one, and the custom errors of any location
        return any(
            backend.name in _used_backends(server)
            for host, server in by_host.items()
            if host not in hosts
        )
    for key in _keys(state.services, service):
        for host in state.ours[key].hosts:
            if host not in hosts and backend.name in _used_backends(by_host.get(host)):
                return True
    return False


def _server_order(server: Server) -> tuple[bool, str]:
    return (server.hostname != CATCH_ALL, server.hostname)


# -- endpoints --------------------------------------------------------------------------------


def _backends_by_service(backends: Iterable[Backend]) -> dict[ObjectKey, list[BackendName]]:
    """Service key -> names of the backends made from it."""
    by_service: dict[ObjectKey, list[BackendName]] = {}
    for backend in backends:
        if backend.cluster_ip:
            continue  # service-upstream: the cluster IP, whatever the slices say
        key = ObjectKey(f"{backend.namespace}/{backend.service}")
        by_service.setdefault(key, []).append(backend.name)
    return by_service


def _new_endpoints(
    snapshot: Snapshot,
    memo: Memo,
    state: _LastBuild,
    by_service: Mapping[ObjectKey, list[BackendName]],
    services: Iterable[ObjectKey],
) -> dict[BackendName, Backend] | None:
    """The backends of the last result made from ``services`` whose endpoints the snapshot
    changes, with their new endpoints; ``None`` when the slices of one of the Services have
    or had problems, or a backend's port is gone (the general path decides).

    ``by_service``: ``_backends_by_service()`` of the last result's backends.
    """
    final = memo.final_backends
    replaced: dict[BackendName, Backend] = {}
    for service_key in services:
        if (Kind.ENDPOINT_SLICE.value, service_key, "") in state.object_problems:
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
                (
                    p
                    for p in view.ports
                    if (p[1] == number if number is not None else p[0] == written)
                ),
                None,
            )
            if match is None:
                return None
            endpoints = slices.endpoints_of(match[0])
            if endpoints != backend.endpoints:
                replaced[name] = replace(backend, endpoints=endpoints)
    return replaced


def _replace_backends(
    backends: tuple[Backend, ...], replaced: Mapping[BackendName, Backend]
) -> tuple[Backend, ...] | None:
    """``backends`` with those named in ``replaced`` replaced; ``None`` when one is absent."""
    spliced = list(backends)
    places = {name: bisect.bisect_left(spliced, name, key=backend_order) for name in replaced}
    if any(at >= len(spliced) or spliced[at].name != name for name, at in places.items()):
        return None
    for name, backend in replaced.items():
        spliced[places[name]] = backend
    return tuple(spliced)
