"""Finishing: the server drafts and backends of an assembly -> sorted Servers and Backends.

    ServerDrafts --finish()--> Servers, catch-all ``_`` first, then by host name
        every server without Prefix ``/`` answers it with 404; locations sorted by
        (path, pathType); ssl redirect where a certificate is usable
        (``BuildOptions.default_ssl_redirect``); ``server-alias`` names kept unless they are
        a server's own host or already another server's alias (then a Problem)
    resolved Backends + canaries --finish()--> the Backends the locations use (and the canaries
        of those), sorted by name, each with its balancing policy and ``alternatives``

Stage 6 of the assembly (``ingressd.build.assembly``), run after the canaries with no current
Ingress: its problems (aliases) are the assembly's ``finish_problems``.  A Server or Backend
equal to the last build's is that object (``Memo.servers``, ``Memo.final_backends``), so that
comparing and rendering an unchanged one stops at an identity check.
"""

from __future__ import annotations

import dataclasses

from ingressd.build.plan import ROOT
from ingressd.build.resolving import NO_INGRESS, AssemblyState, ServerDraft
from ingressd.model import CATCH_ALL, Backend, BackendName, Location, PathType, Server

__all__ = ["FinishStage"]

_NOT_FOUND = Location("/", PathType.PREFIX, backend=None, ingress=NO_INGRESS, status=404)


class FinishStage(AssemblyState):
    """6. The servers and the backends they use, as the model holds them."""

    def finish(self) -> tuple[list[Server], list[Backend]]:
        servers: list[Server] = []
        previous_servers = self.memo.servers
        redirect_default = self.options.default_ssl_redirect
        for hostname in sorted(self.servers, key=_server_order):
            draft = self.servers[hostname]
            locations = draft.locations
            if ROOT not in locations:
                locations[ROOT] = _NOT_FOUND
            ordered = (
                tuple(sorted(locations.values(), key=_location_order))
                if len(locations) > 1
                else tuple(locations.values())
            )
            redirect = redirect_default and (
                draft.certificate is not None
                or (draft.tls_default_certificate and not draft.tls_failed)
            )
            server = Server(
                hostname,
                ordered,
                draft.certificate,
                redirect,
                aliases=self.aliases(hostname, draft) if draft.aliases else (),
                snippet=draft.snippet,
                app_root=draft.app_root,
            )
            previous = previous_servers.get(hostname)
            if previous is not None and previous == server:
                server = previous
            servers.append(server)
        used: set[BackendName] = set()
        for server in servers:
            for loc in server.locations:
                if loc.backend:
                    used.add(loc.backend)
                if loc.settings.default_backend and loc.settings.denied is None:
                    used.add(loc.settings.default_backend)
        for main in sorted(used):
            used.update(self.alternatives.get(main, ()))
        backends: list[Backend] = []
        previous_backends = self.memo.final_backends
        for name in sorted(used):
            backend = self.backends.get(name) or self.canaries[name]
            policy = self.policies.get(name, (backend.policy, NO_INGRESS))[0]
            alternatives = tuple(self.alternatives.get(name, ()))
            if alternatives:
                policy = dataclasses.replace(policy, alternatives=alternatives)
            if policy != backend.policy:
                backend = dataclasses.replace(backend, policy=policy)
                previous_backend = previous_backends.get(name)
                if previous_backend is not None and previous_backend == backend:
                    backend = previous_backend
            backends.append(backend)
        return servers, backends

    def aliases(self, hostname: str, draft: ServerDraft) -> tuple[str, ...]:
        """``server-alias`` names that are not a server's own host name nor another's alias."""
        kept: list[str] = []
        for alias, key in draft.aliases.items():
            owner = self.alias_owners.setdefault(alias, hostname)
            if alias in self.servers:
                reason = f"alias {alias} is the host of another server; ignored"
            elif owner != hostname:
                reason = f"alias {alias} is already an alias of {owner}; ignored"
            else:
                kept.append(alias)
                continue
            self.problem(key, self.annotation_field("server-alias"), reason)
        return tuple(sorted(kept))


def _server_order(hostname: str) -> tuple[bool, str]:
    return (hostname != CATCH_ALL, hostname)


def _location_order(location: Location) -> tuple[str, str]:
    return (location.path, location.path_type.value)
