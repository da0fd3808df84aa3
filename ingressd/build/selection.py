"""Selecting: IngressClasses + BuildOptions -> which Ingresses are ours.

    Snapshot.ingress_classes --our_classes(snapshot, options)--> names of our classes,
                                                                 whether one is the default,
                                                                 Problems of those that do not parse
    raw Ingress --is_ours(raw, options, classes, have_default)--> ours or not
        ``spec.ingressClassName`` (ours: ``BuildOptions.ingress_class`` or one of our classes),
        else the legacy ``kubernetes.io/ingress.class`` annotation, else the default class

Stage 1 of the assembly (``ingressd.build.assembly``); the incremental build
(``ingressd.build.incremental``) asks again for the Ingresses one change touches.
``BuildOptions`` lives here because it says first what makes an Ingress ours; the rest of it
(ssl redirect, annotation options, loopback endpoints, default backend) is read by the later stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingressd.annotations import DEFAULT_PREFIX, AnnotationOptions, Risk
from ingressd.build import kube
from ingressd.build.plan import LEGACY_CLASS_ANNOTATION
from ingressd.model import ObjectKey, Problem
from ingressd.model.settings import ExternalAuth
from ingressd.store.snapshot import Snapshot

__all__ = ["BuildOptions", "is_ours", "our_classes"]

DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


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
    #: Refuse annotations of a higher risk level (``--annotations-risk-level``).
    annotations_risk_level: Risk = Risk.HIGH
    #: ``global-allowed-response-headers``: the names ``custom-headers`` may set (compared
    #: case-insensitively); ``None``: any valid name.
    allowed_response_headers: tuple[str, ...] | None = None
    #: Accept EndpointSlice addresses in 127.0.0.0/8 and ::1 (``--allow-loopback-endpoints``):
    #: for pods on loopback in a local demo or tests; in a cluster such an endpoint points
    #: nginx at its own host.  Link-local and unspecified addresses are refused regardless.
    allow_loopback_endpoints: bool = False
    #: ``--tcp-services-configmap`` / ``--udp-services-configmap`` (ingress-nginx format).
    tcp_services_configmap: ObjectKey | None = None
    udp_services_configmap: ObjectKey | None = None
    #: ``--enable-ssl-passthrough``: Ingresses with ``ssl-passthrough`` get TLS untouched.
    enable_ssl_passthrough: bool = False
    #: TCP ports the controller listens on itself, and what for: a TCP service entry on one of
    #: them is refused.
    reserved_ports: tuple[tuple[int, str], ...] = ()
    #: ``--default-backend-service``: the Service (its first port) that unknown hosts and
    #: unmatched paths reach instead of the built-in 404, and where custom errors go.
    default_backend_service: ObjectKey | None = None
    #: ``custom-http-errors`` of the ConfigMap: codes the locations without the annotation
    #: send to the default backend (needs ``default_backend_service``).
    custom_http_errors: tuple[int, ...] = ()
    #: The ConfigMap's ``global-auth-url`` & co: external authentication for every location
    #: whose Ingress sets no ``auth-url`` and does not say ``enable-global-auth: "false"``.
    global_auth: ExternalAuth | None = None
    #: A ``global-auth-*`` key of the ConfigMap was invalid: the locations global auth would
    #: protect answer 503 (fail closed).
    global_auth_invalid: bool = False

    @property
    def annotation_options(self) -> AnnotationOptions:
        return AnnotationOptions(
            prefix=self.annotations_prefix,
            allow_snippets=self.allow_snippet_annotations,
            risk_level=self.annotations_risk_level,
        )


def is_ours(raw: object, options: BuildOptions, our_classes: set[str], have_default: bool) -> bool:
    """Class by ``spec.ingressClassName``, else the legacy annotation, else the default."""
    spec = raw.get("spec") if isinstance(raw, dict) else None
    class_name = spec.get("ingressClassName") if isinstance(spec, dict) else None
    if class_name is not None and class_name != "":
        if not isinstance(class_name, str):
            return False
        return class_name == options.ingress_class or class_name in our_classes
    meta = raw.get("metadata") if isinstance(raw, dict) else None
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    legacy = annotations.get(LEGACY_CLASS_ANNOTATION) if isinstance(annotations, dict) else None
    if legacy is not None and legacy != "":
        return bool(legacy == options.ingress_class)
    return have_default


def our_classes(snapshot: Snapshot, options: BuildOptions) -> tuple[set[str], bool, list[Problem]]:
    """Names of the IngressClasses of our controller; whether one of them is the default; the
    IngressClasses that do not parse."""
    ours: set[str] = set()
    have_default = False
    problems: list[Problem] = []
    for name in sorted(snapshot.ingress_classes):
        parsed = kube.parse(kube.IngressClass, snapshot.ingress_classes[name])
        if isinstance(parsed, kube.ParseError):
            problems.append(Problem("IngressClass", name, parsed.field, parsed.reason))
            continue
        if parsed.spec is None or parsed.spec.controller != options.controller:
            continue
        ours.add(name)
        annotations = (parsed.metadata.annotations if parsed.metadata else None) or {}
        have_default = have_default or annotations.get(DEFAULT_CLASS_ANNOTATION) == "true"
    return ours, have_default, problems
