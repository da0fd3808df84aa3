"""Building: a Store snapshot in, the model of what nginx must do out.  Pure and deterministic.

    Snapshot --build_configuration(snapshot, options)--> BuildResult
        1. classes     IngressClasses -> which Ingresses are ours (others go to ``ignored``)
        2. order       ours sorted by creationTimestamp (missing last), then namespace/name:
                       the oldest Ingress wins every host + path + pathType conflict
        3. rules       each rule -> a server (by host, or the catch-all ``_``), each path ->
                       a Location; its backend resolved Service -> port -> EndpointSlices
        3a. annotations ``ingressd.annotations.parse_annotations()`` -> LocationSettings on
                       every Location of the Ingress (Secrets and Services they name resolved
                       here), server aliases / snippet, the BackendPolicy of its backends
        4. tls         ``spec.tls`` hosts that this Ingress has rules for -> certificate from
                       the Secret (parsed once per build) + ssl redirect
        5. defaults    ``spec.defaultBackend`` -> ``/`` of the catch-all (oldest wins) and of
                       the Ingress's own hosts, where no rule defines Prefix ``/``
        5a. canaries   Ingresses with ``canary: "true"``, after every other: each path's backend
                       becomes an alternative (``alternativeBackends``) of the backend of the
                       same host + path, with its ``trafficShapingPolicy``
        6. finish      every server without Prefix ``/`` answers it with 404; servers sorted
                       (catch-all first), locations by (path, pathType), backends by name

Nothing is raised and nothing is logged: whatever is wrong in an object becomes a ``Problem``
naming the object and the field, and only the offending rule, path or TLS entry is skipped (the
whole Ingress only when its structure is broken).  An invalid annotation is left out (its default
applies), except the security ones (access lists, authentication, backend TLS): their Ingress's
locations then answer 503 (``LocationSettings.denied``) rather than serve unprotected.  Every
value copied into the model has passed ``ingressd.validation`` or ``ingressd.annotations``.
Results depend only on the snapshot's content, never on dict order.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ingressd import kube
from ingressd.annotations import (
    DEFAULT_PREFIX,
    AnnotationOptions,
    IngressAnnotations,
    parse_annotations,
)
from ingressd.annotations.secrets import htpasswd_file, proxy_ssl_files
from ingressd.annotations.values import InvalidValue, regex_path
from ingressd.model import (
    CATCH_ALL,
    DEFAULT_POLICY,
    DEFAULT_SETTINGS,
    Backend,
    BackendName,
    BackendPolicy,
    BasicAuth,
    Certificate,
    Configuration,
    Endpoint,
    Location,
    LocationSettings,
    ObjectKey,
    PathType,
    Problem,
    SecretFile,
    Server,
)
from ingressd.store.snapshot import KubeObject, Snapshot
from ingressd.validation import (
    validate_host,
    validate_namespace,
    validate_object_name,
    validate_path,
    validate_port_name,
    validate_port_number,
    validate_service_name,
)

__all__ = ["BuildOptions", "BuildResult", "build_configuration", "parse_tls_secret"]

LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
SECRET_TYPE_TLS = "kubernetes.io/tls"
SECRET_TYPE_OPAQUE = "Opaque"
_NO_INGRESS = ObjectKey("")
_ROOT = ("/", PathType.PREFIX)


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """What makes an Ingress ours, and defaults applied while building."""

    #: ``spec.ingressClassName`` / legacy annotation value that selects this controller.
    ingress_class: str = "ingressd"
    #: ``IngressClass.spec.controller`` of the classes that select this controller.
    controller: str = "ingressd.io/ingress-controller"
    #: ssl redirect for hosts with a usable certificate (ingress-nginx ``ssl-redirect``).
    default_ssl_redirect: bool = True
    #: Prefix of the ingress-nginx annotations read (``--annotations-prefix``).
    annotations_prefix: str = DEFAULT_PREFIX
    #: Accept ``configuration-snippet`` / ``server-snippet`` (``--allow-snippet-annotations``).
    allow_snippet_annotations: bool = False


@dataclass(frozen=True, slots=True)
class BuildResult:
    configuration: Configuration
    #: Everything refused, in the order found (oldest Ingress first).
    problems: tuple[Problem, ...]
    #: Ingresses of other classes, sorted; not problems.
    ignored: tuple[ObjectKey, ...]


def build_configuration(snapshot: Snapshot, options: BuildOptions) -> BuildResult:
    """Turn the snapshot's objects into the ``Configuration`` nginx must serve."""
    return _Build(snapshot, options).run()


# --- the build, one call's worth of state ----------------------------------------------------


@dataclass(slots=True)
class _ServerDraft:
    hostname: str
    locations: dict[tuple[str, PathType], Location] = field(default_factory=dict)
    certificate: Certificate | None = None
    certificate_from: ObjectKey = _NO_INGRESS
    tls_failed: bool = False
    tls_default_certificate: bool = False
    #: ``server-alias`` names with the Ingress that asked for each.
    aliases: dict[str, ObjectKey] = field(default_factory=dict)
    snippet: str | None = None
    snippet_from: ObjectKey = _NO_INGRESS
    app_root: str | None = None


@dataclass(frozen=True, slots=True)
class _Unresolved:
    """A backend that cannot be resolved: the sub-field of ``...backend`` to blame and why."""

    subfield: str
    reason: str


class _SliceView(NamedTuple):
    """The part of one EndpointSlice the builder needs: ports by name, ready addresses."""

    ports: dict[str, int]
    addresses: tuple[str, ...]


class _Build:
    def __init__(self, snapshot: Snapshot, options: BuildOptions) -> None:
        self.snapshot = snapshot
        self.options = options
        self.problems: list[Problem] = []
        self.servers: dict[str, _ServerDraft] = {CATCH_ALL: _ServerDraft(CATCH_ALL)}
        self.backends: dict[BackendName, Backend] = {}
        self.resolved: dict[tuple[str, str, int | None, str | None], BackendName | _Unresolved] = {}
        self.services: dict[str, kube.ServiceView | kube.ParseError | None] = {}
        self.slices: dict[str, tuple[_SliceView, ...]] = {}
        self.endpoints: dict[tuple[str, str], tuple[Endpoint, ...]] = {}
        self.certificates: dict[str, Certificate | str] = {}
        #: (ingress, namespace, defaultBackend, hosts with rules, settings) in Ingress order.
        self.defaults: list[
            tuple[ObjectKey, str, kube.IngressBackend, list[str], IngressAnnotations]
        ] = []
        self.annotation_options = AnnotationOptions(
            prefix=options.annotations_prefix,
            allow_snippets=options.allow_snippet_annotations,
        )
        #: Balancing policy of each backend, with the (oldest) Ingress that set it.
        self.policies: dict[BackendName, tuple[BackendPolicy, ObjectKey]] = {}
        #: Canary backends, and the canaries of each main backend in Ingress order.
        self.canaries: dict[BackendName, Backend] = {}
        self.alternatives: dict[BackendName, list[BackendName]] = {}
        self.alias_owners: dict[str, str] = {}
        #: Resolved LocationSettings of each (non-canary) Ingress.
        self.ingress_settings: dict[ObjectKey, LocationSettings] = {}
        self.secret_files: dict[
            tuple[str, str], SecretFile | tuple[SecretFile | None, SecretFile | None] | str
        ] = {}

    def problem(self, kind: str, key: str, field: str, reason: str) -> None:
        self.problems.append(Problem(kind=kind, key=ObjectKey(key), field=field, reason=reason))

    def run(self) -> BuildResult:
        our_classes, have_default = self.classes()
        ours: list[tuple[tuple[int, float, str], ObjectKey, KubeObject]] = []
        ignored: list[ObjectKey] = []
        for key, raw in self.snapshot.ingresses.items():
            if self.is_ours(raw, our_classes, have_default):
                ours.append((_age(key, raw), key, raw))
            else:
                ignored.append(key)
        ours.sort(key=lambda item: item[0])
        parsed = [(key, raw, self.annotations(key, raw)) for _, key, raw in ours]
        for key, raw, anns in parsed:
            if anns.canary is None:
                self.ingress(key, raw, anns)
        self.apply_default_backends()
        for key, raw, anns in parsed:
            if anns.canary is not None:
                self.canary(key, raw, anns)
        return BuildResult(self.finish(), tuple(self.problems), tuple(sorted(ignored)))

    def annotations(self, key: ObjectKey, raw: KubeObject) -> IngressAnnotations:
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        if not isinstance(annotations, dict):
            annotations = {}
        return parse_annotations(key, annotations, self.annotation_options)

    # 1. classes ---------------------------------------------------------------------------

    def classes(self) -> tuple[set[str], bool]:
        """Names of the IngressClasses of our controller; whether one of them is the default."""
        ours: set[str] = set()
        have_default = False
        for name in sorted(self.snapshot.ingress_classes):
            parsed = kube.parse(kube.IngressClass, self.snapshot.ingress_classes[name])
            if isinstance(parsed, kube.ParseError):
                self.problem("IngressClass", name, parsed.field, parsed.reason)
                continue
            if parsed.spec is None or parsed.spec.controller != self.options.controller:
                continue
            ours.add(name)
            annotations = (parsed.metadata.annotations if parsed.metadata else None) or {}
            have_default = have_default or annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
        return ours, have_default

    def is_ours(self, raw: object, our_classes: set[str], have_default: bool) -> bool:
        """Class by ``spec.ingressClassName``, else the legacy annotation, else the default."""
        spec = raw.get("spec") if isinstance(raw, dict) else None
        class_name = spec.get("ingressClassName") if isinstance(spec, dict) else None
        if class_name is not None and class_name != "":
            if not isinstance(class_name, str):
                return False
            return class_name == self.options.ingress_class or class_name in our_classes
        meta = raw.get("metadata") if isinstance(raw, dict) else None
        annotations = meta.get("annotations") if isinstance(meta, dict) else None
        legacy = annotations.get(LEGACY_CLASS_ANNOTATION) if isinstance(annotations, dict) else None
        if legacy is not None and legacy != "":
            return bool(legacy == self.options.ingress_class)
        return have_default

    # 3./4. one Ingress ----------------------------------------------------------------------

    def parse_ingress(
        self, key: ObjectKey, raw: KubeObject, annotations: IngressAnnotations
    ) -> kube.IngressSpec | None:
        """The spec of a well-formed Ingress (its annotation problems reported), else None."""
        namespace, _, name = key.partition("/")
        for field_name, reason in (
            ("metadata.namespace", validate_namespace(namespace)),
            ("metadata.name", validate_object_name(name)),
        ):
            if reason is not None:
                self.problem("Ingress", key, field_name, reason)
                return None
        parsed = kube.parse(kube.Ingress, raw)
        if isinstance(parsed, kube.ParseError):
            self.problem("Ingress", key, parsed.field, parsed.reason)
            return None
        for report in annotations.problems:
            detail = f": {report.detail}" if report.detail else ""
            self.problem("Ingress", key, report.field, f"{report.status.value}{detail}")
        return parsed.spec or kube.IngressSpec.model_validate({})

    def ingress(self, key: ObjectKey, raw: KubeObject, annotations: IngressAnnotations) -> None:
        namespace = key.partition("/")[0]
        spec = self.parse_ingress(key, raw, annotations)
        if spec is None:
            return
        settings = self.ingress_settings[key] = self.settings(key, namespace, annotations)
        hosts: list[str] = []
        for i, rule in enumerate(spec.rules or ()):
            host = rule.host or CATCH_ALL
            if rule.host:
                reason = validate_host(rule.host)
                if reason is not None:
                    self.problem("Ingress", key, f"spec.rules[{i}].host", reason)
                    continue
                if rule.host not in self.servers:
                    self.servers[host] = _ServerDraft(host)
                if host not in hosts:
                    hosts.append(host)
            paths = (rule.http.paths if rule.http else None) or ()
            for j, path in enumerate(paths):
                at = f"spec.rules[{i}].http.paths[{j}]"
                self.path(key, namespace, host, path, at, annotations, settings)
        for i, tls in enumerate(spec.tls or ()):
            self.tls(key, namespace, tls, f"spec.tls[{i}]", hosts)
        if spec.default_backend is not None:
            self.defaults.append((key, namespace, spec.default_backend, hosts, annotations))
        self.server_annotations(key, hosts, annotations)

    def location_key(
        self, key: ObjectKey, path: kube.HTTPIngressPath, at: str, *, regex: bool
    ) -> tuple[str, PathType] | None:
        """``(path, PathType)`` of an Ingress path (a Problem and ``None`` when invalid)."""
        raw_path = path.path or "/"
        path_type = path.path_type or "ImplementationSpecific"
        reason: str | None
        if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
            reason = f"must be Exact, Prefix or ImplementationSpecific, not {path_type!r}"
            self.problem("Ingress", key, f"{at}.pathType", reason)
            return None
        if regex and path_type != "Exact":
            try:
                return (regex_path(raw_path), PathType.REGEX)
            except InvalidValue as exc:
                self.problem("Ingress", key, f"{at}.path", f"as a regular expression: {exc}")
                return None
        reason = validate_path(raw_path)
        if reason is not None:
            self.problem("Ingress", key, f"{at}.path", reason)
            return None
        if path_type == "Exact":
            return (raw_path, PathType.EXACT)
        return (raw_path.rstrip("/") or "/", PathType.PREFIX)

    def path(
        self,
        key: ObjectKey,
        namespace: str,
        host: str,
        path: kube.HTTPIngressPath,
        at: str,
        annotations: IngressAnnotations,
        settings: LocationSettings,
    ) -> None:
        location_key = self.location_key(key, path, at, regex=annotations.use_regex)
        if location_key is None:
            return
        server = self.servers[host]
        winner = server.locations.get(location_key)
        if winner is not None:
            where = "the catch-all server" if host == CATCH_ALL else f"host {host}"
            reason = (
                f"{location_key[0]} ({location_key[1].value}) of {where} is already defined"
                f" by Ingress {winner.ingress}"
            )
            self.problem("Ingress", key, f"{at}.path", reason)
            return
        backend = self.backend(key, namespace, path.backend, f"{at}.backend")
        if backend is not None:
            server.locations[location_key] = Location(
                *location_key, backend=backend, ingress=key, settings=settings
            )
            self.set_policy(backend, annotations, location_key, key)

    # 3a. annotations ---------------------------------------------------------------------

    def annotation_field(self, name: str) -> str:
        return f"metadata.annotations[{self.options.annotations_prefix.rstrip('/')}/{name}]"

    def settings(
        self, key: ObjectKey, namespace: str, annotations: IngressAnnotations
    ) -> LocationSettings:
        """The Ingress's LocationSettings with the Secrets and Services they name resolved.

        A missing or unusable Secret denies the locations (503), as an invalid security
        annotation does; a missing ``default-backend`` Service is only left out.
        """
        s = annotations.settings
        if s.denied is not None:
            return s
        auth = annotations.auth_request
        if auth is not None:
            found = self.secret_file(namespace, auth.namespace, auth.name, auth.secret_type)
            if isinstance(found, str):
                self.problem("Ingress", key, self.annotation_field("auth-secret"), found)
                return LocationSettings(denied=f"auth-secret: {found}")
            assert isinstance(found, SecretFile)
            s = dataclasses.replace(s, auth=BasicAuth(auth.realm, found))
        ssl_ref = annotations.proxy_ssl_secret
        if ssl_ref is not None and s.proxy_ssl is not None:
            files = self.secret_file(namespace, ssl_ref[0], ssl_ref[1], "proxy-ssl")
            if isinstance(files, str):
                self.problem("Ingress", key, self.annotation_field("proxy-ssl-secret"), files)
                return LocationSettings(denied=f"proxy-ssl-secret: {files}")
            assert isinstance(files, tuple)
            ca, client = files
            s = dataclasses.replace(
                s, proxy_ssl=dataclasses.replace(s.proxy_ssl, ca=ca, client_certificate=client)
            )
        if s.proxy_ssl is not None and s.proxy_ssl.verify and s.proxy_ssl.ca is None:
            reason = "proxy-ssl-verify needs a proxy-ssl-secret holding ca.crt"
            self.problem("Ingress", key, self.annotation_field("proxy-ssl-verify"), reason)
            return LocationSettings(denied=reason)
        if annotations.default_backend is not None:
            name = self.annotation_backend(key, namespace, annotations.default_backend)
            if name is not None:
                s = dataclasses.replace(s, default_backend=name)
            elif s.custom_http_errors:
                s = dataclasses.replace(s, custom_http_errors=())
        return s

    def secret_file(
        self, namespace: str, ref_namespace: str | None, name: str, kind: str
    ) -> SecretFile | tuple[SecretFile | None, SecretFile | None] | str:
        """The file(s) made from the Secret an annotation names, or why there are none.

        ``kind``: ``auth-file`` / ``auth-map`` (htpasswd) or ``proxy-ssl`` (CA, client cert).
        """
        if ref_namespace is not None and ref_namespace != namespace:
            return (
                f"secret {ref_namespace}/{name} is in another namespace; ingressd reads only"
                f" Secrets of the Ingress's namespace ({namespace})"
            )
        secret_key = f"{namespace}/{name}"
        cache_key = (secret_key, kind)
        if cache_key in self.secret_files:
            return self.secret_files[cache_key]
        raw = self.snapshot.secrets.get(ObjectKey(secret_key))
        result: SecretFile | tuple[SecretFile | None, SecretFile | None] | str
        if raw is None:
            result = f"secret {secret_key} not found"
        else:
            found = (
                proxy_ssl_files(ObjectKey(secret_key), raw)
                if kind == "proxy-ssl"
                else htpasswd_file(ObjectKey(secret_key), raw, kind)
            )
            if isinstance(found, tuple) and isinstance(found[0], str):
                field_name, reason = str(found[0]), str(found[1])
                self.problem("Secret", secret_key, field_name, reason)
                result = f"secret {secret_key} is unusable: {field_name}: {reason}"
            else:
                result = found
        self.secret_files[cache_key] = result
        return result

    def annotation_backend(
        self, key: ObjectKey, namespace: str, service: str
    ) -> BackendName | None:
        """``default-backend``: the first port of a Service of the Ingress's namespace."""
        at = self.annotation_field("default-backend")
        found = self.service(f"{namespace}/{service}")
        if found is None or isinstance(found, kube.ParseError) or not found.ports:
            why = "not found" if found is None else "unusable (no port)"
            self.problem("Ingress", key, at, f"service {namespace}/{service} {why}")
            return None
        number = found.ports[0][1]
        port = kube.ServiceBackendPort(number=number)
        backend = kube.IngressBackend(
            service=kube.IngressServiceBackend(name=service, port=port)
        )
        return self.backend(key, namespace, backend, at)

    def set_policy(
        self,
        backend: BackendName,
        annotations: IngressAnnotations,
        location_key: tuple[str, PathType],
        key: ObjectKey,
    ) -> None:
        """Give ``backend`` the Ingress's balancing policy; the oldest Ingress that sets one
        wins (ingress-nginx keeps the first too), a different one later is a Problem."""
        policy = annotations.policy
        if policy == DEFAULT_POLICY:
            return
        if policy.affinity is not None and policy.affinity.path is None:
            path = "/" if location_key[1] is PathType.REGEX else location_key[0]
            policy = dataclasses.replace(
                policy, affinity=dataclasses.replace(policy.affinity, path=path)
            )
        taken = self.policies.get(backend)
        if taken is None:
            self.policies[backend] = (policy, key)
        elif taken[1] != key and taken[0] != policy:
            reason = (
                f"backend {backend} already uses the load-balance / upstream-hash-by / affinity"
                f" of Ingress {taken[1]}; these are ignored for it"
            )
            self.problem("Ingress", key, "metadata.annotations", reason)

    def server_annotations(
        self, key: ObjectKey, hosts: list[str], annotations: IngressAnnotations
    ) -> None:
        """``server-alias``, ``server-snippet`` and ``app-root`` go to every host of the
        Ingress (the oldest Ingress of a host wins its snippet and app-root)."""
        for host in hosts:
            draft = self.servers[host]
            for alias in annotations.aliases:
                draft.aliases.setdefault(alias, key)
            if draft.app_root is None:
                draft.app_root = annotations.app_root
            if annotations.server_snippet is None:
                continue
            if draft.snippet is None:
                draft.snippet, draft.snippet_from = annotations.server_snippet, key
            elif draft.snippet_from != key:
                reason = (
                    f"host {host} already has the server-snippet of Ingress {draft.snippet_from}"
                    " (one per host)"
                )
                self.problem("Ingress", key, self.annotation_field("server-snippet"), reason)

    # 5a. canaries ------------------------------------------------------------------------

    def canary(self, key: ObjectKey, raw: KubeObject, annotations: IngressAnnotations) -> None:
        """Each path of a canary Ingress: its backend becomes an alternative of the backend
        that serves the same host and path (a main Ingress must define it)."""
        namespace, _, name = key.partition("/")
        spec = self.parse_ingress(key, raw, annotations)
        if spec is None or annotations.canary is None:
            return
        for i, rule in enumerate(spec.rules or ()):
            host = rule.host or CATCH_ALL
            if rule.host:
                reason = validate_host(rule.host)
                if reason is not None:
                    self.problem("Ingress", key, f"spec.rules[{i}].host", reason)
                    continue
            for j, path in enumerate((rule.http.paths if rule.http else None) or ()):
                at = f"spec.rules[{i}].http.paths[{j}]"
                main = self.main_location(key, host, path, at)
                if main is None:
                    continue
                base = self.backend(key, namespace, path.backend, f"{at}.backend")
                if base is None:
                    continue
                if base == main.backend:
                    reason = f"the canary routes to {base}, the backend of its main Ingress"
                    self.problem("Ingress", key, f"{at}.backend", reason)
                    continue
                canary_name = self.canary_backend(key, name, base, annotations, main)
                if canary_name is None:
                    continue
                alternatives = self.alternatives.setdefault(BackendName(main.backend or ""), [])
                if canary_name not in alternatives:
                    alternatives.append(canary_name)

    def main_location(
        self, key: ObjectKey, host: str, path: kube.HTTPIngressPath, at: str
    ) -> Location | None:
        server = self.servers.get(host)
        raw_path = path.path or "/"
        candidates: list[tuple[str, PathType]] = []
        if (path.path_type or "ImplementationSpecific") == "Exact":
            candidates.append((raw_path, PathType.EXACT))
        else:
            candidates.append((raw_path, PathType.REGEX))
            candidates.append((raw_path.rstrip("/") or "/", PathType.PREFIX))
        for candidate in candidates:
            location = server.locations.get(candidate) if server is not None else None
            if location is not None and location.backend is not None and location.ingress:
                return location
        where = "the catch-all server" if host == CATCH_ALL else f"host {host}"
        reason = f"no main Ingress serves {raw_path} on {where}; the canary is ignored"
        self.problem("Ingress", key, f"{at}.path", reason)
        return None

    def canary_backend(
        self,
        key: ObjectKey,
        ingress_name: str,
        base: BackendName,
        annotations: IngressAnnotations,
        main: Location,
    ) -> BackendName | None:
        """The canary copy of ``base``, named for the canary Ingress, with its traffic policy."""
        name = BackendName(f"canary-{ingress_name}-{base}")
        if name in self.canaries:
            return name
        if name in self.backends:
            reason = f"backend name {name} is already used by a Service"
            self.problem("Ingress", key, "metadata.name", reason)
            return None
        source = self.backends[base]
        policy = annotations.policy
        if policy.affinity is not None and policy.affinity.path is None:
            path = "/" if main.path_type is PathType.REGEX else main.path
            policy = dataclasses.replace(
                policy, affinity=dataclasses.replace(policy.affinity, path=path)
            )
        self.canaries[name] = dataclasses.replace(
            source,
            name=name,
            policy=dataclasses.replace(policy, traffic_shaping=annotations.canary),
        )
        return name

    def tls(
        self, key: ObjectKey, namespace: str, tls: kube.IngressTLS, at: str, hosts: list[str]
    ) -> None:
        targets: list[tuple[str, str]] = []
        for k, host in enumerate(tls.hosts or ()):
            reason = validate_host(host)
            if reason is not None:
                self.problem("Ingress", key, f"{at}.hosts[{k}]", reason)
            elif host in hosts:
                targets.append((f"{at}.hosts[{k}]", host))
        certificate: Certificate | None = None
        if tls.secret_name:
            reason = validate_object_name(tls.secret_name)
            if reason is not None:
                self.problem("Ingress", key, f"{at}.secretName", reason)
                return
            found = self.certificate(f"{namespace}/{tls.secret_name}")
            if isinstance(found, str):
                self.problem("Ingress", key, f"{at}.secretName", found)
            else:
                certificate = found
        for host_field, host in targets:
            server = self.servers[host]
            if not tls.secret_name:
                server.tls_default_certificate = True
            elif certificate is None:
                server.tls_failed = True
            elif server.certificate is None:
                server.certificate, server.certificate_from = certificate, key
            elif server.certificate.secret != certificate.secret:
                reason = (
                    f"host {host} already uses the certificate of secret"
                    f" {server.certificate.secret} from Ingress {server.certificate_from}"
                )
                self.problem("Ingress", key, host_field, reason)

    # backends -------------------------------------------------------------------------------

    def backend(
        self, key: ObjectKey, namespace: str, backend: kube.IngressBackend, at: str
    ) -> BackendName | None:
        """The name of the Backend a path or default backend routes to; ``None`` + a Problem."""
        if backend.resource is not None:
            self.problem("Ingress", key, f"{at}.resource", "resource backends are not supported")
            return None
        service = backend.service
        if service is None:
            self.problem("Ingress", key, f"{at}.service", "must be set")
            return None
        reason = validate_service_name(service.name)
        if reason is not None:
            self.problem("Ingress", key, f"{at}.service.name", reason)
            return None
        port = service.port or kube.ServiceBackendPort()
        if (port.number is None) == (port.name is None):
            self.problem("Ingress", key, f"{at}.service.port", "must set one of number and name")
            return None
        if port.number is not None:
            port_field, reason = "number", validate_port_number(port.number)
        else:
            port_field, reason = "name", validate_port_name(port.name or "")
        if reason is not None:
            self.problem("Ingress", key, f"{at}.service.port.{port_field}", reason)
            return None
        cache_key = (namespace, service.name, port.number, port.name)
        result = self.resolved.get(cache_key)
        if result is None:
            result = self.resolved[cache_key] = self.resolve(namespace, service.name, port)
        if isinstance(result, _Unresolved):
            self.problem("Ingress", key, f"{at}.service.{result.subfield}", result.reason)
            return None
        return result

    def resolve(
        self, namespace: str, name: str, port: kube.ServiceBackendPort
    ) -> BackendName | _Unresolved:
        service_key = f"{namespace}/{name}"
        service = self.service(service_key)
        if service is None:
            return _Unresolved("name", f"service {service_key} not found")
        if isinstance(service, kube.ParseError):
            return _Unresolved(
                "name", f"service {service_key} is malformed: {service.field}: {service.reason}"
            )
        if service.type == "ExternalName":
            reason = f"service {service_key} is of type ExternalName, which is not supported"
            return _Unresolved("name", reason)
        if port.number is not None:
            written = str(port.number)
            match = next((p for p in service.ports if p[1] == port.number), None)
            missing = _Unresolved("port.number", f"service {service_key} has no port {written}")
        else:
            written = port.name or ""
            match = next((p for p in service.ports if p[0] == port.name), None)
            missing = _Unresolved("port.name", f"service {service_key} has no port named {written}")
        if match is None:
            return missing
        backend_name = BackendName(f"{namespace}-{name}-{written}")
        taken = self.backends.get(backend_name)
        if taken is not None:
            return _Unresolved(
                "name",
                f"backend name {backend_name} is already used by service"
                f" {taken.namespace}/{taken.service} port {taken.service_port}",
            )
        endpoints = self.service_endpoints(service_key, match[0])
        self.backends[backend_name] = Backend(backend_name, namespace, name, written, endpoints)
        return backend_name

    def service(self, service_key: str) -> kube.ServiceView | kube.ParseError | None:
        if service_key not in self.services:
            raw = self.snapshot.services.get(ObjectKey(service_key))
            self.services[service_key] = None if raw is None else kube.read_service(raw)
        return self.services[service_key]

    def service_endpoints(self, service_key: str, port_name: str) -> tuple[Endpoint, ...]:
        """Ready endpoints of every slice of the Service, on the slice port named like ours."""
        cache_key = (service_key, port_name)
        if cache_key not in self.endpoints:
            found: set[tuple[str, int]] = set()
            for view in self.slice_views(service_key):
                port = view.ports.get(port_name)
                if port is not None:
                    found.update((address, port) for address in view.addresses)
            self.endpoints[cache_key] = tuple(Endpoint(a, p) for a, p in sorted(found))
        return self.endpoints[cache_key]

    def slice_views(self, service_key: str) -> tuple[_SliceView, ...]:
        views = self.slices.get(service_key)
        if views is None:
            raws = self.snapshot.endpoint_slices.get(ObjectKey(service_key), ())
            found = (self.slice_view(service_key, i, raw) for i, raw in enumerate(raws))
            views = self.slices[service_key] = tuple(v for v in found if v is not None)
        return views

    def slice_view(self, service_key: str, index: int, raw: KubeObject) -> _SliceView | None:
        """Ports by name and ready addresses of one slice; FQDN slices give nothing."""
        parsed = kube.read_endpoint_slice(raw)
        namespace = service_key.partition("/")[0]
        if isinstance(parsed, kube.ParseError):
            key = f"{namespace}/{_name_of(raw, index)}"
            self.problem("EndpointSlice", key, parsed.field, parsed.reason)
            return None
        is_address = _ADDRESS_CHECKS.get(parsed.address_type)
        if is_address is None:
            return None
        ports: dict[str, int] = {}
        for name, port in parsed.ports:
            if 0 < port < 65536:
                ports.setdefault(name, port)
        addresses: list[str] = []
        for i, (candidates, ready, _, terminating) in enumerate(parsed.endpoints):
            if ready is False or terminating is True:
                continue
            for j, address in enumerate(candidates):
                if is_address(address):
                    addresses.append(address)
                else:
                    key = f"{namespace}/{parsed.name or f'[{index}]'}"
                    at = f"endpoints[{i}].addresses[{j}]"
                    reason = f"{address!r} is not an {parsed.address_type} address"
                    self.problem("EndpointSlice", key, at, reason)
        return _SliceView(ports, tuple(addresses))

    def certificate(self, secret_key: str) -> Certificate | str:
        """The Secret's certificate, or why it is unusable (a Secret Problem is added once)."""
        if secret_key not in self.certificates:
            raw = self.snapshot.secrets.get(ObjectKey(secret_key))
            if raw is None:
                self.certificates[secret_key] = f"secret {secret_key} not found"
            else:
                result = parse_tls_secret(ObjectKey(secret_key), raw)
                if isinstance(result, Certificate):
                    self.certificates[secret_key] = result
                else:
                    self.problem("Secret", secret_key, *result)
                    self.certificates[secret_key] = (
                        f"secret {secret_key} is unusable: {result[0]}: {result[1]}"
                    )
        return self.certificates[secret_key]

    # 5./6. default backends and the result --------------------------------------------------

    def apply_default_backends(self) -> None:
        for key, namespace, default_backend, hosts, anns in self.defaults:
            backend = self.backend(key, namespace, default_backend, "spec.defaultBackend")
            if backend is None:
                continue
            # The Ingress's own hosts get its annotations; the catch-all serves everybody.
            location = Location("/", PathType.PREFIX, backend=backend, ingress=key)
            self.servers[CATCH_ALL].locations.setdefault(_ROOT, location)
            own = Location(
                "/",
                PathType.PREFIX,
                backend=backend,
                ingress=key,
                settings=self.ingress_settings.get(key, DEFAULT_SETTINGS),
            )
            for hostname in hosts:
                if _ROOT not in self.servers[hostname].locations:
                    self.servers[hostname].locations[_ROOT] = own
                    self.set_policy(backend, anns, _ROOT, key)

    def finish(self) -> Configuration:
        servers: list[Server] = []
        for hostname in sorted(self.servers, key=lambda h: (h != CATCH_ALL, h)):
            draft = self.servers[hostname]
            draft.locations.setdefault(
                _ROOT, Location("/", PathType.PREFIX, backend=None, ingress=_NO_INGRESS, status=404)
            )
            locations = sorted(draft.locations.values(), key=_location_order)
            redirect = self.options.default_ssl_redirect and (
                draft.certificate is not None
                or (draft.tls_default_certificate and not draft.tls_failed)
            )
            servers.append(
                Server(
                    hostname,
                    tuple(locations),
                    draft.certificate,
                    redirect,
                    aliases=self.aliases(hostname, draft),
                    snippet=draft.snippet,
                    app_root=draft.app_root,
                )
            )
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
        for name in sorted(used):
            backend = self.backends.get(name) or self.canaries[name]
            policy = self.policies.get(name, (backend.policy, _NO_INGRESS))[0]
            alternatives = tuple(self.alternatives.get(name, ()))
            if alternatives:
                policy = dataclasses.replace(policy, alternatives=alternatives)
            if policy != backend.policy:
                backend = dataclasses.replace(backend, policy=policy)
            backends.append(backend)
        return Configuration(servers=tuple(servers), backends=tuple(backends))

    def aliases(self, hostname: str, draft: _ServerDraft) -> tuple[str, ...]:
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
            self.problem("Ingress", key, self.annotation_field("server-alias"), reason)
        return tuple(sorted(kept))


_IPV4 = re.compile(
    r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
    r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z"
)


def _is_ipv6(address: str) -> object:
    if "%" in address:  # a scoped (link-local) address is not routable from nginx
        return False
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        return False
    return True


#: addressType -> check of one address (a regex for IPv4: ipaddress costs 2 us an address).
_ADDRESS_CHECKS: dict[str, Callable[[str], object]] = {
    "IPv4": _IPV4.match,
    "IPv6": _is_ipv6,
}


def _name_of(raw: object, index: int) -> str:
    """An EndpointSlice's name for a Problem, even when its metadata is broken."""
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    name = meta.get("name") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else f"[{index}]"


def _location_order(location: Location) -> tuple[str, str]:
    return (location.path, location.path_type.value)


def _age(key: str, raw: object) -> tuple[int, float, str]:
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


# --- TLS Secrets ---------------------------------------------------------------------------


def parse_tls_secret(key: ObjectKey, raw: object) -> Certificate | tuple[str, str]:
    """A TLS Secret -> ``Certificate``, or ``(field, reason)`` saying what is wrong with it.

    Accepts type ``kubernetes.io/tls`` or ``Opaque`` with ``data["tls.crt"]`` (PEM chain, leaf
    first) and ``data["tls.key"]`` (unencrypted PEM key), both base64 as the API serves them.
    The key must belong to the leaf certificate.  RSA keys are not re-validated (that costs
    ~40 ms each); their public half is checked against the certificate instead.
    """
    if not isinstance(raw, dict):
        return ("object", "must be a mapping")
    secret_type = raw.get("type") or SECRET_TYPE_OPAQUE
    if secret_type not in (SECRET_TYPE_TLS, SECRET_TYPE_OPAQUE):
        return ("type", f"must be {SECRET_TYPE_TLS}, not {secret_type!r}")
    data = raw.get("data")
    if not isinstance(data, dict):
        return ("data", "must be a mapping holding tls.crt and tls.key")
    texts: list[str] = []
    for name in ("tls.crt", "tls.key"):
        value = data.get(name)
        if not isinstance(value, str) or not value:
            return (f"data.{name}", "missing" if value is None else "must be a base64 string")
        try:
            texts.append(base64.b64decode(value, validate=True).decode("ascii"))
        except (binascii.Error, ValueError):
            return (f"data.{name}", "is not base64 of PEM text")
    crt_text, key_text = texts
    try:
        chain = x509.load_pem_x509_certificates(crt_text.encode())
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.tls.crt", f"is not a PEM certificate chain: {exc}")
    try:
        private_key = serialization.load_pem_private_key(
            key_text.encode(), password=None, unsafe_skip_rsa_key_validation=True
        )
    except Exception as exc:  # untrusted input: any parser failure is a reason
        return ("data.tls.key", f"is not an unencrypted PEM private key: {exc}")
    leaf = chain[0]
    try:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        matches = leaf.public_key().public_bytes(der, spki) == (
            private_key.public_key().public_bytes(der, spki)
        )
    except Exception as exc:  # untrusted input: unusual key types
        return ("data.tls.key", f"cannot be compared with the certificate: {exc}")
    if not matches:
        return ("data.tls.key", "does not match the first certificate of tls.crt")
    pem = crt_text.strip() + "\n" + key_text.strip() + "\n"
    return Certificate(
        secret=key,
        sha256=hashlib.sha256(pem.encode()).hexdigest(),
        pem=pem,
        not_after=leaf.not_valid_after_utc.timestamp(),
    )
