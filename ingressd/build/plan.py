"""Planning: one Ingress object in, everything about it that depends on that object alone out.

    (key, raw Ingress, AnnotationOptions) --plan_ingress()--> IngressPlan   (pure)
        metadata.namespace / name checked; the spec read as it is when plainly well-formed
        (``ingressd.build._screen``), else parsed (``kube.Ingress``, pydantic);
        annotations parsed (``ingressd.annotations``); every host, path, pathType, backend
        reference and TLS entry checked, each failure kept as an ``Issue`` (field, reason)
        at the place the assembly meets it
    building keeps one plan per Ingress object and reuses it while the Store holds that very
    object (ARCHITECTURE.md, invariant 1), so an Ingress is parsed
    once per change, not once per sync; ``ingressd.build.assembly`` reads plans, never raw
    Ingresses.

A plan holds no pydantic model (one costs ~7 KB an Ingress): only small tuples of strings the
raw object already holds.  What needs other objects (Services, EndpointSlices, Secrets) or other
Ingresses (conflicts, the oldest wins) is the assembly's business.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ingressd.annotations import AnnotationOptions, IngressAnnotations, parse_annotations
from ingressd.annotations.patterns import regex_path
from ingressd.annotations.values import InvalidValue
from ingressd.build import kube
from ingressd.build._screen import Irregular, plain_spec
from ingressd.model import (
    CATCH_ALL,
    BackendName,
    ObjectKey,
    PathType,
)
from ingressd.model.policy import DEFAULT_POLICY
from ingressd.model.settings import DEFAULT_SETTINGS
from ingressd.model.validation import (
    validate_host,
    validate_namespace,
    validate_object_name,
    validate_path,
    validate_port_name,
    validate_port_number,
    validate_service_name,
)

__all__ = [
    "LEGACY_CLASS_ANNOTATION",
    "ROOT",
    "At",
    "BackendRef",
    "IngressPlan",
    "Issue",
    "PathPlan",
    "RulePlan",
    "TlsPlan",
    "at_field",
    "backend_ref",
    "plan_ingress",
]

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"

#: ``(field, reason)``: what is wrong with one field of the Ingress.
Issue = tuple[str, str]

#: Sort key of an Ingress: creationTimestamp (missing or unparsable last), then its key.
Age = tuple[int, float, str]

#: The location key of Prefix ``/``, which every server answers (404 when no Ingress does).
ROOT = ("/", PathType.PREFIX)


class BackendRef(NamedTuple):
    """A checked ``backend.service`` reference: Service and port, not yet resolved."""

    namespace: str
    service: str
    number: int | None
    port_name: str | None

    @property
    def written(self) -> str:
        """The port as the Ingress wrote it: the number or the name."""
        return str(self.number) if self.number is not None else self.port_name or ""

    @property
    def service_key(self) -> ObjectKey:
        return ObjectKey(f"{self.namespace}/{self.service}")

    @property
    def backend_name(self) -> BackendName:
        return BackendName(f"{self.namespace}-{self.service}-{self.written}")


class PathPlan(NamedTuple):
    """One ``spec.rules[i].http.paths[j]``."""

    #: ``j``.
    position: int
    #: ``path`` (``/`` when missing) and ``pathType`` as written, for canaries.
    raw_path: str
    raw_type: str
    #: ``(path, PathType)`` of the location, or why the path is refused.
    location: tuple[str, PathType] | None
    location_issue: Issue | None
    #: The backend reference, or why it is refused (relative to the path's field).
    backend: BackendRef | None
    backend_issue: Issue | None


class RulePlan(NamedTuple):
    """One ``spec.rules[i]``: its host (``None``: the catch-all) and paths."""

    #: ``i``.
    position: int
    host: str | None
    host_issue: Issue | None
    paths: tuple[PathPlan, ...]

    @property
    def server(self) -> str:
        return self.host or CATCH_ALL


class TlsPlan(NamedTuple):
    """One ``spec.tls[i]``."""

    #: ``i``.
    position: int
    #: Invalid hosts, in order.
    issues: tuple[Issue, ...]
    #: ``(field, host)`` of its hosts that this Ingress has rules for.
    targets: tuple[tuple[str, str], ...]
    secret_name: str | None
    secret_issue: Issue | None


@dataclass(frozen=True, slots=True, eq=False)
class IngressPlan:
    """What one Ingress object says, checked; compared by identity."""

    #: The object planned: kept so that its ``id()`` stays unique while the plan is cached.
    raw: Any
    key: ObjectKey
    age: Age
    annotations: IngressAnnotations
    #: Why the whole Ingress is refused (metadata or structure); nothing else then applies.
    invalid: Issue | None
    #: Annotation problems, reported with the Ingress.
    notes: tuple[Issue, ...] = ()
    rules: tuple[RulePlan, ...] = ()
    tls: tuple[TlsPlan, ...] = ()
    #: ``spec.defaultBackend``: set, and its reference or why it is refused.
    has_default_backend: bool = False
    default_backend: BackendRef | None = None
    default_backend_issue: Issue | None = None
    #: Servers the Ingress may change: its valid rule hosts, and the catch-all for host-less
    #: rules and a default backend.
    hosts: tuple[str, ...] = ()
    #: Services it names (rules, default backend, ``default-backend`` annotation) and Secrets
    #: (TLS, ``auth-secret``, ``proxy-ssl-secret``), own namespace.
    services: tuple[ObjectKey, ...] = ()
    secrets: tuple[ObjectKey, ...] = ()
    #: ConfigMaps (``auth-proxy-set-headers``), own namespace.
    config_maps: tuple[ObjectKey, ...] = ()

    @property
    def canary(self) -> bool:
        return self.annotations.canary is not None

    @property
    def sets_policy(self) -> bool:
        return self.annotations.policy is not DEFAULT_POLICY


def age(key: str, raw: object) -> Age:
    """Sort key: creationTimestamp (RFC 3339; missing or unparsable last), then the key."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    stamp = meta.get("creationTimestamp") if isinstance(meta, dict) else None
    if isinstance(stamp, str):
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            pass
        else:
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            return (0, when.timestamp(), key)
    return (1, 0.0, key)


#: The API server's limit on an object's annotations, keys and values together.
MAX_ANNOTATIONS_BYTES = 256 * 1024

#: The annotations of an Ingress without any of ours, per options (they do not depend on it).
_NO_ANNOTATIONS: dict[AnnotationOptions, IngressAnnotations] = {}


def _annotations(
    key: str, annotations: dict[str, Any], options: AnnotationOptions
) -> IngressAnnotations:
    """The parsed annotations, with the model's shared defaults where they are the defaults
    (so that later checks can stop at an identity test)."""
    prefix = options.prefix.rstrip("/") + "/"
    if any(not isinstance(name, str) or name.startswith(prefix) for name in annotations):
        return _shared_defaults(parse_annotations(key, annotations, options))
    found = _NO_ANNOTATIONS.get(options)
    if found is None:
        found = _NO_ANNOTATIONS[options] = _shared_defaults(parse_annotations(key, {}, options))
    return found


def _shared_defaults(parsed: IngressAnnotations) -> IngressAnnotations:
    if parsed.settings is not DEFAULT_SETTINGS and parsed.settings == DEFAULT_SETTINGS:
        parsed = dataclasses.replace(parsed, settings=DEFAULT_SETTINGS)
    if parsed.policy is not DEFAULT_POLICY and parsed.policy == DEFAULT_POLICY:
        parsed = dataclasses.replace(parsed, policy=DEFAULT_POLICY)
    return parsed


def plan_ingress(key: ObjectKey, raw: Any, options: AnnotationOptions) -> IngressPlan:
    """Check everything in Ingress ``key`` that depends on that object alone."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    raw_annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(raw_annotations, dict):
        raw_annotations = {}
    plan_age = age(key, raw)
    size = sum(len(k) + len(v) for k, v in raw_annotations.items() if isinstance(v, str))
    if size > MAX_ANNOTATIONS_BYTES:
        # The API server would have refused the object; a file or a trace may still hold it.
        over = f"{size} bytes in all, over the API server's limit of {MAX_ANNOTATIONS_BYTES}"
        annotations = _annotations(key, {}, options)
        return IngressPlan(raw, key, plan_age, annotations, ("metadata.annotations", over))
    annotations = _annotations(key, raw_annotations, options)

    namespace, _, name = key.partition("/")
    namespace = sys.intern(namespace)
    for field_name, reason in (
        ("metadata.namespace", validate_namespace(namespace)),
        ("metadata.name", validate_object_name(name)),
    ):
        if reason is not None:
            return IngressPlan(raw, key, plan_age, annotations, (field_name, reason))
    try:
        spec = plain_spec(raw)
    except Irregular:
        # Something unusual: pydantic says what is wrong, or reads what is merely unusual.
        parsed = kube.parse(kube.Ingress, raw)
        if isinstance(parsed, kube.ParseError):
            return IngressPlan(raw, key, plan_age, annotations, (parsed.field, parsed.reason))
        spec = parsed.spec.model_dump(by_alias=True) if parsed.spec is not None else {}
    notes = tuple(
        (r.field, f"{r.status.value}: {r.detail}" if r.detail else r.status.value)
        for r in annotations.problems
    )

    rules: list[RulePlan] = []
    hosts: list[str] = []  # valid rule hosts, in order (TLS applies to these only)
    servers: dict[str, None] = {}
    services: dict[ObjectKey, None] = {}
    for i, rule in enumerate(spec.get("rules") or ()):
        host = rule.get("host")
        host_issue: Issue | None = None
        if host:
            reason = validate_host(host)
            if reason is not None:
                host_issue = (f"spec.rules[{i}].host", reason)
            elif host not in hosts:
                hosts.append(host)
        paths: list[PathPlan] = []
        if host_issue is None:
            servers[host or CATCH_ALL] = None
            http = rule.get("http")
            for j, path in enumerate((http.get("paths") if http else None) or ()):
                raw_path = path.get("path") or "/"
                raw_type = path.get("pathType") or "ImplementationSpecific"
                location, location_issue = _location(
                    raw_path, raw_type, i, j, regex=annotations.use_regex
                )
                ref, ref_issue = backend_ref(namespace, path["backend"], (i, j))
                if ref is not None:
                    services[ref.service_key] = None
                paths.append(
                    PathPlan(j, raw_path, raw_type, location, location_issue, ref, ref_issue)
                )
        rules.append(RulePlan(i, host or None, host_issue, tuple(paths)))

    tls: list[TlsPlan] = []
    secrets: dict[ObjectKey, None] = {}
    for i, entry in enumerate(spec.get("tls") or ()):
        at = f"spec.tls[{i}]"
        issues: list[Issue] = []
        targets: list[tuple[str, str]] = []
        for k, host in enumerate(entry.get("hosts") or ()):
            reason = validate_host(host)
            if reason is not None:
                issues.append((f"{at}.hosts[{k}]", reason))
            elif host in hosts:
                targets.append((f"{at}.hosts[{k}]", host))
        secret_name = entry.get("secretName")
        secret_issue: Issue | None = None
        if secret_name:
            reason = validate_object_name(secret_name)
            if reason is not None:
                secret_issue = (f"{at}.secretName", reason)
            else:
                secrets[ObjectKey(f"{namespace}/{secret_name}")] = None
        tls.append(TlsPlan(i, tuple(issues), tuple(targets), secret_name, secret_issue))

    default_ref: BackendRef | None = None
    default_issue: Issue | None = None
    default_backend = spec.get("defaultBackend")
    if default_backend is not None:
        default_ref, default_issue = backend_ref(namespace, default_backend, "spec.defaultBackend")
        if default_ref is not None:
            services[default_ref.service_key] = None
        servers[CATCH_ALL] = None
    if annotations.default_backend is not None:
        services[ObjectKey(f"{namespace}/{annotations.default_backend}")] = None
    auth = annotations.auth_request
    if auth is not None and auth.namespace in (None, namespace):
        secrets[ObjectKey(f"{namespace}/{auth.name}")] = None
    ssl_ref = annotations.proxy_ssl_secret
    if ssl_ref is not None and ssl_ref[0] in (None, namespace):
        secrets[ObjectKey(f"{namespace}/{ssl_ref[1]}")] = None
    headers_ref = annotations.auth_proxy_set_headers
    config_maps: tuple[ObjectKey, ...] = ()
    if headers_ref is not None and headers_ref[0] in (None, namespace):
        config_maps = (ObjectKey(f"{namespace}/{headers_ref[1]}"),)
    client_auth = annotations.client_auth
    if client_auth is not None and client_auth.namespace in (None, namespace):
        secrets[ObjectKey(f"{namespace}/{client_auth.name}")] = None
    return IngressPlan(
        raw,
        key,
        plan_age,
        annotations,
        None,
        notes,
        tuple(rules),
        tuple(tls),
        default_backend is not None,
        default_ref,
        default_issue,
        tuple(servers),
        tuple(services),
        tuple(secrets),
        config_maps,
    )


def _location(
    raw_path: str, path_type: str, rule: int, index: int, *, regex: bool
) -> tuple[tuple[str, PathType] | None, Issue | None]:
    """``(path, PathType)`` of an Ingress path, or why it is refused."""
    if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
        why = f"must be Exact, Prefix or ImplementationSpecific, not {path_type!r}"
        return None, (f"spec.rules[{rule}].http.paths[{index}].pathType", why)
    if regex and path_type != "Exact":
        try:
            return (regex_path(raw_path), PathType.REGEX), None
        except InvalidValue as exc:
            at = f"spec.rules[{rule}].http.paths[{index}].path"
            return None, (at, f"as a regular expression: {exc}")
    reason = validate_path(raw_path)
    if reason is not None:
        return None, (f"spec.rules[{rule}].http.paths[{index}].path", reason)
    if path_type == "Exact":
        return (raw_path, PathType.EXACT), None
    if raw_path == "/":
        return ROOT, None
    return (raw_path.rstrip("/") or "/", PathType.PREFIX), None


#: Where a backend reference is: its field, or ``(i, j)`` for ``spec.rules[i].http.paths[j]
#: .backend`` (written out only for a problem).
At = str | tuple[int, int]


def at_field(at: At) -> str:
    if isinstance(at, str):
        return at
    return f"spec.rules[{at[0]}].http.paths[{at[1]}].backend"


def backend_ref(
    namespace: str, backend: dict[str, Any], where: At
) -> tuple[BackendRef | None, Issue | None]:
    """A path's or default backend's Service reference (``IngressBackend`` as JSON, checked
    for types) checked, or why it is refused."""
    service = backend.get("service")
    if backend.get("resource") is None and service is not None:
        service_name = service["name"]
        port = service.get("port") or {}
        number, port_name = port.get("number"), port.get("name")
        if (
            type(number) is int
            and port_name is None
            and validate_service_name(service_name) is None
            and validate_port_number(number) is None
        ):
            return BackendRef(namespace, service_name, number, None), None
    at = at_field(where)
    if backend.get("resource") is not None:
        return None, (f"{at}.resource", "resource backends are not supported")
    service = backend.get("service")
    if service is None:
        return None, (f"{at}.service", "must be set")
    service_name = service["name"]
    reason = validate_service_name(service_name)
    if reason is not None:
        return None, (f"{at}.service.name", reason)
    port = service.get("port") or {}
    number, port_name = port.get("number"), port.get("name")
    if (number is None) == (port_name is None):
        return None, (f"{at}.service.port", "must set one of number and name")
    if number is not None:
        port_field, reason = "number", validate_port_number(number)
    else:
        port_field, reason = "name", validate_port_name(port_name or "")
    if reason is not None:
        return None, (f"{at}.service.port.{port_field}", reason)
    return BackendRef(namespace, service_name, number, port_name), None
