"""The model of what nginx must do: the output of building, the input of diffing and rendering.

    Store snapshot --building.build_configuration()--> Configuration
    Configuration (new) + Configuration (running) --diffing.decide()--> Decision
    Configuration --nginx.rendering--> nginx.conf text
    Configuration.backends --nginx.dynamic--> JSON POSTed to the Lua endpoint

Everything here is an immutable value: frozen, slotted dataclasses holding tuples, so that two
models compare with ``==`` and a model can be shared between the sync worker, the admin server and
the renderer without copies.  Every string in a model has already been validated by the builder
(see ``ingressd.validation``); the renderer still quotes each one.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, NewType

#: ``namespace/name`` of a Kubernetes object.
ObjectKey = NewType("ObjectKey", str)

#: Name of an upstream backend, ``<namespace>-<service>-<port>`` as ingress-nginx names them.
BackendName = NewType("BackendName", str)

#: Name of the catch-all server, the one that answers requests for unknown hosts.
CATCH_ALL = "_"


class PathType(enum.Enum):
    """How a location matches a request path (Ingress v1 ``pathType``, resolved)."""

    EXACT = "Exact"
    PREFIX = "Prefix"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One ready pod address a backend sends traffic to."""

    address: str
    port: int


@dataclass(frozen=True, slots=True)
class Backend:
    """An upstream: a Service port and its ready endpoints.

    ``endpoints`` is the dynamic part: a change there alone is applied through Lua with no reload.
    """

    name: BackendName
    namespace: str
    service: str
    #: The Service port as the Ingress named it (number or name), for display.
    service_port: str
    endpoints: tuple[Endpoint, ...] = ()

    def to_lua(self) -> dict[str, Any]:
        """The JSON object the Lua configuration endpoint takes for this backend."""
        return {
            "name": self.name,
            "service": {"namespace": self.namespace, "name": self.service},
            "port": self.service_port,
            "endpoints": [{"address": e.address, "port": str(e.port)} for e in self.endpoints],
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
    #: Redirect plain HTTP to HTTPS with 308 (hosts listed in an Ingress's ``spec.tls``).
    ssl_redirect: bool = False

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

    def __str__(self) -> str:
        return f"{self.kind} {self.key}: {self.field}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Configuration:
    """Everything nginx must do.

    Servers sorted by hostname, the catch-all first; backends by name.
    """

    servers: tuple[Server, ...] = ()
    backends: tuple[Backend, ...] = ()

    def backend_map(self) -> dict[BackendName, Backend]:
        return {b.name: b for b in self.backends}

    def without_endpoints(self) -> Configuration:
        """The structural part: what is left when the dynamic parts are blanked."""
        return dataclasses.replace(
            self, backends=tuple(dataclasses.replace(b, endpoints=()) for b in self.backends)
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dump for ``/debug/configuration``; certificates show only their hash."""
        return {
            "servers": [
                {
                    "hostname": s.hostname,
                    "sslRedirect": s.ssl_redirect,
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
                        }
                        for loc in s.locations
                    ],
                }
                for s in self.servers
            ],
            "backends": [b.to_lua() for b in self.backends],
        }

    def digest(self) -> str:
        """sha256 of the whole model, endpoints included."""
        raw = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(raw.encode()).hexdigest()
