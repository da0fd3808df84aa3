"""Streams: the tcp/udp services ConfigMaps and ssl-passthrough Ingresses -> ``Streams``.

    ConfigMap data {"<port>": "<namespace>/<service>:<port>[:PROXY][:PROXY]"}
        --parse_entry()--> StreamEntry | reason (strict grammar, one Problem per bad key)
    entries + Services + EndpointSlices --build_streams()--> Streams, their Backends, Problems
    (ssl-passthrough Ingresses: host -> the backend of the rule's ``/`` path, or its first)

A stage after the HTTP build (``ingressd.build.building``): it reads a handful of objects, so it
runs whole on every build and its result is the same with or without the build cache.  A
backend an Ingress already uses is shared (same name, same endpoints); the others are made
here.  Ports the HTTP side listens on are refused with a Problem, never left to nginx.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ingressd.build import kube
from ingressd.build.reading import read_slices
from ingressd.build.selection import BuildOptions, is_ours, our_classes
from ingressd.model import Backend, BackendName, Configuration, ObjectKey, Problem
from ingressd.model.streams import (
    NO_STREAMS,
    Passthrough,
    StreamProtocol,
    Streams,
    StreamService,
)
from ingressd.model.validation import (
    validate_host,
    validate_namespace,
    validate_port_name,
    validate_service_name,
)
from ingressd.store.snapshot import Snapshot

__all__ = ["PASSTHROUGH_ANNOTATION", "StreamEntry", "build_streams", "parse_entry"]

#: Without the prefix (``--annotations-prefix``).
PASSTHROUGH_ANNOTATION = "ssl-passthrough"

_PORT_KEY = re.compile(r"[0-9]{1,5}")
_SERVICE_PORT = re.compile(r"[0-9]{1,5}|[a-z0-9-]{1,15}")


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One parsed ConfigMap entry."""

    port: int
    namespace: str
    service: str
    service_port: str
    decode_proxy: bool
    send_proxy: bool


def parse_entry(key: str, value: object) -> StreamEntry | str:
    """``"<port>": "<namespace>/<service>:<port>[:PROXY][:PROXY]"`` -> entry, or why not."""
    if not _PORT_KEY.fullmatch(key) or not 1 <= int(key) <= 65535:
        return f"key {key!r} must be a port number (1-65535)"
    if not isinstance(value, str):
        return "value must be a string"
    parts = value.split(":")
    if len(parts) < 2 or len(parts) > 4:
        return f"{value!r} must be <namespace>/<service>:<port>[:PROXY][:PROXY]"
    target, port, *flags = parts
    namespace, slash, service = target.partition("/")
    if not slash:
        return f"{target!r} must be <namespace>/<service>"
    why = validate_namespace(namespace)
    if why is not None:
        return f"namespace {namespace!r} {why}"
    why = validate_service_name(service)
    if why is not None:
        return f"service {service!r} {why}"
    if not _SERVICE_PORT.fullmatch(port):
        return f"service port {port!r} must be a number or a port name"
    if port.isdigit():
        if not 1 <= int(port) <= 65535:
            return f"service port {port} must be between 1 and 65535"
    else:
        why = validate_port_name(port)
        if why is not None:
            return f"service port {port!r} {why}"
    for flag in flags:
        if flag != "PROXY":
            return f"{flag!r}: only PROXY may follow the port"
    return StreamEntry(
        port=int(key),
        namespace=namespace,
        service=service,
        service_port=port,
        decode_proxy=len(flags) >= 1,
        send_proxy=len(flags) == 2,
    )


def build_streams(
    snapshot: Snapshot, options: BuildOptions, http: Configuration
) -> tuple[Streams, tuple[Backend, ...], tuple[Problem, ...]]:
    """The stream listeners and passthrough hosts, the backends they need that ``http`` lacks
    (sorted by name), and what was refused."""
    problems: list[Problem] = []
    known = {b.name: b for b in http.backends}
    made: dict[BackendName, Backend] = {}
    resolver = _Resolver(snapshot, options, known, made)
    services: list[StreamService] = []
    for protocol, configmap in (
        (StreamProtocol.TCP, options.tcp_services_configmap),
        (StreamProtocol.UDP, options.udp_services_configmap),
    ):
        if configmap is not None:
            services += _services(snapshot, options, protocol, configmap, resolver, problems)
    passthrough = (
        _passthrough(snapshot, options, resolver, problems)
        if options.enable_ssl_passthrough
        else []
    )
    if not services and not passthrough and not options.enable_ssl_passthrough:
        return NO_STREAMS, (), tuple(problems)
    streams = Streams(
        services=tuple(sorted(services, key=lambda s: (s.protocol.value, s.port))),
        passthrough=tuple(sorted(passthrough, key=lambda p: p.hostname)),
        passthrough_enabled=options.enable_ssl_passthrough,
    )
    return streams, tuple(made[n] for n in sorted(made)), tuple(problems)


def _services(
    snapshot: Snapshot,
    options: BuildOptions,
    protocol: StreamProtocol,
    configmap: ObjectKey,
    resolver: _Resolver,
    problems: list[Problem],
) -> list[StreamService]:
    raw = snapshot.config_maps.get(configmap)
    data = raw.get("data") if isinstance(raw, dict) else None
    if data is None:
        return []
    if not isinstance(data, dict):
        problems.append(Problem("ConfigMap", configmap, "data", "must be a map"))
        return []
    reserved = dict(options.reserved_ports) if protocol is StreamProtocol.TCP else {}
    found: list[StreamService] = []
    for key in sorted(data, key=str):
        field = f"data[{key}]"
        entry = parse_entry(str(key), data[key])
        if isinstance(entry, str):
            problems.append(Problem("ConfigMap", configmap, field, entry))
            continue
        if entry.port in reserved:
            problems.append(
                Problem(
                    "ConfigMap",
                    configmap,
                    field,
                    f"port {entry.port} is already taken by {reserved[entry.port]}",
                )
            )
            continue
        backend = resolver.backend(entry.namespace, entry.service, entry.service_port)
        if isinstance(backend, _Missing):
            problems.append(
                Problem("ConfigMap", configmap, field, backend.reason, missing=backend.missing)
            )
            continue
        found.append(
            StreamService(
                port=entry.port,
                protocol=protocol,
                backend=backend,
                service=ObjectKey(f"{entry.namespace}/{entry.service}"),
                service_port=entry.service_port,
                decode_proxy=entry.decode_proxy,
                send_proxy=entry.send_proxy,
            )
        )
    return found


def _passthrough(
    snapshot: Snapshot, options: BuildOptions, resolver: _Resolver, problems: list[Problem]
) -> list[Passthrough]:
    """Hosts of our Ingresses with ``ssl-passthrough: "true"``; the oldest Ingress wins a host."""
    ours, have_default, _ = our_classes(snapshot, options)
    annotation = f"{options.annotations_prefix}/{PASSTHROUGH_ANNOTATION}"
    claims: dict[str, list[tuple[str, ObjectKey, int, Passthrough]]] = {}
    for key in sorted(snapshot.ingresses):
        raw = snapshot.ingresses[key]
        meta = raw.get("metadata")
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        value = annotations.get(annotation) if isinstance(annotations, dict) else None
        if value is None or not is_ours(raw, options, ours, have_default):
            continue
        if not isinstance(value, str) or value.strip().lower() != "true":
            continue  # "false"; a value that is not a boolean is the annotation parser's Problem
        created = str(meta.get("creationTimestamp") or "") if isinstance(meta, dict) else ""
        for host, at, ref in _rule_targets(raw):
            field = f"spec.rules[{at}]"
            why = validate_host(host) if host else "a passthrough rule needs a host"
            if why is not None:
                problems.append(Problem("Ingress", key, f"{field}.host", why))
                continue
            namespace = key.partition("/")[0]
            if ref is None:
                problems.append(
                    Problem("Ingress", key, f"{field}.http.paths", "no service backend")
                )
                continue
            backend = resolver.backend(namespace, *ref)
            if isinstance(backend, _Missing):
                problems.append(
                    Problem(
                        "Ingress",
                        key,
                        f"{field}.http.paths",
                        backend.reason,
                        missing=backend.missing,
                    )
                )
                continue
            claims.setdefault(host, []).append((created, key, at, Passthrough(host, backend, key)))
    found: list[Passthrough] = []
    for host in sorted(claims):
        winner, *losers = sorted(claims[host], key=lambda c: (c[0], c[1]))
        found.append(winner[3])
        problems.extend(
            Problem(
                "Ingress",
                key,
                f"spec.rules[{at}].host",
                f"passthrough host {host} is already taken",
                winner=winner[1],
            )
            for _, key, at, _ in losers
        )
    return found


def _rule_targets(raw: Mapping[str, object]) -> Iterable[tuple[str, int, tuple[str, str] | None]]:
    """(host, rule index, (service, port) of the ``/`` path or else the first path)."""
    spec = raw.get("spec")
    rules = spec.get("rules") if isinstance(spec, dict) else None
    if not isinstance(rules, list):
        return
    for at, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        host = rule.get("host")
        http = rule.get("http")
        paths = http.get("paths") if isinstance(http, dict) else None
        refs: list[tuple[str, tuple[str, str] | None]] = []
        for path in paths if isinstance(paths, list) else ():
            refs.append(
                (str(path.get("path") or "/"), _service_ref(path.get("backend")))
                if isinstance(path, dict)
                else ("", None)
            )
        root = next((r for p, r in refs if p == "/" and r is not None), None)
        first = next((r for _, r in refs if r is not None), None)
        yield (host if isinstance(host, str) else ""), at, root or first


def _service_ref(backend: object) -> tuple[str, str] | None:
    service = backend.get("service") if isinstance(backend, dict) else None
    if not isinstance(service, dict) or not isinstance(service.get("name"), str):
        return None
    port = service.get("port")
    if not isinstance(port, dict):
        return None
    number, name = port.get("number"), port.get("name")
    if isinstance(number, int) and not isinstance(number, bool):
        return service["name"], str(number)
    if isinstance(name, str):
        return service["name"], name
    return None


@dataclass(frozen=True, slots=True)
class _Missing:
    reason: str
    missing: str = ""


class _Resolver:
    """Service port -> backend name, sharing the HTTP build's backend when it has one."""

    def __init__(
        self,
        snapshot: Snapshot,
        options: BuildOptions,
        known: Mapping[BackendName, Backend],
        made: dict[BackendName, Backend],
    ) -> None:
        self.snapshot, self.options, self.known, self.made = snapshot, options, known, made

    def backend(self, namespace: str, service: str, port: str) -> BackendName | _Missing:
        key = ObjectKey(f"{namespace}/{service}")
        name = BackendName(f"{namespace}-{service}-{port}")
        raw = self.snapshot.services.get(key)
        if raw is None:
            return _Missing(f"service {key} not found", f"Service {key}")
        view = kube.read_service(raw)
        if isinstance(view, kube.ParseError):
            return _Missing(f"service {key} is malformed: {view.field}: {view.reason}")
        if view.type == "ExternalName":
            return _Missing(f"service {key} is of type ExternalName, which is not supported")
        match = next(
            (p for p in view.ports if (str(p[1]) == port if port.isdigit() else p[0] == port)),
            None,
        )
        if match is None:
            return _Missing(f"service {key} has no port {port}")
        existing = self.known.get(name) or self.made.get(name)
        if existing is not None:
            if (existing.namespace, existing.service) != (namespace, service):
                return _Missing(f"backend name {name} is already used by another service")
            return name
        slices = read_slices(
            key,
            self.snapshot.endpoint_slices.get(key, ()),
            allow_loopback=self.options.allow_loopback_endpoints,
        )
        self.made[name] = Backend(name, namespace, service, port, slices.endpoints_of(match[0]))
        return name
