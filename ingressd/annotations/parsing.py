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
instead); then the values are combined (cross-annotation rules: ``cors-*`` needs
``enable-cors``, ``auth-type`` needs ``auth-secret``, ...), and whatever has no effect is
reported as ignored.  Nothing raises: every problem is in ``report``.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ingressd.annotations import values as v
from ingressd.annotations.table import ANNOTATIONS, DEFAULT_PREFIX, Annotation, Support
from ingressd.backend_policy import (
    AffinityMode,
    BackendPolicy,
    CookieAffinity,
    LoadBalance,
    TrafficShaping,
)
from ingressd.location_settings import (
    BackendProtocol,
    Cors,
    LocationSettings,
    ProxySSL,
    RateLimits,
    Redirect,
)

__all__ = [
    "AnnotationOptions",
    "AnnotationReport",
    "AuthRequest",
    "IngressAnnotations",
    "Status",
    "parse_annotations",
]

T = TypeVar("T")


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
class AuthRequest:
    """``auth-type: basic`` + ``auth-secret`` (+ ``auth-secret-type``, ``auth-realm``)."""

    #: ``None``: the Ingress's namespace.
    namespace: str | None
    name: str
    secret_type: str = "auth-file"
    realm: str = ""


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
    policy: BackendPolicy = field(default_factory=BackendPolicy)
    #: Set on a canary Ingress (``canary: "true"``).
    canary: TrafficShaping | None = None
    report: tuple[AnnotationReport, ...] = ()

    @property
    def problems(self) -> tuple[AnnotationReport, ...]:
        return tuple(r for r in self.report if r.status.is_problem)


class _Values:
    """Parsed values by annotation name, with typed getters and a record of what was used."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.ignored: dict[str, str] = {}
        self.invalid: dict[str, str] = {}

    def has(self, name: str) -> bool:
        return name in self.values

    def get(self, name: str, kind: type[T]) -> T | None:
        value = self.values.get(name)
        if value is None:
            return None
        assert isinstance(value, kind), (name, value)
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.get(name, bool)
        return default if value is None else value

    def refuse(self, name: str, because: str) -> None:
        """A value valid alone but not with the others: reported invalid and left out."""
        self.values.pop(name, None)
        self.invalid[name] = because

    def ignore(self, because: str, *names: str) -> None:
        for name in names:
            if name in self.values:
                self.ignored.setdefault(name, because)


def _zone(key: str) -> str:
    return "ingress_" + hashlib.sha256(key.encode()).hexdigest()[:16]


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
        if spec.group.value == "snippet" and not options.allow_snippets:
            report[name] = AnnotationReport(
                full, Status.NOT_ALLOWED,
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
        report[name] = _ok(full, spec)

    namespace = key.partition("/")[0]
    for name, value in parsed.items():
        moot = _NO_DIFFERENCE.get(name)
        if report[name].status is Status.DIFFERENT and moot and moot(value, namespace, parsed):
            report[name] = AnnotationReport(report[name].key, Status.SUPPORTED)
    vals = _Values(parsed)
    canary = _canary(vals)
    if canary is not None:
        for name in parsed:
            if not ANNOTATIONS[name].on_canary:
                vals.ignore("ignored on a canary Ingress: the main Ingress's settings apply", name)
        denied = []
    else:
        vals.ignore("has no effect without canary: \"true\"", *(
            n for n in parsed if ANNOTATIONS[n].group.value == "canary" and n != "canary"
        ))
    settings = _location(vals, key)
    if denied and canary is None:
        settings = LocationSettings(denied="; ".join(denied))
    auth = _auth(vals)
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
        policy=_policy(vals),
        canary=canary,
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
    "proxy-ssl-verify": lambda value, ns, others: value is False or "proxy-ssl-name" in others,
    "custom-http-errors": lambda value, ns, others: "default-backend" in others,
    # Allowed (else "not allowed"): they behave as in ingress-nginx.
    "configuration-snippet": lambda value, ns, others: True,
    "server-snippet": lambda value, ns, others: True,
}


# --- combining values ------------------------------------------------------------------------


def _location(vals: _Values, key: str) -> LocationSettings:
    g = vals.get
    redirect = None
    temporal, permanent = g("temporal-redirect", str), g("permanent-redirect", str)
    if temporal is not None:
        redirect = Redirect(g("temporal-redirect-code", int) or 302, temporal)
        vals.ignore("temporal-redirect takes precedence", "permanent-redirect",
                    "permanent-redirect-code")
    else:
        vals.ignore("has no effect without temporal-redirect", "temporal-redirect-code")
        if permanent is not None:
            redirect = Redirect(g("permanent-redirect-code", int) or 301, permanent)
        else:
            vals.ignore("has no effect without permanent-redirect", "permanent-redirect-code")

    allow = (g("whitelist-source-range", tuple) or ()) + (g("allowlist-source-range", tuple) or ())
    limits = None
    rps, rpm, conns = g("limit-rps", int), g("limit-rpm", int), g("limit-connections", int)
    rate, rate_after = g("limit-rate", int), g("limit-rate-after", int)
    if rps or rpm or conns or rate is not None or rate_after is not None:
        limits = RateLimits(
            zone=_zone(key),
            rps=rps or None,
            rpm=rpm or None,
            connections=conns or None,
            burst_multiplier=g("limit-burst-multiplier", int) or 5,
            rate=rate,
            rate_after=rate_after,
        )
    elif vals.has("limit-burst-multiplier"):
        vals.ignore("has no effect without limit-rps or limit-rpm", "limit-burst-multiplier")

    cors = None
    cors_names = ("cors-allow-origin", "cors-allow-methods", "cors-allow-headers",
                  "cors-expose-headers", "cors-allow-credentials", "cors-max-age")
    if vals.flag("enable-cors"):
        base = Cors()
        methods = g("cors-allow-methods", tuple)
        headers = g("cors-allow-headers", tuple)
        expose = g("cors-expose-headers", tuple)
        credentials = g("cors-allow-credentials", bool)
        max_age = g("cors-max-age", int)
        cors = Cors(
            origins=g("cors-allow-origin", tuple) or base.origins,
            methods=", ".join(methods) if methods else base.methods,
            headers=", ".join(headers) if headers else base.headers,
            expose_headers=", ".join(expose) if expose else "",
            credentials=base.credentials if credentials is None else credentials,
            max_age=base.max_age if max_age is None else max_age,
        )
    else:
        vals.ignore("has no effect without enable-cors: \"true\"", *cors_names)

    proxy_ssl = None
    ssl_names = ("proxy-ssl-verify", "proxy-ssl-verify-depth", "proxy-ssl-name",
                 "proxy-ssl-server-name", "proxy-ssl-ciphers", "proxy-ssl-protocols",
                 "proxy-ssl-secret")
    if any(vals.has(n) for n in ssl_names):
        proxy_ssl = ProxySSL(
            verify=vals.flag("proxy-ssl-verify"),
            name=g("proxy-ssl-name", str),
            server_name=vals.flag("proxy-ssl-server-name"),
            verify_depth=g("proxy-ssl-verify-depth", int) or 1,
            ciphers=g("proxy-ssl-ciphers", str),
            protocols=g("proxy-ssl-protocols", tuple) or (),
        )

    protocol = g("backend-protocol", str)
    codes = g("custom-http-errors", tuple) or ()
    if codes and not vals.has("default-backend"):
        codes = ()
    return LocationSettings(
        body_size=g("proxy-body-size", str),
        client_body_buffer_size=g("client-body-buffer-size", str),
        connect_timeout=g("proxy-connect-timeout", str),
        send_timeout=g("proxy-send-timeout", str),
        read_timeout=g("proxy-read-timeout", str),
        buffering=g("proxy-buffering", bool),
        request_buffering=g("proxy-request-buffering", bool),
        buffer_size=g("proxy-buffer-size", str),
        buffers_number=g("proxy-buffers-number", int),
        busy_buffers_size=g("proxy-busy-buffers-size", str),
        max_temp_file_size=g("proxy-max-temp-file-size", str),
        http_version=g("proxy-http-version", str),
        connection_header=g("connection-proxy-header", str),
        next_upstream=g("proxy-next-upstream", tuple) or (),
        next_upstream_tries=g("proxy-next-upstream-tries", int),
        next_upstream_timeout=g("proxy-next-upstream-timeout", str),
        rewrite_target=g("rewrite-target", str),
        redirect=redirect,
        custom_http_errors=codes,
        upstream_vhost=g("upstream-vhost", str),
        x_forwarded_prefix=g("x-forwarded-prefix", str),
        ssl_redirect=g("ssl-redirect", bool),
        force_ssl_redirect=vals.flag("force-ssl-redirect"),
        backend_protocol=BackendProtocol(protocol) if protocol else BackendProtocol.HTTP,
        proxy_ssl=proxy_ssl,
        allow=tuple(dict.fromkeys(allow)),
        deny=g("denylist-source-range", tuple) or (),
        limits=limits,
        satisfy_any=g("satisfy", str) == "any",
        cors=cors,
        access_log=g("enable-access-log", bool),
        rewrite_log=vals.flag("enable-rewrite-log"),
        snippet=g("configuration-snippet", str),
    )


def _auth(vals: _Values) -> AuthRequest | None:
    names = ("auth-secret", "auth-secret-type", "auth-realm")
    if not vals.has("auth-type"):
        vals.ignore("has no effect without auth-type: basic", *names)
        return None
    ref = vals.get("auth-secret", tuple)
    if ref is None:
        return None
    namespace, name = ref
    return AuthRequest(
        namespace=namespace,
        name=name,
        secret_type=vals.get("auth-secret-type", str) or "auth-file",
        realm=vals.get("auth-realm", str) or "",
    )


def _policy(vals: _Values) -> BackendPolicy:
    affinity = None
    cookie_names = ("affinity-mode", "session-cookie-name", "session-cookie-path",
                    "session-cookie-max-age", "session-cookie-expires", "session-cookie-samesite",
                    "session-cookie-secure", "session-cookie-change-on-failure")
    if vals.get("affinity", str) == "cookie":
        g = vals.get
        affinity = CookieAffinity(
            name=g("session-cookie-name", str) or "INGRESSCOOKIE",
            mode=AffinityMode(g("affinity-mode", str) or "balanced"),
            path=g("session-cookie-path", str),
            max_age=g("session-cookie-max-age", int),
            expires=g("session-cookie-expires", int),
            samesite=g("session-cookie-samesite", str),
            secure=vals.flag("session-cookie-secure"),
            change_on_failure=vals.flag("session-cookie-change-on-failure"),
        )
        vals.ignore("affinity takes precedence", "upstream-hash-by", "load-balance")
    else:
        vals.ignore("has no effect without affinity: cookie", *cookie_names)
    hash_by = "" if affinity else (vals.get("upstream-hash-by", str) or "")
    if hash_by and vals.has("load-balance"):
        vals.ignore("upstream-hash-by takes precedence over load-balance", "load-balance")
    return BackendPolicy(
        load_balance=LoadBalance(vals.get("load-balance", str) or "round_robin"),
        hash_by=hash_by,
        affinity=affinity,
    )


def _canary(vals: _Values) -> TrafficShaping | None:
    if not vals.flag("canary"):
        return None
    total = vals.get("canary-weight-total", int) or 100
    weight = vals.get("canary-weight", int) or 0
    if weight > total:
        vals.refuse("canary-weight", f"must not exceed canary-weight-total ({total})")
        weight = 0
    header = vals.get("canary-by-header", str) or ""
    value = vals.get("canary-by-header-value", str) or ""
    pattern = vals.get("canary-by-header-pattern", str) or ""
    if not header:
        vals.ignore("has no effect without canary-by-header", "canary-by-header-value",
                    "canary-by-header-pattern")
        value = pattern = ""
    elif value and pattern:
        vals.ignore("canary-by-header-value takes precedence", "canary-by-header-pattern")
        pattern = ""
    return TrafficShaping(
        weight=weight,
        weight_total=total,
        header=header,
        header_value=value,
        header_pattern=pattern,
        cookie=vals.get("canary-by-cookie", str) or "",
    )
