"""Assembling: Ingress plans + Services, EndpointSlices, Secrets -> servers, backends, problems.

    Snapshot + BuildOptions + Memo --Assembly(...).run(keys)--> Assembled
        1. classes     IngressClasses -> which Ingresses are ours (``ingressd.build.selection``;
                       the others are ``ignored``)
        2. order       ours planned (``ingressd.build.plan``, one plan per object, memoized) and
                       sorted by creationTimestamp (missing last), then namespace/name: the
                       oldest Ingress wins every host + path + pathType conflict
        3. rules       each rule -> a server draft (by host, or the catch-all ``_``), each path
                       -> a Location; its backend: Service (not ExternalName) -> port, by
                       number or name -> the Service's EndpointSlices -> Backend
                       ``<namespace>-<service>-<port>``, each reference resolved once
        3a. annotations LocationSettings on every Location of the Ingress, with the Secrets
                       (``auth-secret``, ``proxy-ssl-secret``, ``auth-tls-secret``) and the
                       Service (``default-backend``) they name resolved: a missing or unusable
                       Secret denies the locations (503); the BackendPolicy of its backends and
                       the ``server-alias`` / ``server-snippet`` / ``app-root`` / client
                       certificates (``auth-tls-*``) of its hosts: the oldest Ingress that sets
                       one wins; a canary backend takes its main backend's cookie affinity
                       (``affinity-canary-behavior: sticky``) in 5a
        4. tls         ``spec.tls`` hosts that this Ingress has rules for -> certificate from
                       the Secret + ssl redirect
        5. defaults    ``spec.defaultBackend`` -> ``/`` of the catch-all (oldest wins) and of
                       the Ingress's own hosts, where no rule defines Prefix ``/``
        5a. canaries   Ingresses with ``canary: "true"``, after every other: each path's backend,
                       copied as ``canary-<ingress>-<backend>`` with its ``trafficShapingPolicy``,
                       becomes an alternative (``alternativeBackends``) of the backend a main
                       Ingress serves the same host + path with; a canary adds no location
        6. finish      every server without Prefix ``/`` answers it with 404, or sends it to
                       the backend of ``--default-backend-service`` (its first port); servers sorted
                       (catch-all first), locations by (path, pathType); ``server-alias`` names
                       kept unless a server's host or another's alias; the backends the
                       locations use (and their canaries) by name, with policy and alternatives

``Assembly`` owns what the stages fill: the server drafts, the backends, the problem buckets,
and the lookups of the Services, EndpointSlices and Secrets an Ingress names.  ``run(keys)``
assembles only the Ingresses ``keys`` (all of the snapshot's when ``None``): the incremental
build (``ingressd.build.incremental``) uses that to rebuild the servers one change touches; a
canary reads other Ingresses' locations and extends their backends, so that build assembles
everything again when one is involved.

What an object says on its own is computed once per object and kept in the ``Memo``
(``ingressd.build.reading``) while the Store holds that object (EndpointSlices, TLS and
annotation Secrets, plans), and the model values made from them (Location, Backend,
LocationSettings, Server) are the previous build's objects whenever they are equal
(``_reuse``; a Location is looked up on its server), so that comparing and rendering an
unchanged part stops at an identity check.

Problems are collected in buckets so that a partial assembly can be spliced into a whole:
IngressClass problems; problems of EndpointSlices and Secrets, per object (``ObjectBucket``),
with the Ingresses whose lookups met them (``touched``); problems of each Ingress per ``Phase``
(rules, default backends, canaries); alias problems of the finish.  ``BuildState.problems``
lists them in that order.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Iterable, Set
from dataclasses import dataclass, field
from typing import TypeVar

from ingressd.annotations import IngressAnnotations, extauth, headers
from ingressd.annotations.values import InvalidValue
from ingressd.build import kube
from ingressd.build.plan import (
    ROOT,
    At,
    BackendRef,
    IngressPlan,
    Issue,
    PathPlan,
    TlsPlan,
    at_field,
    backend_ref,
)
from ingressd.build.reading import Memo, SecretFiles, ServiceSlices, cluster_ip_problem
from ingressd.build.selection import BuildOptions, is_ours, our_classes
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Certificate,
    Endpoint,
    Location,
    ObjectKey,
    PathType,
    Problem,
    Server,
)
from ingressd.model.policy import DEFAULT_POLICY, BackendPolicy
from ingressd.model.settings import (
    DEFAULT_SETTINGS,
    BasicAuth,
    ClientAuth,
    HeaderAction,
    HeaderRule,
    LocationSettings,
    SecretFile,
)
from ingressd.store.snapshot import Snapshot

__all__ = ["NO_INGRESS", "Assembled", "Assembly", "ObjectBucket", "Phase", "ServerDraft"]

#: No Ingress: the owner of what no Ingress made (the 404 of a server without ``/``).
NO_INGRESS = ObjectKey("")


class Phase(enum.IntEnum):
    """When an Ingress problem was found; problems are listed phase by phase."""

    RULES = 0
    DEFAULTS = 1
    CANARIES = 2


#: ``(kind, key, purpose)`` of an object with problems of its own: ``("EndpointSlice",
#: Service key, "")`` for the slices of a Service, ``("Secret", key, "tls" | "auth-file" |
#: "auth-map" | "proxy-ssl")`` for a Secret read for one purpose.
ObjectBucket = tuple[str, str, str]


@dataclass(slots=True)
class ServerDraft:
    """A server while the stages fill it."""

    hostname: str
    locations: dict[tuple[str, PathType], Location] = field(default_factory=dict)
    certificate: Certificate | None = None
    certificate_from: ObjectKey = NO_INGRESS
    tls_failed: bool = False
    tls_default_certificate: bool = False
    #: ``server-alias`` names with the Ingress that asked for each.
    aliases: dict[str, ObjectKey] = field(default_factory=dict)
    snippet: str | None = None
    snippet_from: ObjectKey = NO_INGRESS
    app_root: str | None = None
    ssl_ciphers: str | None = None
    ssl_prefer_server_ciphers: bool | None = None
    #: ``from-to-www-redirect`` with the Ingress that asked for it.
    www_redirect_from: ObjectKey | None = None
    client_auth: ClientAuth | None = None
    client_auth_from: ObjectKey = NO_INGRESS


@dataclass(frozen=True, slots=True)
class _Unresolved:
    """A backend that cannot be resolved: the sub-field of ``...backend`` to blame and why."""

    subfield: str
    reason: str
    missing: str = ""


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a Secret an Ingress names cannot be used; ``missing`` when it does not exist."""

    reason: str
    missing: str = ""


#: A model value the last build made and the ``Memo`` keeps, to be reused when equal.
_Model = TypeVar("_Model", Backend, LocationSettings, Server)

_NOT_FOUND = Location("/", PathType.PREFIX, backend=None, ingress=NO_INGRESS, status=404)


@dataclass(slots=True)
class Assembled:
    """The outcome of one assembly, in pieces that building can splice."""

    servers: list[Server]
    backends: list[Backend]
    #: Ingresses assembled (ours), oldest first; Ingresses of other classes.
    ours: list[IngressPlan]
    ignored: list[ObjectKey]
    class_problems: list[Problem]
    object_problems: dict[ObjectBucket, tuple[Problem, ...]]
    #: Which Ingresses met each object bucket (only buckets with problems).
    touched: dict[ObjectBucket, set[ObjectKey]]
    #: Ingress problems per phase, per Ingress, in the order found.
    ingress_problems: tuple[dict[ObjectKey, list[Problem]], ...]
    finish_problems: list[Problem]
    #: Every Backend resolved (by Service port), canaries apart.
    resolved: dict[BackendName, Backend]
    #: Two Services (or a canary and a Service) claimed one backend name: the outcome depends
    #: on the order of the whole build.
    collided: bool
    #: LocationSettings resolved from Secrets and Services, per Ingress.
    settings: dict[ObjectKey, LocationSettings]


class Assembly:
    """One assembly: the stages run in order on the state they fill (see the module)."""

    def __init__(self, snapshot: Snapshot, options: BuildOptions, memo: Memo) -> None:
        self.snapshot = snapshot
        self.options = options
        self.memo = memo
        # server drafts, and the backends resolved (each BackendRef once)
        self.servers: dict[str, ServerDraft] = {CATCH_ALL: ServerDraft(CATCH_ALL)}
        self.backends: dict[BackendName, Backend] = {}
        self.resolved: dict[BackendRef, tuple[BackendName | _Unresolved, ObjectBucket | None]] = {}
        #: (ingress, namespace, plan, hosts with rules) of each default backend, in order.
        self.defaults: list[tuple[ObjectKey, str, IngressPlan, list[str]]] = []
        #: Balancing policy of each backend, with the (oldest) Ingress that set it.
        self.policies: dict[BackendName, tuple[BackendPolicy, ObjectKey]] = {}
        #: Canary backends, and the canaries of each main backend in Ingress order.
        self.canaries: dict[BackendName, Backend] = {}
        self.alternatives: dict[BackendName, list[BackendName]] = {}
        self.alias_owners: dict[str, str] = {}
        #: Resolved LocationSettings of each (non-canary) Ingress.
        self.ingress_settings: dict[ObjectKey, LocationSettings] = {}
        #: Those resolved from Secrets and Services.
        self.resolved_settings: dict[ObjectKey, LocationSettings] = {}
        #: ``auth-tls-*`` of each (non-canary) Ingress, its Secret read.
        self.client_auths: dict[ObjectKey, ClientAuth] = {}
        self.collided = False
        #: The backend of ``--default-backend-service`` once looked up (None: none usable).
        self._global_default: tuple[BackendName | None] | None = None
        # problems, in buckets
        self.current: ObjectKey = NO_INGRESS
        self.phase: Phase | None = Phase.RULES
        self.class_problems: list[Problem] = []
        self.object_problems: dict[ObjectBucket, tuple[Problem, ...]] = {}
        self.touched: dict[ObjectBucket, set[ObjectKey]] = {}
        self.ingress_problems: tuple[dict[ObjectKey, list[Problem]], ...] = ({}, {}, {})
        self.finish_problems: list[Problem] = []

    def run(self, keys: Iterable[ObjectKey] | None = None) -> Assembled:
        """Assemble the Ingresses ``keys`` (every one of the snapshot's when ``None``)."""
        ours, ignored = self.select(keys)
        for plan in ours:
            if plan.annotations.canary is None:
                self.current = plan.key
                self.ingress(plan)
        self.phase = Phase.DEFAULTS
        self.apply_default_backends()
        self.phase = Phase.CANARIES
        for plan in ours:
            if plan.annotations.canary is not None:
                self.current = plan.key
                self.canary(plan)
        self.phase = None
        self.current = NO_INGRESS
        servers, backends = self.finish()
        return Assembled(
            servers=servers,
            backends=backends,
            ours=ours,
            ignored=ignored,
            class_problems=self.class_problems,
            object_problems=self.object_problems,
            touched=self.touched,
            ingress_problems=self.ingress_problems,
            finish_problems=self.finish_problems,
            resolved=self.backends,
            collided=self.collided,
            settings=self.resolved_settings,
        )

    # problems -------------------------------------------------------------------------------

    def problem(
        self, key: str, field_name: str, reason: str, *, missing: str = "", winner: str = ""
    ) -> None:
        """A problem of Ingress ``key`` (``missing``, ``winner``: see ``Problem``)."""
        found = Problem("Ingress", ObjectKey(key), field_name, reason, missing, winner)
        if self.phase is None:
            self.finish_problems.append(found)
        else:
            self.ingress_problems[self.phase].setdefault(ObjectKey(key), []).append(found)

    def denied(self, key: str, annotation: str, refused: Refused) -> LocationSettings:
        """A location that answers 503 because what ``annotation`` names is unusable (failing
        closed), and the Problem saying so."""
        at = self.annotation_field(annotation)
        self.problem(key, at, refused.reason, missing=refused.missing)
        return LocationSettings(denied=f"{annotation}: {refused.reason}")

    def issue(self, key: str, issue: Issue) -> None:
        self.problem(key, issue[0], issue[1])

    def touch(self, bucket: ObjectBucket, problems: tuple[Problem, ...]) -> None:
        """The current Ingress met an object with problems of its own."""
        self.object_problems[bucket] = problems
        users = self.touched.get(bucket)
        if users is None:
            self.touched[bucket] = {self.current}
        else:
            users.add(self.current)

    def checked(self, plan: IngressPlan) -> bool:
        """Report what makes the Ingress unusable (then False), else its annotation problems."""
        if plan.invalid is not None:
            self.issue(plan.key, plan.invalid)
            return False
        for note in plan.notes:
            self.issue(plan.key, note)
        return True

    def annotation_field(self, name: str) -> str:
        return f"metadata.annotations[{self.options.annotations_prefix.rstrip('/')}/{name}]"

    # 1./2. classes, order -------------------------------------------------------------------

    def select(self, keys: Iterable[ObjectKey] | None) -> tuple[list[IngressPlan], list[ObjectKey]]:
        """Our Ingresses among ``keys`` (every one when ``None``), planned, oldest first; the
        others' keys."""
        our, have_default, self.class_problems = our_classes(self.snapshot, self.options)
        ingresses = self.snapshot.ingresses
        ours: list[IngressPlan] = []
        ignored: list[ObjectKey] = []
        memo = self.memo
        for key in ingresses if keys is None else keys:
            raw = ingresses.get(key)
            if raw is None:
                continue
            if is_ours(raw, self.options, our, have_default):
                ours.append(memo.plan(key, raw))
            else:
                ignored.append(key)
        ours.sort(key=lambda plan: plan.age)
        return ours, ignored

    # 3. rules -------------------------------------------------------------------------------

    def ingress(self, plan: IngressPlan) -> None:
        """A main Ingress: its rules, TLS and server annotations (its default backend waits
        for stage 5)."""
        if not self.checked(plan):
            return
        key = plan.key
        namespace = key.partition("/")[0]
        annotations = plan.annotations
        settings = self.ingress_settings[key] = self.settings(key, namespace, annotations)
        client_auth = self.client_auths.get(key)
        hosts: list[str] = []
        servers = self.servers
        for rule in plan.rules:
            if rule.host_issue is not None:
                self.issue(key, rule.host_issue)
                continue
            host = rule.host or CATCH_ALL
            rule_settings = settings
            if rule.host:
                if host not in servers:
                    servers[host] = ServerDraft(host)
                if host not in hosts:
                    hosts.append(host)
            elif client_auth is not None:
                reason = (
                    "auth-tls-secret needs a host: the catch-all server cannot ask for client "
                    "certificates without asking every other host's clients too; this rule's "
                    "paths answer 503"
                )
                self.problem(key, f"spec.rules[{rule.position}].host", reason)
                rule_settings = LocationSettings(denied=reason)
            for path in rule.paths:
                self.path(key, host, rule.position, path, annotations, rule_settings)
        if client_auth is not None:
            self.server_client_auth(key, hosts, client_auth)
        for tls in plan.tls:
            self.tls(key, namespace, tls)
        if plan.has_default_backend:
            self.defaults.append((key, namespace, plan, hosts))
        if (
            annotations.aliases
            or annotations.app_root is not None
            or annotations.server_snippet is not None
            or annotations.ssl_ciphers is not None
            or annotations.ssl_prefer_server_ciphers is not None
            or annotations.from_to_www_redirect
        ):
            self.server_annotations(key, hosts, annotations)

    def path(
        self,
        key: ObjectKey,
        host: str,
        rule_index: int,
        path: PathPlan,
        annotations: IngressAnnotations,
        settings: LocationSettings,
    ) -> None:
        location_key = path.location
        if location_key is None:
            assert path.location_issue is not None
            self.issue(key, path.location_issue)
            return
        server = self.servers[host]
        winner = server.locations.get(location_key)
        if winner is not None:
            where = "the catch-all server" if host == CATCH_ALL else f"host {host}"
            reason = (
                f"{location_key[0]} ({location_key[1].value}) of {where} is already defined"
                f" by Ingress {winner.ingress}"
            )
            self.problem(
                key,
                f"spec.rules[{rule_index}].http.paths[{path.position}].path",
                reason,
                winner=winner.ingress,
            )
            return
        at = (rule_index, path.position)
        backend = self.backend(key, path.backend, path.backend_issue, at)
        if backend is not None and annotations.service_upstream and path.backend is not None:
            backend = self.cluster_ip_backend(key, path.backend, backend)
        if backend is not None:
            server.locations[location_key] = self.location(
                key, host, location_key, backend, settings
            )
            if annotations.policy is not DEFAULT_POLICY:
                self.set_policy(backend, annotations, location_key, key)

    def location(
        self,
        key: ObjectKey,
        host: str,
        location_key: tuple[str, PathType],
        backend: BackendName,
        settings: LocationSettings,
    ) -> Location:
        """The Location; the last build's object (on the same server) when it is equal."""
        previous = self.memo.servers.get(host)
        if previous is not None:
            path, path_type = location_key
            for found in previous.locations:
                if (
                    found.path == path
                    and found.path_type is path_type
                    and found.backend == backend
                    and found.ingress == key
                    and found.status == 503
                    and (found.settings is settings or found.settings == settings)
                ):
                    return found
        return Location(*location_key, backend=backend, ingress=key, settings=settings)

    # 3. rules: backends, also those of annotations, defaults and canaries -------------------

    def backend(
        self, key: ObjectKey, ref: BackendRef | None, issue: Issue | None, at: At
    ) -> BackendName | None:
        """The name of the Backend a path or default backend routes to; ``None`` + a Problem."""
        if ref is None:
            assert issue is not None
            self.issue(key, issue)
            return None
        found = self.resolved.get(ref)
        if found is None:
            found = self.resolved[ref] = self.resolve(ref)
        result, bucket = found
        if bucket is not None:
            self.touch(bucket, self.object_problems[bucket])
        if isinstance(result, _Unresolved):
            self.problem(
                key,
                f"{at_field(at)}.service.{result.subfield}",
                result.reason,
                missing=result.missing,
            )
            return None
        return result

    def resolve(self, ref: BackendRef) -> tuple[BackendName | _Unresolved, ObjectBucket | None]:
        """The backend of ``ref``, and the bucket of the slices it read when they have
        problems."""
        namespace, name = ref.namespace, ref.service
        service_key = ref.service_key
        service = self.service(service_key)
        if service is None:
            return _Unresolved(
                "name", f"service {service_key} not found", f"Service {service_key}"
            ), None
        if isinstance(service, kube.ParseError):
            return _Unresolved(
                "name", f"service {service_key} is malformed: {service.field}: {service.reason}"
            ), None
        if service.type == "ExternalName":
            reason = f"service {service_key} is of type ExternalName, which is not supported"
            return _Unresolved("name", reason), None
        written = ref.written
        if ref.number is not None:
            match = next((p for p in service.ports if p[1] == ref.number), None)
            missing = _Unresolved("port.number", f"service {service_key} has no port {written}")
        else:
            match = next((p for p in service.ports if p[0] == ref.port_name), None)
            missing = _Unresolved("port.name", f"service {service_key} has no port named {written}")
        if match is None:
            return missing, None
        backend_name = BackendName(f"{namespace}-{name}-{written}")
        taken = self.backends.get(backend_name)
        if taken is not None:
            self.collided = True
            return _Unresolved(
                "name",
                f"backend name {backend_name} is already used by service"
                f" {taken.namespace}/{taken.service} port {taken.service_port}",
            ), None
        slices = self.service_slices(service_key)
        endpoints = slices.endpoints_of(match[0])
        self.backends[backend_name] = _reuse(
            Backend(backend_name, namespace, name, written, endpoints),
            self.memo.backends.get(backend_name),
        )
        bucket = ("EndpointSlice", service_key, "") if slices.problems else None
        if bucket is not None:
            self.object_problems[bucket] = slices.problems
        return backend_name, bucket

    def cluster_ip_backend(self, key: ObjectKey, ref: BackendRef, pods: BackendName) -> BackendName:
        """``service-upstream``: a backend whose one endpoint is the Service's cluster IP and
        port, named ``<pods' backend>-cluster-ip``; the pods' backend (and a Problem) when the
        Service has no usable cluster IP."""
        service = self.service(ref.service_key)
        assert isinstance(service, kube.ServiceView)  # resolved: it exists and parses
        port = next(p[1] for p in service.ports if (p[1] == ref.number or p[0] == ref.port_name))
        reason = cluster_ip_problem(service.cluster_ip, self.options.allow_loopback_endpoints)
        if reason is not None:
            self.problem(
                key,
                self.annotation_field("service-upstream"),
                f"service {ref.service_key} {reason}: its pods are used",
            )
            return pods
        name = BackendName(f"{pods}-cluster-ip")
        if name not in self.backends:
            endpoint = Endpoint(str(ipaddress.ip_address(service.cluster_ip)), port)
            made = Backend(
                name, ref.namespace, ref.service, ref.written, (endpoint,), cluster_ip=True
            )
            self.backends[name] = _reuse(made, self.memo.backends.get(name))
        return name

    def service(self, service_key: ObjectKey) -> kube.ServiceView | kube.ParseError | None:
        raw = self.snapshot.services.get(service_key)
        return None if raw is None else kube.read_service(raw)

    def service_slices(self, service_key: ObjectKey) -> ServiceSlices:
        raws = self.snapshot.endpoint_slices.get(service_key, ())
        return self.memo.service_slices(service_key, raws)

    # 3a. annotations ------------------------------------------------------------------------

    def settings(
        self, key: ObjectKey, namespace: str, annotations: IngressAnnotations
    ) -> LocationSettings:
        """The Ingress's LocationSettings with the Secrets and Services they name resolved
        (the last build's object when equal)."""
        s = self.resolve_settings(key, namespace, annotations)
        if s is not annotations.settings:
            s = self.resolved_settings[key] = _reuse(s, self.memo.settings.get(key))
        return s

    def resolve_settings(
        self, key: ObjectKey, namespace: str, annotations: IngressAnnotations
    ) -> LocationSettings:
        """A missing or unusable Secret denies the locations (503), as an invalid security
        annotation does; a missing ``default-backend`` Service is only left out."""
        s = annotations.settings
        if s.denied is not None:
            return s
        headers_ref = annotations.auth_proxy_set_headers
        if headers_ref is not None and s.external_auth is not None:
            headers = self.auth_headers(namespace, headers_ref)
            if isinstance(headers, Refused):
                return self.denied(key, "auth-proxy-set-headers", headers)
            external = dataclasses.replace(s.external_auth, proxy_set_headers=headers)
            s = dataclasses.replace(s, external_auth=external)
        if s.external_auth is None and annotations.global_auth:
            if self.options.global_auth_invalid:
                return LocationSettings(denied="the ConfigMap's global-auth-* is invalid")
            if self.options.global_auth is not None:
                s = dataclasses.replace(s, external_auth=self.options.global_auth)
        auth = annotations.auth_request
        if auth is not None:
            found = self.secret_file(namespace, auth.namespace, auth.name, auth.secret_type)
            if isinstance(found, Refused):
                return self.denied(key, "auth-secret", found)
            assert isinstance(found, SecretFile)
            s = dataclasses.replace(s, auth=BasicAuth(auth.realm, found))
        ssl_ref = annotations.proxy_ssl_secret
        if ssl_ref is not None and s.proxy_ssl is not None:
            files = self.secret_file(namespace, ssl_ref[0], ssl_ref[1], "proxy-ssl")
            if isinstance(files, Refused):
                return self.denied(key, "proxy-ssl-secret", files)
            assert isinstance(files, tuple)
            ca, client = files
            s = dataclasses.replace(
                s, proxy_ssl=dataclasses.replace(s.proxy_ssl, ca=ca, client_certificate=client)
            )
        wanted = annotations.client_auth
        if wanted is not None:
            read = self.secret_file(namespace, wanted.namespace, wanted.name, "client-auth")
            if isinstance(read, Refused):
                return self.denied(key, "auth-tls-secret", read)
            assert isinstance(read, tuple) and read[0] is not None
            self.client_auths[key] = ClientAuth(
                ca=read[0],
                crl=read[1],
                verify=wanted.verify,
                depth=wanted.depth,
                error_page=wanted.error_page,
                pass_certificate=wanted.pass_certificate,
                match_cn=wanted.match_cn,
            )
        if s.proxy_ssl is not None and s.proxy_ssl.verify and s.proxy_ssl.ca is None:
            reason = "proxy-ssl-verify needs a proxy-ssl-secret holding ca.crt"
            self.problem(key, self.annotation_field("proxy-ssl-verify"), reason)
            return LocationSettings(denied=reason)
        if annotations.custom_headers is not None:
            rules = self.custom_headers(namespace, annotations.custom_headers)
            if isinstance(rules, Refused):
                return self.denied(key, "custom-headers", rules)
            s = dataclasses.replace(s, custom_headers=rules)
        if annotations.default_backend is not None:
            name = self.annotation_backend(key, namespace, annotations.default_backend)
            if name is not None:
                s = dataclasses.replace(s, default_backend=name)
            elif s.custom_http_errors:
                s = dataclasses.replace(s, custom_http_errors=())
        if s.custom_http_errors and s.default_backend is None:
            # the annotation without default-backend: --default-backend-service answers
            error_backend = self.global_default()
            if error_backend is not None:
                s = dataclasses.replace(s, error_backend=error_backend)
            else:
                reason = "needs default-backend or --default-backend-service; ignored"
                self.problem(key, self.annotation_field("custom-http-errors"), reason)
                s = dataclasses.replace(s, custom_http_errors=())
        elif not s.custom_http_errors and self.options.custom_http_errors:
            # the ConfigMap's codes, where the annotation sets none: --default-backend-service
            # answers them (ingress-nginx's http-level error_page), default-backend or not
            error_backend = self.global_default()
            if error_backend is not None:
                s = dataclasses.replace(
                    s,
                    custom_http_errors=self.options.custom_http_errors,
                    error_backend=error_backend,
                )
        return s

    def global_default(self) -> BackendName | None:
        """The backend of ``--default-backend-service`` (its first port), looked up once per
        assembly.  A Service that is missing or unusable is a problem of the controller's own
        objects, listed with the IngressClass problems: like them it changes only with an
        object that makes the incremental build give up (this Service)."""
        if self._global_default is not None:
            return self._global_default[0]
        found: BackendName | None = None
        service_key = self.options.default_backend_service
        if service_key is not None:
            service = self.service(service_key)
            reason = ""
            if service is None:
                reason = "not found: unmatched requests get 404"
            elif isinstance(service, kube.ParseError) or not service.ports:
                reason = "unusable (no port): unmatched requests get 404"
            if reason:
                self.class_problems.append(
                    Problem(
                        "Service",
                        service_key,
                        "--default-backend-service",
                        reason,
                        missing=f"Service {service_key}" if service is None else "",
                    )
                )
            else:
                assert isinstance(service, kube.ServiceView)
                namespace, _, name = service_key.partition("/")
                ref = BackendRef(namespace, name, service.ports[0][1], None)
                result = self.resolved.get(ref)
                if result is None:
                    result = self.resolved[ref] = self.resolve(ref)
                if isinstance(result[0], _Unresolved):
                    self.class_problems.append(
                        Problem(
                            "Service", service_key, "--default-backend-service", result[0].reason
                        )
                    )
                else:
                    found = result[0]
        self._global_default = (found,)
        return found

    def default_root(self) -> Location:
        """``/`` of a server no Ingress gives one: the default backend, or 404."""
        backend = self.global_default()
        if backend is None:
            return _NOT_FOUND
        return Location("/", PathType.PREFIX, backend=backend, ingress=NO_INGRESS, status=404)

    def auth_headers(
        self, namespace: str, ref: tuple[str | None, str]
    ) -> tuple[tuple[str, str], ...] | Refused:
        """The headers of the ``auth-proxy-set-headers`` ConfigMap, or why there are none."""
        other, name = ref
        if other not in (None, namespace):
            return Refused(f"ConfigMap {other}/{name} is not in the Ingress's namespace")
        found = self.snapshot.config_maps.get(ObjectKey(f"{namespace}/{name}"))
        if found is None:
            what = f"ConfigMap {namespace}/{name}"
            return Refused(f"{what} not found", missing=what)
        try:
            return extauth.proxy_set_headers(found.get("data"))
        except InvalidValue as exc:
            return Refused(f"ConfigMap {namespace}/{name} {exc}")

    def annotation_backend(
        self, key: ObjectKey, namespace: str, service: str
    ) -> BackendName | None:
        """``default-backend``: the first port of a Service of the Ingress's namespace."""
        at = self.annotation_field("default-backend")
        found = self.service(ObjectKey(f"{namespace}/{service}"))
        if found is None or isinstance(found, kube.ParseError) or not found.ports:
            why = "not found" if found is None else "unusable (no port)"
            self.problem(
                key,
                at,
                f"service {namespace}/{service} {why}",
                missing="" if found is not None else f"Service {namespace}/{service}",
            )
            return None
        number = found.ports[0][1]
        backend = {"service": {"name": service, "port": {"number": number}}}
        ref, issue = backend_ref(namespace, backend, at)
        return self.backend(key, ref, issue, at)

    def secret_file(
        self, namespace: str, ref_namespace: str | None, name: str, kind: str
    ) -> SecretFiles | Refused:
        """The file(s) made from the Secret an annotation names, or why there are none.

        ``kind``: ``auth-file`` / ``auth-map`` (htpasswd) or ``proxy-ssl`` (CA, client cert).
        """
        if ref_namespace is not None and ref_namespace != namespace:
            return Refused(
                f"secret {ref_namespace}/{name} is in another namespace; ingressd reads only"
                f" Secrets of the Ingress's namespace ({namespace})"
            )
        secret_key = ObjectKey(f"{namespace}/{name}")
        raw = self.snapshot.secrets.get(secret_key)
        if raw is None:
            return Refused(f"secret {secret_key} not found", f"Secret {secret_key}")
        found = self.memo.secret_file(secret_key, raw, kind)
        if isinstance(found, tuple) and isinstance(found[0], str):
            field_name, reason = str(found[0]), str(found[1])
            problem = Problem("Secret", secret_key, field_name, reason)
            self.touch(("Secret", secret_key, kind), (problem,))
            return Refused(f"secret {secret_key} is unusable: {field_name}: {reason}")
        return found

    def custom_headers(
        self, namespace: str, ref: tuple[str | None, str]
    ) -> tuple[HeaderRule, ...] | Refused:
        """The response headers of the ConfigMap ``custom-headers`` names; a bad entry is a
        Problem of that ConfigMap, and the Ingress's locations are denied (as ingress-nginx)."""
        if ref[0] not in (None, namespace):
            return Refused(
                f"configmap {ref[0]}/{ref[1]} is in another namespace; ingressd reads only"
                f" ConfigMaps of the Ingress's namespace ({namespace})"
            )
        config_key = ObjectKey(f"{namespace}/{ref[1]}")
        raw = self.snapshot.config_maps.get(config_key)
        if raw is None:
            return Refused(f"configmap {config_key} not found", f"ConfigMap {config_key}")
        data = raw.get("data")
        good, refused = headers.header_entries(data if isinstance(data, dict) else {}, literal=True)
        allowed = self.options.allowed_response_headers
        if allowed is not None:
            permitted = {n.lower() for n in allowed}
            for name, _ in good:
                if name.lower() not in permitted:
                    refused[name] = (
                        "not in the controller ConfigMap's global-allowed-response-headers"
                    )
            good = tuple((n, v) for n, v in good if n not in refused)
        if refused:
            problems = tuple(
                Problem("ConfigMap", config_key, f"data.{entry}", why)
                for entry, why in sorted(refused.items())
            )
            self.touch(("ConfigMap", config_key, "custom-headers"), problems)
            return Refused(
                f"configmap {config_key} has headers ingressd refuses: "
                + ", ".join(sorted(refused))
            )
        if not good:
            return ()
        return (HeaderRule(HeaderAction.SET, tuple(n for n, _ in good), tuple(v for _, v in good)),)

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
            self.problem(key, "metadata.annotations", reason)

    def server_client_auth(self, key: ObjectKey, hosts: list[str], client_auth: ClientAuth) -> None:
        """``auth-tls-*`` go to every host of the Ingress (the oldest Ingress of a host that
        sets them wins, as in ingress-nginx: they are server-level in nginx)."""
        for host in hosts:
            draft = self.servers[host]
            if draft.client_auth is None:
                draft.client_auth, draft.client_auth_from = client_auth, key
            elif draft.client_auth_from != key and draft.client_auth != client_auth:
                reason = (
                    f"host {host} already uses the client certificate settings of Ingress "
                    f"{draft.client_auth_from} (one per host); those apply to this Ingress's "
                    "paths on it"
                )
                self.problem(key, self.annotation_field("auth-tls-secret"), reason)

    def server_annotations(
        self, key: ObjectKey, hosts: list[str], annotations: IngressAnnotations
    ) -> None:
        """``server-alias``, ``server-snippet``, ``app-root``, ``ssl-ciphers``,
        ``ssl-prefer-server-ciphers`` and ``from-to-www-redirect`` go to every host of the
        Ingress (the oldest Ingress of a host wins each of the others)."""
        for host in hosts:
            draft = self.servers[host]
            for alias in annotations.aliases:
                draft.aliases.setdefault(alias, key)
            if draft.app_root is None:
                draft.app_root = annotations.app_root
            if draft.ssl_ciphers is None:
                draft.ssl_ciphers = annotations.ssl_ciphers
            if draft.ssl_prefer_server_ciphers is None:
                draft.ssl_prefer_server_ciphers = annotations.ssl_prefer_server_ciphers
            if annotations.from_to_www_redirect and draft.www_redirect_from is None:
                draft.www_redirect_from = key
            if annotations.server_snippet is None:
                continue
            if draft.snippet is None:
                draft.snippet, draft.snippet_from = annotations.server_snippet, key
            elif draft.snippet_from != key:
                reason = (
                    f"host {host} already has the server-snippet of Ingress {draft.snippet_from}"
                    " (one per host)"
                )
                self.problem(key, self.annotation_field("server-snippet"), reason)

    # 4. tls ---------------------------------------------------------------------------------

    def tls(self, key: ObjectKey, namespace: str, tls: TlsPlan) -> None:
        for issue in tls.issues:
            self.issue(key, issue)
        if tls.secret_issue is not None:
            self.issue(key, tls.secret_issue)
            return
        certificate: Certificate | None = None
        if tls.secret_name:
            found = self.certificate(ObjectKey(f"{namespace}/{tls.secret_name}"))
            if isinstance(found, Refused):
                self.problem(
                    key, f"spec.tls[{tls.position}].secretName", found.reason, missing=found.missing
                )
            else:
                certificate = found
        for host_field, host in tls.targets:
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
                self.problem(key, host_field, reason)

    def certificate(self, secret_key: ObjectKey) -> Certificate | Refused:
        """The Secret's certificate, or why it is unusable (the Secret's problem is listed)."""
        raw = self.snapshot.secrets.get(secret_key)
        if raw is None:
            return Refused(f"secret {secret_key} not found", f"Secret {secret_key}")
        result = self.memo.certificate(secret_key, raw)
        if isinstance(result, Certificate):
            return result
        self.touch(("Secret", secret_key, "tls"), (Problem("Secret", secret_key, *result),))
        return Refused(f"secret {secret_key} is unusable: {result[0]}: {result[1]}")

    # 5. defaults ----------------------------------------------------------------------------

    def apply_default_backends(self) -> None:
        catch_all = self.servers[CATCH_ALL]
        for key, _namespace, plan, hosts in self.defaults:
            self.current = key
            backend = self.backend(
                key, plan.default_backend, plan.default_backend_issue, "spec.defaultBackend"
            )
            if backend is None:
                continue
            # The Ingress's own hosts get its annotations; the catch-all serves everybody.
            if ROOT not in catch_all.locations:
                catch_all.locations[ROOT] = self.location(
                    key, CATCH_ALL, ROOT, backend, DEFAULT_SETTINGS
                )
            settings = self.ingress_settings.get(key, DEFAULT_SETTINGS)
            for hostname in hosts:
                if ROOT not in self.servers[hostname].locations:
                    self.servers[hostname].locations[ROOT] = self.location(
                        key, hostname, ROOT, backend, settings
                    )
                    if plan.annotations.policy is not DEFAULT_POLICY:
                        self.set_policy(backend, plan.annotations, ROOT, key)

    # 5a. canaries ---------------------------------------------------------------------------

    def canary(self, plan: IngressPlan) -> None:
        """Each path of a canary Ingress: its backend becomes an alternative of the backend
        that serves the same host and path (a main Ingress must define it)."""
        key = plan.key
        name = key.partition("/")[2]
        annotations = plan.annotations
        if not self.checked(plan) or annotations.canary is None:
            return
        for rule in plan.rules:
            if rule.host_issue is not None:
                self.issue(key, rule.host_issue)
                continue
            host = rule.host or CATCH_ALL
            for path in rule.paths:
                at = f"spec.rules[{rule.position}].http.paths[{path.position}]"
                main = self.main_location(key, host, path, at)
                if main is None:
                    continue
                base = self.backend(key, path.backend, path.backend_issue, f"{at}.backend")
                if base is None:
                    continue
                if base == main.backend:
                    reason = f"the canary routes to {base}, the backend of its main Ingress"
                    self.problem(key, f"{at}.backend", reason)
                    continue
                canary_name = self.canary_backend(key, name, base, annotations, main)
                if canary_name is None:
                    continue
                alternatives = self.alternatives.setdefault(BackendName(main.backend or ""), [])
                if canary_name not in alternatives:
                    alternatives.append(canary_name)

    def main_location(self, key: ObjectKey, host: str, path: PathPlan, at: str) -> Location | None:
        server = self.servers.get(host)
        raw_path = path.raw_path
        candidates: list[tuple[str, PathType]] = []
        if path.raw_type == "Exact":
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
        self.problem(key, f"{at}.path", reason)
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
            self.collided = True
            reason = f"backend name {name} is already used by a Service"
            self.problem(key, "metadata.name", reason)
            return None
        source = self.backends[base]
        policy = annotations.policy
        main_policy = self.policies.get(BackendName(main.backend or ""))
        if (
            annotations.canary_behavior == "sticky"
            and main_policy is not None
            and main_policy[0].affinity is not None
        ):
            # affinity-canary-behavior sticky (the default): the canary shares the main
            # backend's cookie, so a session served by the canary stays on it
            policy = dataclasses.replace(policy, affinity=main_policy[0].affinity)
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

    # 6. finish ------------------------------------------------------------------------------

    def finish(self) -> tuple[list[Server], list[Backend]]:
        servers: list[Server] = []
        previous_servers = self.memo.servers
        redirect_default = self.options.default_ssl_redirect
        # Every alias any server asks for (a www redirect may not take one), collected once.
        aliased = {a for d in self.servers.values() for a in d.aliases}
        for hostname in sorted(self.servers, key=_server_order):
            draft = self.servers[hostname]
            locations = draft.locations
            if ROOT not in locations:
                locations[ROOT] = self.default_root()
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
                ssl_ciphers=draft.ssl_ciphers,
                ssl_prefer_server_ciphers=draft.ssl_prefer_server_ciphers,
                www_redirect=self.www_redirect(hostname, draft, aliased),
                client_auth=draft.client_auth,
            )
            servers.append(_reuse(server, previous_servers.get(hostname)))
        used: set[BackendName] = set()
        for server in servers:
            for loc in server.locations:
                if loc.backend:
                    used.add(loc.backend)
                if loc.settings.default_backend and loc.settings.denied is None:
                    used.add(loc.settings.default_backend)
                if loc.settings.errors_to:
                    used.add(loc.settings.errors_to)
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
                backend = _reuse(
                    dataclasses.replace(backend, policy=policy), previous_backends.get(name)
                )
            backends.append(backend)
        return servers, backends

    def www_redirect(self, hostname: str, draft: ServerDraft, aliased: Set[str]) -> str | None:
        """``from-to-www-redirect``: ``www.<host>`` for ``<host>``, ``<host>`` for
        ``www.<host>``, unless that name is a server or one of the ``aliased`` names (a
        Problem says so)."""
        key = draft.www_redirect_from
        if key is None or hostname == CATCH_ALL or hostname.startswith("*."):
            return None
        other = hostname[4:] if hostname.startswith("www.") else f"www.{hostname}"
        if other.count(".") < 1 or len(other) > 253:
            return None
        if other in self.servers or other in aliased:
            reason = f"{other} is a host or alias of its own: no redirect to {hostname}"
            self.problem(key, self.annotation_field("from-to-www-redirect"), reason)
            return None
        return other

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


def _reuse(made: _Model, previous: _Model | None) -> _Model:
    """The last build's object (``previous``, from the ``Memo``) when it equals ``made``, else
    ``made``: comparing and rendering an unchanged part then stops at an identity check."""
    if previous is not None and previous == made:
        return previous
    return made


def _server_order(hostname: str) -> tuple[bool, str]:
    return (hostname != CATCH_ALL, hostname)


def _location_order(location: Location) -> tuple[str, str]:
    return (location.path, location.path_type.value)
