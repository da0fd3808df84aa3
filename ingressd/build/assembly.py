"""Assembling: Ingress plans + Services, EndpointSlices, Secrets -> servers, backends, problems.

    Snapshot + BuildOptions + Memo --Assembly(...).run(keys)--> Assembled
        1. classes     IngressClasses -> which Ingresses are ours (others: ``ignored``)
        2. order       ours planned (``ingressd.build.plan``, one plan per object, memoized) and
                       sorted by creationTimestamp (missing last), then namespace/name: the
                       oldest Ingress wins every host + path + pathType conflict
        3. rules       each rule -> a server (by host, or the catch-all ``_``), each path ->
                       a Location; its backend resolved Service -> port -> EndpointSlices
        3a. annotations LocationSettings on every Location of the Ingress (Secrets and Services
                       they name resolved here), server aliases / snippet / app-root, the
                       BackendPolicy of its backends
        4. tls         ``spec.tls`` hosts that this Ingress has rules for -> certificate from
                       the Secret + ssl redirect
        5. defaults    ``spec.defaultBackend`` -> ``/`` of the catch-all (oldest wins) and of
                       the Ingress's own hosts, where no rule defines Prefix ``/``
        5a. canaries   Ingresses with ``canary: "true"``, after every other: each path's backend
                       becomes an alternative (``alternativeBackends``) of the backend of the
                       same host + path, with its ``trafficShapingPolicy``
        6. finish      every server without Prefix ``/`` answers it with 404; servers sorted
                       (catch-all first), locations by (path, pathType), backends by name

This module drives the stages and holds 2 to 5; the others are modules of their own, each a
class that ``Assembly`` inherits from, all on the shared state of ``ingressd.build.resolving``
(server drafts, backends, problem buckets, and the lookups of Services, EndpointSlices and
Secrets): 1 ``ingressd.build.selection``, 3a ``ingressd.build.annotating``,
5a ``ingressd.build.canarying``, 6 ``ingressd.build.finishing``.

``run(keys)`` assembles only the Ingresses ``keys`` (all of the snapshot's when ``None``):
building uses that to rebuild the servers one change touches (see ``ingressd.build.building``).

What an object says on its own is computed once per object and kept in the ``Memo``
(``ingressd.build.reading``) while the Store holds that object (EndpointSlices, TLS and annotation
Secrets, plans), and the
model values made from them (Location, Backend, LocationSettings, Server) are the previous
build's objects whenever they are equal, so that comparing and rendering an unchanged part
stops at an identity check.

Problems are collected in buckets so that a partial assembly can be spliced into a whole:
IngressClass problems; problems of EndpointSlices and Secrets, per object, with the Ingresses
whose lookups met them; problems of each Ingress per phase (rules, default backends, canaries);
alias problems of the finish.  ``BuildState.problems`` lists them in that order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ingressd.annotations import IngressAnnotations
from ingressd.build.annotating import AnnotationStage
from ingressd.build.canarying import CanaryStage
from ingressd.build.finishing import FinishStage
from ingressd.build.plan import ROOT, IngressPlan, PathPlan, TlsPlan
from ingressd.build.resolving import NO_INGRESS, ObjectBucket, Phase, Refused, ServerDraft
from ingressd.build.selection import is_ours, our_classes
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Certificate,
    Location,
    ObjectKey,
    PathType,
    Problem,
    Server,
)
from ingressd.model.policy import DEFAULT_POLICY
from ingressd.model.settings import DEFAULT_SETTINGS, LocationSettings

__all__ = ["Assembled", "Assembly"]


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


class Assembly(AnnotationStage, CanaryStage, FinishStage):
    """One assembly: the stages run in order on one ``AssemblyState``."""

    def run(self, keys: Iterable[ObjectKey] | None = None) -> Assembled:
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

    # 3./4. one Ingress ----------------------------------------------------------------------

    def ingress(self, plan: IngressPlan) -> None:
        if not self.checked(plan):
            return
        key = plan.key
        namespace = key.partition("/")[0]
        annotations = plan.annotations
        settings = self.ingress_settings[key] = self.settings(key, namespace, annotations)
        hosts: list[str] = []
        servers = self.servers
        for rule in plan.rules:
            if rule.host_issue is not None:
                self.issue(key, rule.host_issue)
                continue
            host = rule.host or CATCH_ALL
            if rule.host:
                if host not in servers:
                    servers[host] = ServerDraft(host)
                if host not in hosts:
                    hosts.append(host)
            for path in rule.paths:
                self.path(key, host, rule.position, path, annotations, settings)
        for tls in plan.tls:
            self.tls(key, namespace, tls)
        if plan.has_default_backend:
            self.defaults.append((key, namespace, plan, hosts))
        if (
            annotations.aliases
            or annotations.app_root is not None
            or annotations.server_snippet is not None
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
            self.problem(key, f"spec.rules[{rule_index}].http.paths[{path.position}].path", reason,
                         winner=winner.ingress)
            return
        backend = self.backend(key, path.backend, path.backend_issue, (rule_index, path.position))
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
                self.problem(key, f"spec.tls[{tls.position}].secretName", found.reason,
                             missing=found.missing)
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

    # 5. default backends ---------------------------------------------------------------------

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
