"""Resolving: what an Ingress names of other objects -> Backends, Certificates, Secret files.

    BackendRef --backend()--> BackendName, or a Problem at ``...backend.service.<field>``
        Service (not ExternalName) -> its port, by number or name -> the Service's
        EndpointSlices (``Memo.service_slices``) -> Backend ``<namespace>-<service>-<port>``
        (the last build's object when equal); each reference resolved once an assembly
    Secret key --certificate()--> Certificate, or why not                 (``spec.tls``)
    Secret name --secret_file()--> htpasswd file, or CA + client certificate, or why not
                                   (``auth-secret``, ``proxy-ssl-secret`` annotations)

``AssemblyState`` is what every stage of one assembly (``ingressd.build.assembly``) shares: the
server drafts and the backends the stages fill, and the problem buckets.  The lookups live
with it because they fill most of it: a backend name that two Services claim sets
``collided``; an object with problems of its own (the slices of a Service, a Secret read for
one purpose) is kept in its bucket of ``object_problems``, with the Ingresses that met it in
``touched``, so that building can splice a partial assembly into a whole.  Problems of the
Ingress being assembled go to the bucket of the current ``Phase``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ingressd.build import kube
from ingressd.build.plan import At, BackendRef, IngressPlan, Issue, at_field
from ingressd.build.reading import Memo, SecretFiles, ServiceSlices
from ingressd.build.selection import BuildOptions
from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Certificate,
    Location,
    ObjectKey,
    PathType,
    Problem,
)
from ingressd.model.policy import BackendPolicy
from ingressd.model.settings import LocationSettings
from ingressd.store.snapshot import Snapshot

__all__ = ["NO_INGRESS", "AssemblyState", "ObjectBucket", "Phase", "ServerDraft"]

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


class AssemblyState:
    """One assembly's worth of state, and the lookups of the objects its Ingresses name."""

    def __init__(self, snapshot: Snapshot, options: BuildOptions, memo: Memo) -> None:
        self.snapshot = snapshot
        self.options = options
        self.memo = memo
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
        self.collided = False
        # problems, in buckets
        self.current: ObjectKey = NO_INGRESS
        self.phase: Phase | None = Phase.RULES
        self.class_problems: list[Problem] = []
        self.object_problems: dict[ObjectBucket, tuple[Problem, ...]] = {}
        self.touched: dict[ObjectBucket, set[ObjectKey]] = {}
        self.ingress_problems: tuple[dict[ObjectKey, list[Problem]], ...] = ({}, {}, {})
        self.finish_problems: list[Problem] = []

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

    # backends -------------------------------------------------------------------------------

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
            self.problem(key, f"{at_field(at)}.service.{result.subfield}", result.reason,
                         missing=result.missing)
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
        backend = self.memo.backends.get(backend_name)
        if (
            backend is None
            or (backend.endpoints is not endpoints and backend.endpoints != endpoints)
            or backend.namespace != namespace
            or backend.service != name
            or backend.service_port != written
        ):
            backend = Backend(backend_name, namespace, name, written, endpoints)
        self.backends[backend_name] = backend
        bucket = ("EndpointSlice", service_key, "") if slices.problems else None
        if bucket is not None:
            self.object_problems[bucket] = slices.problems
        return backend_name, bucket

    def service(self, service_key: ObjectKey) -> kube.ServiceView | kube.ParseError | None:
        raw = self.snapshot.services.get(service_key)
        return None if raw is None else kube.read_service(raw)

    def service_slices(self, service_key: ObjectKey) -> ServiceSlices:
        raws = self.snapshot.endpoint_slices.get(service_key, ())
        return self.memo.service_slices(service_key, raws)

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

    # Secrets of annotations -----------------------------------------------------------------

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
