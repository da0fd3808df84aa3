"""The model of what nginx must do: the output of building, the input of diffing and rendering.

    Store snapshot --building.build_configuration()--> Configuration
    Configuration (new) + Configuration (running) --diffing.decide()--> Decision
    Configuration --nginx.rendering--> nginx.conf text
    Configuration.backends --nginx.dynamic--> JSON POSTed to the Lua endpoint

Everything here is an immutable value: frozen, slotted dataclasses holding tuples, so that two
models compare with ``==`` and a model can be shared between the sync worker, the admin server and
the renderer without copies.  Every string in a model has already been validated by the builder
(see ``ingressd.model.validation`` and ``ingressd.annotations``); the renderer still quotes
each one.

Structural versus dynamic: ``Location.settings`` and ``Server`` fields are written into nginx.conf
(a change reloads); ``Backend.endpoints`` and ``Backend.policy`` (load-balance, upstream-hash-by,
cookie affinity, canary rules) are only POSTed to Lua (a change is a dynamic update).  The parts
that annotations set live in their own modules: ``LocationSettings`` and the files made from
Secrets in ``ingressd.model.settings``, ``BackendPolicy`` in ``ingressd.model.policy``.
"""

from __future__ import annotations

import bisect
import dataclasses
import enum
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, count
from operator import is_not
from typing import Any, TypeVar

from ingressd.model.keys import CATCH_ALL, BackendName, ObjectKey
from ingressd.model.policy import DEFAULT_POLICY, BackendPolicy, TrafficShaping
from ingressd.model.settings import DEFAULT_SETTINGS, ClientAuth, LocationSettings, SecretFile
from ingressd.model.streams import NO_STREAMS, Streams


class PathType(enum.Enum):
    """How a location matches a request path (Ingress v1 ``pathType``, resolved)."""

    EXACT = "Exact"
    PREFIX = "Prefix"
    #: A case-insensitive regular expression anchored at the start (``use-regex`` or
    #: ``rewrite-target`` on a Prefix or ImplementationSpecific path): nginx ``location ~*``.
    REGEX = "Regex"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ready pod address a backend sends traffic to."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Backend:
    """An upstream: a Service port and its ready endpoints.

    ``endpoints`` and ``policy`` are the dynamic part: a change there alone is applied through
    Lua with no reload.
    """

    name: BackendName
    namespace: str
    service: str
    #: The Service port as the Ingress named it (number or name), for display.
    service_port: str
    endpoints: tuple[Endpoint, ...] = ()
    policy: BackendPolicy = DEFAULT_POLICY
    #: ``service-upstream``: the one endpoint is the Service's cluster IP and port, not its
    #: pods (EndpointSlice changes do not touch it).
    cluster_ip: bool = False

    def structure(self) -> Backend:
        """This backend with its dynamic part blanked: what nginx.conf depends on."""
        if not self.endpoints and self.policy is DEFAULT_POLICY:
            return self
        return dataclasses.replace(self, endpoints=(), policy=DEFAULT_POLICY)

    def dynamic(self) -> tuple[tuple[Endpoint, ...], BackendPolicy]:
        """The part applied through Lua."""
        return self.endpoints, self.policy

    def to_lua(self) -> dict[str, Any]:
        """The JSON object the Lua configuration endpoint takes for this backend.

        The keys are ingress-nginx's: ``load-balance``, ``upstreamHashByConfig``,
        ``sessionAffinityConfig``, ``trafficShapingPolicy``, ``alternativeBackends``, ``noServer``.
        """
        policy = self.policy
        affinity = policy.affinity
        shaping = policy.traffic_shaping or TrafficShaping()
        return {
            "name": self.name,
            "service": {"namespace": self.namespace, "name": self.service},
            "port": self.service_port,
            "endpoints": [{"address": e.address, "port": str(e.port)} for e in self.endpoints],
            "load-balance": policy.load_balance.value,
            "upstreamHashByConfig": {"upstream-hash-by": policy.hash_by},
            "sessionAffinityConfig": {
                "name": "cookie" if affinity else "",
                "mode": affinity.mode.value if affinity else "",
                "cookieSessionAffinity": (
                    {
                        "name": affinity.name,
                        "path": affinity.path or "/",
                        "maxage": affinity.max_age,
                        "expires": affinity.expires,
                        "samesite": affinity.samesite or "",
                        "secure": affinity.secure,
                        "changeonfailure": affinity.change_on_failure,
                        "domain": affinity.domain or "",
                    }
                    if affinity
                    else {"name": ""}
                ),
            },
            "trafficShapingPolicy": {
                "weight": shaping.weight,
                "weightTotal": shaping.weight_total,
                "header": shaping.header,
                "headerValue": shaping.header_value,
                "headerPattern": shaping.header_pattern,
                "cookie": shaping.cookie,
            },
            "alternativeBackends": list(policy.alternatives),
            "noServer": policy.traffic_shaping is not None,
        }


@dataclass(frozen=True, slots=True)
class Location:
    """One path of one server, routed to one backend (or to a fixed status when it has none)."""

    path: str
    path_type: PathType
    #: ``None`` when the location answers with ``status`` itself (no backend resolved).
    backend: BackendName | None
    #: The Ingress that owns this path, ``namespace/name``.
    ingress: ObjectKey
    #: Returned directly when ``backend`` is ``None`` (404 for the default server's ``/``).
    status: int = 503
    #: What the owning Ingress's annotations change here.
    settings: LocationSettings = DEFAULT_SETTINGS


@dataclass(frozen=True, slots=True)
class Certificate:
    """A TLS certificate and key from a ``kubernetes.io/tls`` Secret.

    ``sha256`` covers the PEM; the file names used by nginx carry it, so a rotated certificate
    changes nginx.conf and is picked up by the reload that follows.
    """

    secret: ObjectKey
    sha256: str
    #: Certificate chain followed by the private key, PEM; written 0600 into the work dir.
    pem: str = field(repr=False)
    not_after: float = 0.0

    @property
    def file_name(self) -> str:
        namespace, _, name = self.secret.partition("/")
        return f"{namespace}_{name}-{self.sha256[:16]}.pem"


@dataclass(frozen=True, slots=True)
class Server:
    """A virtual host: an exact host name, a one-label wildcard (``*.foo.com``) or the catch-all."""

    hostname: str
    locations: tuple[Location, ...]
    #: The certificate served for this host by SNI; ``None`` means the default certificate.
    certificate: Certificate | None = None
    #: Redirect plain HTTP to HTTPS with 308 (hosts listed in an Ingress's ``spec.tls``);
    #: a location's ``ssl-redirect`` / ``force-ssl-redirect`` annotations override it.
    ssl_redirect: bool = False
    #: ``server-alias``: more names served by this server (exact or one-label wildcards).
    aliases: tuple[str, ...] = ()
    #: ``server-snippet`` (only with ``--allow-snippet-annotations``).
    snippet: str | None = None
    #: ``app-root``: ``/`` redirects (302) here; from the oldest Ingress of the host that sets it.
    app_root: str | None = None
    #: ``ssl-ciphers`` / ``ssl-prefer-server-ciphers`` of the oldest Ingress of the host that
    #: sets them: TLS handshakes for this name (its server block has its own SSL context).
    ssl_ciphers: str | None = None
    ssl_prefer_server_ciphers: bool | None = None
    #: ``from-to-www-redirect``: the other name (``www.`` added or removed), answered with a
    #: 308 to this host; ``None`` when off or when that name is a server or alias itself.
    www_redirect: str | None = None
    #: ``auth-tls-*``: client certificates asked for at the handshake; from the oldest Ingress
    #: of the host that sets ``auth-tls-secret``.
    client_auth: ClientAuth | None = None

    @property
    def is_wildcard(self) -> bool:
        return self.hostname.startswith("*.")

    @property
    def is_catch_all(self) -> bool:
        return self.hostname == CATCH_ALL


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in an object the builder refused, with enough to find and fix it."""

    kind: str
    key: ObjectKey
    #: JSON-path-like location of the offending field, e.g. ``spec.rules[0].http.paths[1].path``.
    field: str
    reason: str
    #: The object the field names that does not exist, as ``Kind namespace/name``.
    missing: str = ""
    #: The Ingress that keeps what this one asked for (a host and path defined twice).
    winner: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Configuration:
    """Everything nginx must do.

    Servers sorted by hostname, the catch-all first; backends by name.
    """

    servers: tuple[Server, ...] = ()
    backends: tuple[Backend, ...] = ()
    #: TCP/UDP services and TLS passthrough hosts (the ``stream {}`` block; structural).
    streams: Streams = NO_STREAMS

    def backend_map(self) -> dict[BackendName, Backend]:
        return {b.name: b for b in self.backends}

    def backends_named(self, names: Iterable[BackendName]) -> list[Backend]:
        """The backends called ``names`` (each one present), found by bisection: a dynamic
        update of a few backends out of 10,000 does not build a map of all of them."""
        found = []
        for name in names:
            at = bisect.bisect_left(self.backends, name, key=backend_order)
            if at == len(self.backends) or self.backends[at].name != name:
                raise KeyError(name)
            found.append(self.backends[at])
        return found

    def without_endpoints(self) -> Configuration:
        """The structural part: what is left when the dynamic parts (each backend's endpoints
        and balancing policy: algorithm, hashing, affinity, canary rules) are blanked."""
        return dataclasses.replace(self, backends=tuple(b.structure() for b in self.backends))

    def secret_files(self) -> tuple[SecretFile, ...]:
        """Every file made from a Secret that nginx.conf refers to, without duplicates."""
        seen: dict[str, SecretFile] = {}
        for server in self.servers:
            for location in server.locations:
                for f in location.settings.secret_files():
                    seen.setdefault(f.file_name, f)
            if server.client_auth is not None:
                for f in server.client_auth.secret_files():
                    seen.setdefault(f.file_name, f)
        return tuple(seen[name] for name in sorted(seen))

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dump for ``/debug/configuration``; certificates show only their hash."""
        return {
            "servers": [
                {
                    "hostname": s.hostname,
                    "sslRedirect": s.ssl_redirect,
                    **({"aliases": list(s.aliases)} if s.aliases else {}),
                    **({"snippet": s.snippet} if s.snippet is not None else {}),
                    **({"appRoot": s.app_root} if s.app_root is not None else {}),
                    **({"sslCiphers": s.ssl_ciphers} if s.ssl_ciphers is not None else {}),
                    **(
                        {"sslPreferServerCiphers": s.ssl_prefer_server_ciphers}
                        if s.ssl_prefer_server_ciphers is not None
                        else {}
                    ),
                    **({"wwwRedirect": s.www_redirect} if s.www_redirect is not None else {}),
                    **(
                        {"clientAuth": _client_auth_json(s.client_auth)}
                        if s.client_auth is not None
                        else {}
                    ),
                    "certificate": (
                        {
                            "secret": s.certificate.secret,
                            "sha256": s.certificate.sha256,
                            "notAfter": s.certificate.not_after,
                        }
                        if s.certificate
                        else None
                    ),
                    "locations": [
                        {
                            "path": loc.path,
                            "pathType": loc.path_type.value,
                            "backend": loc.backend,
                            "ingress": loc.ingress,
                            **({} if loc.backend else {"status": loc.status}),
                            **(
                                {"settings": loc.settings.to_json()}
                                if loc.settings != DEFAULT_SETTINGS
                                else {}
                            ),
                        }
                        for loc in s.locations
                    ],
                }
                for s in self.servers
            ],
            "backends": [b.to_lua() for b in self.backends],
            **({"streams": self.streams.to_json()} if self.streams != NO_STREAMS else {}),
        }

    def digest(self) -> str:
        """sha256 of the whole model, endpoints included."""
        raw = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()


def _client_auth_json(auth: ClientAuth) -> dict[str, Any]:
    return {
        "ca": {"secret": auth.ca.secret, "file": auth.ca.file_name},
        "crl": {"secret": auth.crl.secret, "file": auth.crl.file_name} if auth.crl else None,
        "verify": auth.verify,
        "depth": auth.depth,
        "errorPage": auth.error_page,
        "passCertificate": auth.pass_certificate,
        "matchCN": auth.match_cn,
    }


def backend_order(backend: Backend) -> BackendName:
    """The sort key of ``Configuration.backends`` (for bisection)."""
    return backend.name


def server_order(server: Server) -> tuple[bool, str]:
    """The sort key of ``Configuration.servers`` (the catch-all first, then by host name)."""
    return (server.hostname != CATCH_ALL, server.hostname)


_T = TypeVar("_T")

#: Below this many items on both sides together, ``differing`` merges by key.
_SMALL = 16


def differing(
    new: Sequence[_T], old: Sequence[_T], *, key: Callable[[_T], Any]
) -> tuple[list[_T], list[_T]]:
    """The items of ``new`` that are not ``old``'s very objects, and those of ``old`` that are
    not ``new``'s, each in order: what a build changed (ARCHITECTURE.md, invariant 2).

    Both sequences are sorted by ``key``, unique within each.  Runs of identical objects are
    skipped at C speed (``map(is_not, ...)``) and what is left is split by bisection on the
    key, so the Python work grows with the change, not with the length: one server of 10,000
    changed costs a few comparisons.
    """
    fresh: list[_T] = []
    stale: list[_T] = []
    if new is not old:
        _differing(tuple(new), tuple(old), key, fresh, stale)
    return fresh, stale


def _differing(
    new: tuple[_T, ...],
    old: tuple[_T, ...],
    key: Callable[[_T], Any],
    fresh: list[_T],
    stale: list[_T],
) -> None:
    while True:
        shorter = min(len(new), len(old))
        head = next(compress(count(), map(is_not, new, old)), shorter)
        if head:
            new, old = new[head:], old[head:]
            shorter -= head
        tail = next(compress(count(), map(is_not, reversed(new), reversed(old))), shorter)
        if tail:
            new, old = new[: len(new) - tail], old[: len(old) - tail]
        if not new or not old:
            fresh.extend(new)
            stale.extend(old)
            return
        if len(new) + len(old) <= _SMALL:
            _merge(new, old, key, fresh, stale)
            return
        # split both at the middle item of the longer one: each half is shorter than the whole
        if len(new) >= len(old):
            at_new = len(new) // 2
            at_old = bisect.bisect_left(old, key(new[at_new]), key=key)
        else:
            at_old = len(old) // 2
            at_new = bisect.bisect_left(new, key(old[at_old]), key=key)
        _differing(new[:at_new], old[:at_old], key, fresh, stale)
        new, old = new[at_new:], old[at_old:]


def _merge(
    new: Sequence[_T],
    old: Sequence[_T],
    key: Callable[[_T], Any],
    fresh: list[_T],
    stale: list[_T],
) -> None:
    i = j = 0
    while i < len(new) and j < len(old):
        a, b = new[i], old[j]
        if a is b:
            i, j = i + 1, j + 1
            continue
        ka, kb = key(a), key(b)
        if ka == kb:
            fresh.append(a)
            stale.append(b)
            i, j = i + 1, j + 1
        elif ka < kb:
            fresh.append(a)
            i += 1
        else:
            stale.append(b)
            j += 1
    fresh.extend(new[i:])
    stale.extend(old[j:])
