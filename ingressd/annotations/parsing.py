"""Parsing: one Ingress's annotations in, typed settings and a report per annotation out.  Pure.

    (Ingress key, metadata.annotations, AnnotationOptions)
        --parse_annotations()--> IngressAnnotations
            settings        LocationSettings (references to Secrets and Services still unresolved:
                            ``auth``, ``proxy_ssl`` files and ``default_backend`` are filled in by
                            the builder from ``auth_request``, ``proxy_ssl_secret``,
                            ``default_backend``)
            server          aliases, server-snippet
            policy          BackendPolicy: load-balance, upstream-hash-by, cookie affinity
            canary          TrafficShaping when ``canary: "true"``
            use_regex       the Ingress's Prefix/ImplementationSpecific paths are regexes
            report          one AnnotationReport per annotation with our prefix

Steps: keys without the prefix are not ours and skipped; unknown names, unsupported ones and
invalid values are reported and left out (a ``fail_closed`` one denies the Ingress's locations
instead); then the values are combined (``ingressd.annotations.combining``; cross-annotation
rules: ``cors-*`` needs ``enable-cors``, ``auth-type`` needs ``auth-secret``, ...), and whatever
has no effect is reported as ignored.  Nothing raises: every problem is in ``report``.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ingressd.annotations import combining, modsecurity
from ingressd.annotations import values as v
from ingressd.annotations.combining import AuthRequest, ClientAuthRequest
from ingressd.annotations.table import ANNOTATIONS, DEFAULT_PREFIX, Annotation, Support
from ingressd.model.policy import BackendPolicy, TrafficShaping
from ingressd.model.settings import LocationSettings

__all__ = [
    "AnnotationOptions",
    "AnnotationReport",
    "IngressAnnotations",
    "Status",
    "parse_annotations",
]


class Status(enum.Enum):
    """What became of one annotation."""

    SUPPORTED = "supported"
    DIFFERENT = "supported with a difference"
    UNSUPPORTED = "unsupported"
    INVALID = "invalid value"
    UNKNOWN = "unknown"
    #: Valid but without effect (``cors-max-age`` without ``enable-cors``, ...).
    IGNORED = "ignored"
    #: A snippet without ``--allow-snippet-annotations``.
    NOT_ALLOWED = "not allowed"

    @property
    def is_problem(self) -> bool:
        return self not in (Status.SUPPORTED, Status.DIFFERENT)


@dataclass(frozen=True, slots=True)
class AnnotationOptions:
    prefix: str = DEFAULT_PREFIX
    allow_snippets: bool = False


@dataclass(frozen=True, slots=True)
class AnnotationReport:
    #: The whole key, prefix included.
    key: str
    status: Status
    #: Why (invalid, ignored, unsupported) or the difference from ingress-nginx.
    detail: str = ""

    @property
    def field(self) -> str:
        return f"metadata.annotations[{self.key}]"


@dataclass(frozen=True, slots=True)
class IngressAnnotations:
    settings: LocationSettings = field(default_factory=LocationSettings)
    auth_request: AuthRequest | None = None
    #: ``(namespace or None, name)`` of ``proxy-ssl-secret``.
    proxy_ssl_secret: tuple[str | None, str] | None = None
    #: ``default-backend``: a Service name in the Ingress's namespace.
    default_backend: str | None = None
    use_regex: bool = False
    aliases: tuple[str, ...] = ()
    server_snippet: str | None = None
    app_root: str | None = None
    #: ``service-upstream``: proxy to the Service's cluster IP instead of its pods.
    service_upstream: bool = False
    #: Server-level: ``ssl-ciphers``, ``ssl-prefer-server-ciphers``, ``from-to-www-redirect``.
    ssl_ciphers: str | None = None
    ssl_prefer_server_ciphers: bool | None = None
    from_to_www_redirect: bool = False
    policy: BackendPolicy = field(default_factory=BackendPolicy)
    #: Set on a canary Ingress (``canary: "true"``).
    canary: TrafficShaping | None = None
    #: ``(namespace or None, name)`` of the ``auth-proxy-set-headers`` ConfigMap.
    auth_proxy_set_headers: tuple[str | None, str] | None = None
    #: ``enable-global-auth``: the ConfigMap's ``global-auth-url`` applies (unless ``auth-url``).
    global_auth: bool = True
    #: ``auth-tls-secret`` and the ``auth-tls-*`` settings (the Secret still unresolved).
    client_auth: ClientAuthRequest | None = None
    #: ``affinity-canary-behavior`` of a canary Ingress: ``sticky`` (its backend takes the
    #: main backend's cookie affinity) or ``legacy`` (its own).
    canary_behavior: str = "sticky"
    report: tuple[AnnotationReport, ...] = ()

    @property
    def problems(self) -> tuple[AnnotationReport, ...]:
        return tuple(r for r in self.report if r.status.is_problem)


def parse_annotations(
    key: str, annotations: Mapping[str, str] | None, options: AnnotationOptions
) -> IngressAnnotations:
    """Typed settings of the Ingress ``key`` (``namespace/name``) from its annotations."""
    prefix = options.prefix.rstrip("/") + "/"
    parsed: dict[str, Any] = {}
    report: dict[str, AnnotationReport] = {}
    keys: dict[str, str] = {}
    denied: list[str] = []
    for full in sorted(annotations or {}):
        if not full.startswith(prefix):
            continue
        name = full[len(prefix) :]
        keys[name] = full
        raw = (annotations or {})[full]
        spec = ANNOTATIONS.get(name)
        if spec is None:
            report[name] = AnnotationReport(full, Status.UNKNOWN, "not an ingress-nginx annotation")
            continue
        if spec.support is Support.UNSUPPORTED or spec.parser is None:
            detail = spec.difference or "not supported by ingressd; ignored"
            report[name] = AnnotationReport(full, Status.UNSUPPORTED, detail)
            if spec.fail_closed:
                denied.append(f"{full} is not supported")
            continue
        safe = _SAFE_SUBSETS.get(name)
        if safe is not None and not options.allow_snippets and isinstance(raw, str):
            try:
                parsed[name] = safe(raw)
            except v.InvalidValue as exc:
                report[name] = AnnotationReport(
                    full,
                    Status.NOT_ALLOWED,
                    f"snippets are refused unless ingressd runs with "
                    f"--allow-snippet-annotations: {exc}",
                )
            else:
                report[name] = AnnotationReport(full, Status.SUPPORTED)
            continue
        if spec.group.value == "snippet" and not options.allow_snippets:
            report[name] = AnnotationReport(
                full,
                Status.NOT_ALLOWED,
                "snippets are refused unless ingressd runs with --allow-snippet-annotations",
            )
            continue
        if not isinstance(raw, str):
            report[name] = AnnotationReport(full, Status.INVALID, "must be a string")
            if spec.fail_closed:
                denied.append(f"{full} is invalid")
            continue
        try:
            parsed[name] = spec.parser(raw)
        except v.InvalidValue as exc:
            report[name] = AnnotationReport(full, Status.INVALID, str(exc))
            if spec.fail_closed:
                denied.append(f"{full} is invalid")
            continue
        except Exception as exc:  # untrusted input: a grammar's slip is this value's problem
            report[name] = AnnotationReport(
                full, Status.INVALID, f"could not be parsed ({type(exc).__name__}: {exc})"
            )
            if spec.fail_closed:
                denied.append(f"{full} is invalid")
            continue
        report[name] = _ok(full, spec)

    namespace = key.partition("/")[0]
    for name, value in parsed.items():
        moot = _NO_DIFFERENCE.get(name)
        if report[name].status is Status.DIFFERENT and moot and moot(value, namespace, parsed):
            report[name] = AnnotationReport(report[name].key, Status.SUPPORTED)
    vals = combining.Values(parsed)
    canary = combining.canary(vals)
    if canary is not None:
        for name in parsed:
            if not ANNOTATIONS[name].on_canary:
                vals.ignore("ignored on a canary Ingress: the main Ingress's settings apply", name)
        denied = []
    else:
        vals.ignore(
            'has no effect without canary: "true"',
            *(n for n in parsed if ANNOTATIONS[n].group.value == "canary" and n != "canary"),
        )
    settings = combining.location(vals, key)
    if denied and canary is None:
        settings = LocationSettings(denied="; ".join(denied))
    auth = combining.auth(vals)
    if vals.has("auth-type") and auth is None:
        if not vals.has("auth-secret") and "auth-secret" not in report:
            vals.refuse("auth-type", "basic needs auth-secret")
        if settings.denied is None and canary is None:
            settings = LocationSettings(denied="auth-type basic needs auth-secret")
    result = IngressAnnotations(
        settings=settings,
        auth_request=auth,
        proxy_ssl_secret=vals.get("proxy-ssl-secret", tuple),
        default_backend=vals.get("default-backend", str),
        use_regex=vals.flag("use-regex") or vals.has("rewrite-target"),
        aliases=vals.get("server-alias", tuple) or (),
        server_snippet=vals.get("server-snippet", str),
        app_root=vals.get("app-root", str),
        service_upstream=vals.flag("service-upstream"),
        ssl_ciphers=vals.get("ssl-ciphers", str),
        ssl_prefer_server_ciphers=vals.get("ssl-prefer-server-ciphers", bool),
        from_to_www_redirect=vals.flag("from-to-www-redirect"),
        policy=combining.policy(vals),
        canary=canary,
        global_auth=vals.flag("enable-global-auth", default=True),
        auth_proxy_set_headers=vals.get("auth-proxy-set-headers", tuple),
        client_auth=combining.client_auth(vals),
        canary_behavior=vals.get("affinity-canary-behavior", str) or "sticky",
    )
    for name, because in vals.ignored.items():
        report[name] = AnnotationReport(keys[name], Status.IGNORED, because)
    for name, why in vals.invalid.items():
        report[name] = AnnotationReport(keys[name], Status.INVALID, why)
    return dataclasses.replace(result, report=tuple(report[n] for n in sorted(report)))


def _ok(full: str, spec: Annotation) -> AnnotationReport:
    if spec.support is Support.DIFFERENT:
        return AnnotationReport(full, Status.DIFFERENT, spec.difference)
    return AnnotationReport(full, Status.SUPPORTED)


def _same_namespace(value: Any, namespace: str, _: Mapping[str, Any]) -> bool:
    return value[0] in (None, namespace)


#: Annotations supported with a difference, and when their value makes it moot (the report then
#: says "supported"): ``(value, Ingress namespace, every parsed value) -> bool``.
_NO_DIFFERENCE: dict[str, Any] = {
    "use-regex": lambda value, ns, others: value is False,
    "auth-secret": _same_namespace,
    "proxy-ssl-secret": _same_namespace,
    "auth-proxy-set-headers": _same_namespace,
    "proxy-ssl-verify": lambda value, ns, others: value is False or "proxy-ssl-name" in others,
    "custom-http-errors": lambda value, ns, others: "default-backend" in others,
    # Allowed (else "not allowed"): they behave as in ingress-nginx.
    "configuration-snippet": lambda value, ns, others: True,
    "server-snippet": lambda value, ns, others: True,
    "modsecurity-snippet": lambda value, ns, others: True,
}

#: Snippets of which a parsed subset is accepted without ``--allow-snippet-annotations``:
#: name -> the parser of that subset (its value is re-rendered from the parsed form).
_SAFE_SUBSETS: dict[str, Callable[[str], str]] = {"modsecurity-snippet": modsecurity.safe_rules}
