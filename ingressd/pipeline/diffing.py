"""Diffing: the cheapest correct way to go from the running model to the new one.  Pure.

    Configuration (new) + Configuration (running, or None before the first sync)
        --decide()--> Decision(action, reasons, changed_backends, changes)
            NOTHING  the models are equal
            DYNAMIC  only backends' dynamic parts differ (endpoints; balancing policy:
                     load-balance, upstream-hash-by, affinity, canary weights and rules):
                     POST ``changed_backends`` to Lua
            RELOAD   the structure differs (nginx.conf text changes): render, test, reload,
                     then POST ``changed_backends``

The rule is ingress-nginx's ``IsDynamicConfigurationEnough``: blank the dynamic part (endpoints
and policy, see ``Configuration.without_endpoints``) of both models and compare what is left.
Certificates are structural here: their hash is in the file names nginx.conf refers to.

``reasons`` are short human strings for logs and ``/debug``: sorted, at most ``MAX_REASONS`` of
them plus ``"and N more"``.  Each one is made with its ``Change`` kind; ``changes`` holds the kinds
of the reasons kept, and ``Decision.change``, the weightiest of them, is what a reload is counted
under (``ingressd_reloads_total{reason}``), so rewording a reason never moves a metric.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeAlias, TypeVar

from ingressd.model import (
    Backend,
    BackendName,
    Configuration,
    Location,
    PathType,
    Server,
    differing,
    server_order,
)
from ingressd.nginx.routes import RouteTable, table_changes

__all__ = [
    "MAX_REASONS",
    "Action",
    "Change",
    "Decision",
    "LuaRouting",
    "decide",
    "decide_lua",
    "with_options_changes",
]

_N = TypeVar("_N", Server, Backend)

#: Reasons kept in a Decision; the rest are counted in a final ``"and N more"``.
MAX_REASONS = 20


class Action(enum.Enum):
    """What the sync worker must do to nginx."""

    NOTHING = "nothing"
    DYNAMIC = "dynamic"
    RELOAD = "reload"


class Change(enum.Enum):
    """The kind of change a reason reports, weightiest first; the value is the reload label."""

    INITIAL = "initial"
    SERVERS = "servers"
    LOCATIONS = "locations"
    CERTIFICATES = "certificates"
    BACKENDS = "backends"
    #: TCP/UDP listeners or TLS passthrough hosts (the ``stream {}`` block).
    STREAMS = "streams"
    #: The controller's ConfigMap changed nginx.conf settings (``with_options_changes``).
    OPTIONS = "options"
    #: Hosts, paths or their targets changed in the route table Lua holds (``--routing lua``).
    ROUTES = "routes"
    #: What no other kind names: a server's ssl redirect, servers in another order.
    OTHER = "other"


_WEIGHT = {change: weight for weight, change in enumerate(Change)}

#: One reason: its kind and its text for humans.
_Reason: TypeAlias = tuple[Change, str]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    #: Why, for humans: ``server www.zkj.com added``, ``backend default-web-80 endpoints 3 -> 5``.
    reasons: tuple[str, ...]
    #: Backends that are new or whose dynamic part differs: the ones to POST to Lua, sorted.
    changed_backends: tuple[BackendName, ...]
    #: The kinds of change ``reasons`` report (a reason cut by ``MAX_REASONS`` adds none).
    changes: frozenset[Change]
    #: ``--routing lua``: hosts whose route entry is new or changed (POST them), sorted.
    changed_routes: tuple[str, ...] = ()
    #: ``--routing lua``: hosts whose entry is gone (DELETE them), sorted.
    removed_routes: tuple[str, ...] = ()
    #: ``--routing lua``: a certificate or the host it serves changed (send the certificates).
    certificates_changed: bool = False

    @property
    def change(self) -> Change:
        """The weightiest kind of change, ``OTHER`` when there is none: what a reload is
        counted under."""
        return min(self.changes, key=_WEIGHT.__getitem__, default=Change.OTHER)


def decide(new: Configuration, running: Configuration | None) -> Decision:
    """Compare ``new`` with what nginx ``running`` serves and say what must be done."""
    if running is None:
        everything = tuple(sorted(b.name for b in new.backends))
        return _decision(Action.RELOAD, [(Change.INITIAL, "first sync")], everything)
    backends = _Differing(new.backends, running.backends)
    changed = tuple(
        sorted(
            b.name
            for b in backends.new.values()
            if b.name not in backends.old or backends.old[b.name].dynamic() != b.dynamic()
        )
    )
    if not _same_structure(new, running):
        reasons = _structural_reasons(new, running, backends) or [
            (Change.OTHER, "configuration changed")
        ]
        return _decision(Action.RELOAD, reasons, changed)
    if changed:
        endpoints = [
            (Change.BACKENDS, _endpoint_reason(backends.old.get(n), backends.new[n]))
            for n in changed
        ]
        return _decision(Action.DYNAMIC, endpoints, changed)
    return Decision(Action.NOTHING, (), (), frozenset())


def with_options_changes(decision: Decision, reasons: Sequence[str]) -> Decision:
    """``decision`` when nginx.conf settings changed too (``reasons`` says which): a reload."""
    return dataclasses.replace(
        decision,
        action=Action.RELOAD,
        reasons=tuple(sorted({*decision.reasons, *reasons})),
        changes=decision.changes | {Change.OPTIONS},
    )


@dataclass(frozen=True, slots=True)
class LuaRouting:
    """What ``--routing lua`` decides on besides the two models."""

    #: The route table of the new model.
    new: RouteTable
    #: The route table Lua holds (None before the first sync).
    held: RouteTable | None
    #: The settings classes the running nginx.conf has a named location for.
    rendered: frozenset[str]


def decide_lua(new: Configuration, running: Configuration | None, lua: LuaRouting) -> Decision:
    """``decide`` for ``--routing lua``: nginx.conf holds the settings classes and the servers
    that keep their own block, nothing else; hosts, paths, backends and certificates are Lua's.

    A reload only for a settings class nginx.conf lacks or a changed server of its own;
    otherwise the changed route entries, backends and certificates are sent to Lua.
    """
    held = lua.held
    if running is None or held is None:
        everything = tuple(sorted(b.name for b in new.backends))
        return _decision(Action.RELOAD, [(Change.INITIAL, "first sync")], everything)
    backends = _Differing(new.backends, running.backends)
    changed = tuple(
        sorted(
            b.name
            for b in backends.new.values()
            if b.name not in backends.old or backends.old[b.name] != b
        )
    )
    removed_backends = sorted(backends.old.keys() - backends.new.keys())
    reasons: list[_Reason] = [
        (Change.LOCATIONS, f"settings class {c} added")
        for c in sorted(lua.new.class_ids - lua.rendered)
    ]
    reasons += _stream_reasons(new, running)
    if lua.new.own_blocks != held.own_blocks:
        mine = {s.hostname: s for s in lua.new.own_blocks}
        theirs = {s.hostname: s for s in held.own_blocks}
        reasons += [
            (Change.SERVERS, f"server {h} (own block) changed")
            for h in sorted(mine.keys() | theirs.keys())
            if mine.get(h) != theirs.get(h)
        ]
    if lua.new.www_redirects != held.www_redirects:
        reasons += [
            (Change.SERVERS, f"from-to-www-redirect {name} -> {host} changed")
            for name, host in sorted(set(lua.new.www_redirects) ^ set(held.www_redirects))
        ]
    if reasons:
        return dataclasses.replace(
            _decision(Action.RELOAD, reasons, changed),
            changed_routes=tuple(sorted(lua.new.entries)),
            certificates_changed=True,
        )
    table = table_changes(lua.new, held)
    routes, gone = table.routes, table.removed
    reasons += [(Change.ROUTES, f"routes of {h} changed") for h in routes if h in held.entries]
    reasons += [(Change.ROUTES, f"routes of {h} added") for h in routes if h not in held.entries]
    reasons += [(Change.ROUTES, f"routes of {h} removed") for h in gone]
    reasons += [
        (Change.CERTIFICATES, f"certificate of {h} changed") for h in table.certificate_hosts
    ]
    reasons += [
        (Change.BACKENDS, _endpoint_reason(backends.old.get(n), backends.new[n])) for n in changed
    ]
    reasons += [(Change.BACKENDS, f"backend {n} removed") for n in removed_backends]
    if not reasons:
        return Decision(Action.NOTHING, (), (), frozenset())
    return dataclasses.replace(
        _decision(Action.DYNAMIC, reasons, changed),
        changed_routes=routes,
        removed_routes=gone,
        certificates_changed=bool(table.certificate_hosts),
    )


class _Differing(Generic[_N]):
    """The items of two sorted sequences that are not the other's very objects, by name
    (``model.differing``): the builder hands on what did not change as the same object, so
    this finds the few servers or backends of 10,000 that a change touched.  Names (host
    names, backend names) are unique within a model.
    """

    __slots__ = ("new", "old")

    def __init__(self, new: Sequence[_N], old: Sequence[_N]) -> None:
        fresh, stale = differing(new, old, key=_order)
        self.new: dict[str, _N] = {_name(item): item for item in fresh}
        self.old: dict[str, _N] = {_name(item): item for item in stale}


def _order(item: Server | Backend) -> Any:
    return server_order(item) if isinstance(item, Server) else item.name


def _name(item: Server | Backend) -> str:
    return item.hostname if isinstance(item, Server) else item.name


def _same_structure(new: Configuration, running: Configuration) -> bool:
    """``new.without_endpoints() == running.without_endpoints()``, without copying every backend.

    Everything but the backends is compared as is (tuples compare element by element and stop
    at identity); backends pairwise, blanking endpoints only for the pairs that differ (a
    rollout touches a few backends out of thousands).
    """
    if new.servers is not running.servers and new.servers != running.servers:
        return False
    if new.streams != running.streams:
        return False
    if len(new.backends) != len(running.backends):
        return False
    return all(
        a is b or a == b or a.structure() == b.structure()
        for a, b in zip(new.backends, running.backends, strict=True)
    )


def _stream_reasons(new: Configuration, running: Configuration) -> list[_Reason]:
    """What changed in the stream block: listeners, passthrough hosts (their endpoints are
    the backends' and change dynamically)."""
    a, b = new.streams, running.streams
    if a == b:
        return []
    reasons: list[_Reason] = []
    mine = {(s.protocol.value, s.port): s for s in a.services}
    theirs = {(s.protocol.value, s.port): s for s in b.services}
    for proto, port in sorted(mine.keys() | theirs.keys()):
        old, fresh = theirs.get((proto, port)), mine.get((proto, port))
        if old != fresh:
            what = "added" if old is None else "removed" if fresh is None else "changed"
            reasons.append((Change.STREAMS, f"{proto} service {port} {what}"))
    hosts = {p.hostname: p for p in a.passthrough}
    held = {p.hostname: p for p in b.passthrough}
    for host in sorted(hosts.keys() | held.keys()):
        if hosts.get(host) != held.get(host):
            reasons.append((Change.STREAMS, f"passthrough host {host} changed"))
    if a.passthrough_enabled != b.passthrough_enabled:
        reasons.append((Change.STREAMS, "ssl passthrough switched"))
    return reasons or [(Change.STREAMS, "stream block changed")]


def _decision(action: Action, reasons: list[_Reason], changed: tuple[BackendName, ...]) -> Decision:
    """The Decision with ``reasons`` sorted by text and capped, and the kinds of those kept."""
    kinds = {text: change for change, text in reasons}
    ordered = sorted(kinds)
    kept = ordered[:MAX_REASONS]
    texts = tuple(kept)
    if len(ordered) > MAX_REASONS:
        texts += (f"and {len(ordered) - MAX_REASONS} more",)
    return Decision(action, texts, changed, frozenset(kinds[text] for text in kept))


def _endpoint_reason(old: Backend | None, new: Backend) -> str:
    if old is not None and old.policy != new.policy:
        return f"backend {new.name} {_policy_change(old, new)}"
    before, after = (len(old.endpoints) if old else 0), len(new.endpoints)
    if before != after:
        return f"backend {new.name} endpoints {before} -> {after}"
    return f"backend {new.name} endpoints changed ({after})"


def _policy_change(old: Backend, new: Backend) -> str:
    a, b = old.policy, new.policy
    if a.load_balance != b.load_balance:
        return f"load-balance {a.load_balance.value} -> {b.load_balance.value}"
    if a.traffic_shaping != b.traffic_shaping:
        return "canary rules changed"
    if a.alternatives != b.alternatives:
        return f"canaries {len(a.alternatives)} -> {len(b.alternatives)}"
    if a.hash_by != b.hash_by:
        return "upstream-hash-by changed"
    return "affinity changed"


def _structural_reasons(
    new: Configuration, running: Configuration, backends: _Differing[Backend]
) -> list[_Reason]:
    """Why the structures differ; only the servers and backends that are not the running
    model's very objects are looked at."""
    reasons = _stream_reasons(new, running)
    servers = _Differing(new.servers, running.servers)
    new_servers, old_servers = servers.new, servers.old
    for hostname in new_servers.keys() - old_servers.keys():
        reasons.append((Change.SERVERS, f"server {hostname} added"))
    for hostname in old_servers.keys() - new_servers.keys():
        reasons.append((Change.SERVERS, f"server {hostname} removed"))
    for hostname in new_servers.keys() & old_servers.keys():
        if new_servers[hostname] != old_servers[hostname]:
            reasons.extend(_server_reasons(new_servers[hostname], old_servers[hostname]))
    new_backends, old_backends = backends.new, backends.old
    for name in new_backends.keys() - old_backends.keys():
        reasons.append((Change.BACKENDS, f"backend {name} added"))
    for name in old_backends.keys() - new_backends.keys():
        reasons.append((Change.BACKENDS, f"backend {name} removed"))
    for name in new_backends.keys() & old_backends.keys():
        if new_backends[name].structure() != old_backends[name].structure():
            reasons.append((Change.BACKENDS, f"backend {name} changed"))
    return reasons


def _server_reasons(new: Server, old: Server) -> list[_Reason]:
    host = new.hostname
    reasons: list[_Reason] = []
    if new.certificate != old.certificate:
        if old.certificate is None:
            reasons.append((Change.CERTIFICATES, f"certificate of {host} added"))
        elif new.certificate is None:
            reasons.append((Change.CERTIFICATES, f"certificate of {host} removed"))
        else:
            reasons.append((Change.CERTIFICATES, f"certificate of {host} changed"))
    if new.ssl_redirect != old.ssl_redirect:
        state = "on" if new.ssl_redirect else "off"
        reasons.append((Change.OTHER, f"ssl redirect of {host} turned {state}"))
    new_locations = {(loc.path, loc.path_type): loc for loc in new.locations}
    old_locations = {(loc.path, loc.path_type): loc for loc in old.locations}
    for key in new_locations.keys() - old_locations.keys():
        reasons.append((Change.LOCATIONS, f"location {_where(host, *key)} added"))
    for key in old_locations.keys() - new_locations.keys():
        reasons.append((Change.LOCATIONS, f"location {_where(host, *key)} removed"))
    for key in new_locations.keys() & old_locations.keys():
        reasons.extend(_location_reasons(new_locations[key], old_locations[key], host))
    if not reasons:
        reasons.append((Change.SERVERS, f"server {host} changed"))
    return reasons


def _location_reasons(new: Location, old: Location, host: str) -> list[_Reason]:
    where = _where(host, new.path, new.path_type)
    reasons: list[str] = []
    if new.backend != old.backend or (new.backend is None and new.status != old.status):
        reasons.append(f"location {where} changed backend {_target(old)} -> {_target(new)}")
    if new.ingress != old.ingress:
        owners = f"{old.ingress or '-'} -> {new.ingress or '-'}"
        reasons.append(f"location {where} changed ingress {owners}")
    if new.settings != old.settings:
        reasons.append(f"location {where} annotations changed")
    if new != old and not reasons:
        reasons.append(f"location {where} changed")
    return [(Change.LOCATIONS, reason) for reason in reasons]


def _where(host: str, path: str, path_type: PathType) -> str:
    return f"{host} {path} ({path_type.value})"


def _target(location: Location) -> str:
    return location.backend if location.backend is not None else f"status {location.status}"
