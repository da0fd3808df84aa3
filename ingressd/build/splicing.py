"""Splicing: the last result + the pieces a partial build made -> the new result.

    last Configuration: servers (catch-all first, then by host name), backends (by name)
        splice_servers(made, hosts)      the servers of ``hosts`` replaced, added or removed
        splice_backends(made, names)     the backends the rebuilt servers used or use: as the
                                         assembly made them, kept as they were when a server
                                         elsewhere still uses them, else removed
        patch_endpoints(services)        only EndpointSlices changed: the backends of their
                                         Services with the new endpoints (``None``: slices
                                         with problems, or a port gone; the caller decides)
    every other Server and Backend is the last result's object; each is found by bisection,
    so a change costs what it touches, not the size of the Configuration

The incremental and the endpoint paths of building (``ingressd.build.building``) end here; the
``Memo``'s maps of the last result (``servers``, ``final_backends``, ``backends``) follow what
is spliced.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import replace

from ingressd.build import kube
from ingressd.build.reading import Memo
from ingressd.build.state import BuildResult, BuildState
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Configuration,
    ObjectKey,
    Server,
    backend_order,
)
from ingressd.store import keyindex
from ingressd.store.snapshot import Snapshot

__all__ = [
    "backends_by_service",
    "patch_endpoints",
    "splice_backends",
    "splice_servers",
    "used_backends",
]

_keys = keyindex.members


def used_backends(server: Server | None) -> set[BackendName]:
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


def splice_servers(
    memo: Memo, previous: Configuration, made: dict[str, Server], hosts: set[str]
) -> list[Server]:
    """The servers of ``previous`` with those of ``hosts`` replaced, added or removed."""
    by_host = memo.servers
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


def splice_backends(
    memo: Memo,
    previous: Configuration,
    made: dict[BackendName, Backend],
    names: set[BackendName],
    hosts: set[str],
    state: BuildState,
) -> list[Backend]:
    """The backends of ``previous`` with ``names`` (those the rebuilt servers used or use)
    as the assembly made them, kept when a server elsewhere still uses them, or dropped."""
    final = memo.final_backends
    backends = list(previous.backends)
    for name in names:
        new = made.get(name)
        if new is None and name in final and _used_elsewhere(memo, final[name], hosts, state):
            new = final[name]
        at = bisect.bisect_left(backends, name, key=backend_order)
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


def _used_elsewhere(memo: Memo, backend: Backend, hosts: set[str], state: BuildState) -> bool:
    """Whether a server outside ``hosts`` uses ``backend`` (only Ingresses naming its
    Service can)."""
    service = ObjectKey(f"{backend.namespace}/{backend.service}")
    by_host = memo.servers
    for key in _keys(state.services, service):
        for host in state.ours[key].hosts:
            if host not in hosts and backend.name in used_backends(by_host.get(host)):
                return True
    return False


def backends_by_service(backends: Iterable[Backend]) -> dict[ObjectKey, list[BackendName]]:
    """Service key -> names of the backends made from it."""
    by_service: dict[ObjectKey, list[BackendName]] = {}
    for backend in backends:
        key = ObjectKey(f"{backend.namespace}/{backend.service}")
        by_service.setdefault(key, []).append(backend.name)
    return by_service


def patch_endpoints(
    snapshot: Snapshot,
    state: BuildState,
    memo: Memo,
    by_service: dict[ObjectKey, list[BackendName]],
    services: set[ObjectKey],
) -> tuple[BuildResult, int] | None:
    """Only EndpointSlices changed: the backends of their Services get the new endpoints,
    everything else is the last result's.  ``None`` (the general path decides) when the
    slices of one of them have or had problems: those are listed per Service and
    Ingress, which this path does not redo.

    An endpoint change cannot change which Ingress wins a path, which backend a location
    uses or any problem but the slices' own, so no Ingress is assembled again: the cost
    is that of reading the changed slices, not of the Ingresses naming their Service.

    ``by_service``: ``backends_by_service()`` of the last result's backends.  With the result,
    how many backends got new endpoints.
    """
    final = memo.final_backends
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
    if not replaced:
        return state.result, 0
    backends = list(state.result.configuration.backends)
    places = {name: bisect.bisect_left(backends, name, key=backend_order) for name in replaced}
    if any(at >= len(backends) or backends[at].name != name for name, at in places.items()):
        return None  # the memo's map and the result disagree: let a build decide
    for name, backend in replaced.items():
        backends[places[name]] = backend
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
    return result, len(replaced)


def _server_order(server: Server) -> tuple[bool, str]:
    return (server.hostname != CATCH_ALL, server.hostname)
