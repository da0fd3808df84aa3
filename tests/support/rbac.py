"""RBAC: every Kubernetes API call ingressd makes, as the permissions it needs.  Pure.

    REQUIRED (this table) --tests--> == the rules of manifests/deploy/10-rbac.yaml (exactly)
                          --tests--> >= every call the fake API server saw the code make
                                     (Kubernetes source, leader election, status, Events)

    source    cluster    list, watch  ingresses, ingressclasses (networking.k8s.io),
                                      services, secrets, configmaps (core: the controller's and
                                      those custom-headers / add-headers name), endpointslices
                                      (discovery.k8s.io)
    status    cluster    update       ingresses/status
    events    cluster    create, patch events (core; in each Ingress's namespace)
    election  namespace  create       leases (create cannot be limited to a name)
              namespace  get, update  leases named --election-id

``cluster`` permissions go into the ClusterRole, ``namespace`` ones into the Role of the
controller's namespace.  Nothing is ever deleted, and nothing is read with ``get`` except the
Lease: every other object comes from an informer's list and watch.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ingressd.cluster.election import DEFAULT_ELECTION_ID

__all__ = ["REQUIRED", "Permission", "allows", "permissions_of"]

Scope = Literal["cluster", "namespace"]


@dataclass(frozen=True, slots=True, order=True)
class Permission:
    """One verb on one resource (or subresource), for one component of ingressd."""

    component: str
    scope: Scope
    group: str  # "" for the core group
    resource: str  # plural, e.g. "ingresses"
    verb: str
    subresource: str = ""
    #: Only this object (RBAC ``resourceNames``); None: any.
    name: str | None = None

    @property
    def qualified(self) -> str:
        """``plural`` or ``plural.group``: the fake API server's ``ApiRequest.resource``."""
        return f"{self.resource}.{self.group}" if self.group else self.resource

    def call(self) -> tuple[str, str, str]:
        """``(verb, resource, subresource)`` as ``FakeApiServer.requests`` records a call."""
        return self.verb, self.qualified, self.subresource


def _each(
    component: str,
    scope: Scope,
    group: str,
    resources: Iterable[str],
    verbs: Iterable[str],
    *,
    subresource: str = "",
    name: str | None = None,
) -> Iterator[Permission]:
    for resource in resources:
        for verb in verbs:
            yield Permission(component, scope, group, resource, verb, subresource, name)


def required(election_id: str = DEFAULT_ELECTION_ID) -> frozenset[Permission]:
    """Every permission ingressd needs, with the Lease named ``election_id``."""
    return frozenset(
        [
            *_each(
                "source",
                "cluster",
                "networking.k8s.io",
                ["ingresses", "ingressclasses"],
                ["list", "watch"],
            ),
            *_each(
                "source", "cluster", "", ["services", "secrets", "configmaps"], ["list", "watch"]
            ),
            *_each("source", "cluster", "discovery.k8s.io", ["endpointslices"], ["list", "watch"]),
            *_each(
                "status",
                "cluster",
                "networking.k8s.io",
                ["ingresses"],
                ["update"],
                subresource="status",
            ),
            *_each("events", "cluster", "", ["events"], ["create", "patch"]),
            *_each("election", "namespace", "coordination.k8s.io", ["leases"], ["create"]),
            *_each(
                "election",
                "namespace",
                "coordination.k8s.io",
                ["leases"],
                ["get", "update"],
                name=election_id,
            ),
        ]
    )


#: What ``ingressd run`` with a Kubernetes source needs, with the default ``--election-id``.
REQUIRED = required()


def permissions_of(role: dict[str, Any]) -> set[Permission]:
    """The permissions a ClusterRole (scope cluster) or Role (scope namespace) grants, one per
    group x resource x verb x name; ``component`` is left empty."""
    scope: Scope = "cluster" if role.get("kind") == "ClusterRole" else "namespace"
    out: set[Permission] = set()
    for rule in role.get("rules") or ():
        names = rule.get("resourceNames") or [None]
        for group in rule.get("apiGroups") or ():
            for spelled in rule.get("resources") or ():
                resource, _, subresource = spelled.partition("/")
                for verb in rule.get("verbs") or ():
                    for name in names:
                        out.add(Permission("", scope, group, resource, verb, subresource, name))
    return out


def allows(granted: Iterable[Permission], call: tuple[str, str, str]) -> bool:
    """Whether ``granted`` allows a recorded ``(verb, resource, subresource)`` call (in some
    namespace, on some object: the calls carry neither)."""
    return any(p.call() == tuple(call) for p in granted)
