"""The stream part of the model: TCP and UDP services, TLS passthrough hosts.

    tcp/udp services ConfigMaps --build.streams--> StreamService (one listener each)
    Ingresses with ssl-passthrough --build.streams--> Passthrough (one SNI name each)
    both --nginx.rendering--> the ``stream {}`` block; their backends' endpoints
         --nginx.applying--> peer files the njs picker reads (no reload)

Listeners and hosts are structural (nginx.conf); the endpoints of their backends are dynamic
and live in ``Configuration.backends`` like every other backend.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ingressd.model.keys import BackendName, ObjectKey


class StreamProtocol(enum.Enum):
    TCP = "TCP"
    UDP = "UDP"


@dataclass(frozen=True, slots=True)
class StreamService:
    """One entry of the tcp- or udp-services ConfigMap: a listener and where it goes."""

    port: int
    protocol: StreamProtocol
    backend: BackendName
    #: The Service as the entry names it (``namespace/name``) and its port (number or name).
    service: ObjectKey
    service_port: str
    #: First ``:PROXY``: the client sends a PROXY protocol header (decoded, not forwarded).
    decode_proxy: bool = False
    #: Second ``:PROXY``: nginx sends a PROXY protocol header to the pod.
    send_proxy: bool = False


@dataclass(frozen=True, slots=True)
class Passthrough:
    """An SNI name whose TLS connections go to the pods untouched (``ssl-passthrough``)."""

    hostname: str
    backend: BackendName
    #: The Ingress the host comes from.
    ingress: ObjectKey


@dataclass(frozen=True, slots=True)
class Streams:
    """Everything the ``stream {}`` block serves; empty: no stream block at all."""

    services: tuple[StreamService, ...] = ()
    passthrough: tuple[Passthrough, ...] = ()
    #: ``--enable-ssl-passthrough``: the HTTPS port is the stream front (ssl_preread).
    passthrough_enabled: bool = False

    def backend_names(self) -> frozenset[BackendName]:
        """The backends whose endpoints the stream listeners read."""
        return frozenset([s.backend for s in self.services] + [p.backend for p in self.passthrough])

    def to_json(self) -> dict[str, object]:
        return {
            "services": [
                {
                    "port": s.port,
                    "protocol": s.protocol.value,
                    "backend": s.backend,
                    "service": s.service,
                    "servicePort": s.service_port,
                    "decodeProxy": s.decode_proxy,
                    "sendProxy": s.send_proxy,
                }
                for s in self.services
            ],
            "passthrough": [
                {"host": p.hostname, "backend": p.backend, "ingress": p.ingress}
                for p in self.passthrough
            ],
            "passthroughEnabled": self.passthrough_enabled,
        }


NO_STREAMS = Streams()
