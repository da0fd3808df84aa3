"""Combining: the parsed values of one Ingress's annotations -> the typed settings.  Pure.

    Values (annotation name -> parsed value, from ``ingressd.annotations.parsing``)
        --location(vals, key)--> LocationSettings  (redirects, allow/deny, rate limits with
                                                    their zone, CORS, proxy-ssl, timeouts, ...)
        --auth(vals)-----------> AuthRequest        (auth-type basic + auth-secret), or None
        --client_auth(vals)----> ClientAuthRequest  (auth-tls-secret + auth-tls-*), or None
        --policy(vals)---------> BackendPolicy      (cookie affinity, upstream-hash-by,
                                                    load-balance)
        --canary(vals)---------> TrafficShaping     when ``canary: "true"``, else None
    and, on ``vals``: ``ignored`` (valid, but without effect next to the others: ``cors-*``
    without ``enable-cors``, ...) and ``invalid`` (valid alone, not together: a
    ``canary-weight`` above ``canary-weight-total``)

Each function reads the values its result needs, applies the cross-annotation rules and the
ingress-nginx defaults, and records on ``vals`` what it left out and why; ``parse_annotations``
turns those records into the report.  Nothing raises.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, TypeVar

from ingressd.annotations.values import size_in_bytes
from ingressd.model.policy import (
    AffinityMode,
    BackendPolicy,
    CookieAffinity,
    LoadBalance,
    TrafficShaping,
)
from ingressd.model.settings import (
    BackendProtocol,
    Cors,
    ExternalAuth,
    LocationSettings,
    ModSecurity,
    ProxySSL,
    RateLimits,
    Redirect,
)

__all__ = [
    "AuthRequest",
    "ClientAuthRequest",
    "Values",
    "auth",
    "canary",
    "client_auth",
    "location",
    "policy",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """``auth-type: basic`` + ``auth-secret`` (+ ``auth-secret-type``, ``auth-realm``)."""

    #: ``None``: the Ingress's namespace.
    namespace: str | None
    name: str
    secret_type: str = "auth-file"
    realm: str = ""


@dataclass(frozen=True, slots=True)
class ClientAuthRequest:
    """``auth-tls-secret`` (CA bundle, optional CRL) and the ``auth-tls-*`` settings, with
    ingress-nginx's defaults; the builder reads the Secret into ``model.ClientAuth``."""

    #: ``None``: the Ingress's namespace.
    namespace: str | None
    name: str
    verify: str = "on"
    depth: int = 1
    error_page: str | None = None
    pass_certificate: bool = False
    match_cn: str | None = None


class Values:
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


#: nginx's defaults where no annotation sets them: one page (4k on x86_64) per buffer, and
#: ``proxy_buffers 4`` as ``ingressd.nginx.directives`` writes it when only a size is given.
_PAGE = 4096


def _check_buffers(vals: Values) -> None:
    """nginx's rules between the buffer annotations, each valid alone (``nginx -t`` refuses a
    configuration that breaks one).  The annotation that breaks a rule is refused."""
    g = vals.get
    size_text, number = g("proxy-buffer-size", str), g("proxy-buffers-number", int)
    if number is not None and number < 2:
        vals.refuse("proxy-buffers-number", "nginx needs at least 2 proxy buffers")
        number = None
    if size_text is None and number is None:
        size, count = _PAGE, 8  # nginx's own proxy_buffer_size and proxy_buffers
    else:
        size = size_in_bytes(size_text) if size_text is not None else _PAGE
        count = number if number is not None else 4
    all_but_one = (count - 1) * size
    busy_text = g("proxy-busy-buffers-size", str)
    busy = size_in_bytes(busy_text) if busy_text is not None else 2 * size
    if busy_text is not None and not size <= busy <= all_but_one:
        vals.refuse(
            "proxy-busy-buffers-size",
            f"must be between the buffer size ({size} bytes) and the size of all proxy "
            f"buffers minus one ({all_but_one} bytes), as nginx requires",
        )
        busy_text, busy = None, 2 * size
    if busy_text is None and busy > all_but_one and number is not None:
        # nginx's default busy size (two buffers) and its temp_file_write_size need 3 buffers
        vals.refuse(
            "proxy-buffers-number",
            f"{count} buffers of {size} bytes leave less than two for nginx's default "
            "busy-buffers size: use 3 or more, or set proxy-busy-buffers-size",
        )
    max_temp = g("proxy-max-temp-file-size", str)
    if max_temp is not None and size_in_bytes(max_temp) and size_in_bytes(max_temp) < size:
        vals.refuse(
            "proxy-max-temp-file-size",
            f"must be 0 or at least the buffer size ({size} bytes), as nginx requires",
        )


def location(vals: Values, key: str) -> LocationSettings:
    g = vals.get
    redirect = None
    temporal, permanent = g("temporal-redirect", str), g("permanent-redirect", str)
    if temporal is not None:
        redirect = Redirect(g("temporal-redirect-code", int) or 302, temporal)
        vals.ignore(
            "temporal-redirect takes precedence", "permanent-redirect", "permanent-redirect-code"
        )
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
    cors_names = (
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
    )
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
        vals.ignore('has no effect without enable-cors: "true"', *cors_names)

    proxy_ssl = None
    ssl_names = (
        "proxy-ssl-verify",
        "proxy-ssl-verify-depth",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
        "proxy-ssl-ciphers",
        "proxy-ssl-protocols",
        "proxy-ssl-secret",
    )
    if any(vals.has(n) for n in ssl_names):
        proxy_ssl = ProxySSL(
            verify=vals.flag("proxy-ssl-verify"),
            name=g("proxy-ssl-name", str),
            server_name=vals.flag("proxy-ssl-server-name"),
            verify_depth=g("proxy-ssl-verify-depth", int) or 1,
            ciphers=g("proxy-ssl-ciphers", str),
            protocols=g("proxy-ssl-protocols", tuple) or (),
        )

    _check_buffers(vals)
    protocol = g("backend-protocol", str)
    # without default-backend the build sends them to --default-backend-service (or drops them)
    codes = g("custom-http-errors", tuple) or ()
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
        preserve_trailing_slash=vals.flag("preserve-trailing-slash"),
        backend_protocol=BackendProtocol(protocol) if protocol else BackendProtocol.HTTP,
        proxy_ssl=proxy_ssl,
        allow=tuple(dict.fromkeys(allow)),
        deny=g("denylist-source-range", tuple) or (),
        limits=limits,
        satisfy_any=g("satisfy", str) == "any",
        cors=cors,
        access_log=g("enable-access-log", bool),
        rewrite_log=vals.flag("enable-rewrite-log"),
        proxy_redirect=_proxy_redirect(vals),
        cookie_domain=g("proxy-cookie-domain", tuple) or (),
        cookie_path=g("proxy-cookie-path", tuple) or (),
        snippet=g("configuration-snippet", str),
        external_auth=external_auth(vals),
        modsecurity=_modsecurity(vals),
    )


#: The annotations that tune ``auth-url``.
EXTERNAL_AUTH_OPTIONS = (
    "auth-method",
    "auth-signin",
    "auth-signin-redirect-param",
    "auth-response-headers",
    "auth-request-redirect",
    "auth-cache-key",
    "auth-cache-duration",
    "auth-always-set-cookie",
    "auth-keepalive",
    "auth-keepalive-share-vars",
    "auth-keepalive-requests",
    "auth-keepalive-timeout",
    "auth-proxy-set-headers",
)


def external_auth(vals: Values) -> ExternalAuth | None:
    """``auth-url`` and the annotations that tune it, with ingress-nginx's defaults."""
    url = vals.get("auth-url", str)
    if url is None:
        vals.ignore("has no effect without auth-url", *EXTERNAL_AUTH_OPTIONS)
        return None
    g = vals.get
    base = ExternalAuth(url=url)
    if not vals.has("auth-signin"):
        vals.ignore("has no effect without auth-signin", "auth-signin-redirect-param")
    if not vals.has("auth-cache-key"):
        vals.ignore("has no effect without auth-cache-key", "auth-cache-duration")
    keepalive = g("auth-keepalive", int) or 0
    if not keepalive:
        vals.ignore(
            "has no effect without auth-keepalive",
            "auth-keepalive-share-vars",
            "auth-keepalive-requests",
            "auth-keepalive-timeout",
        )
    return ExternalAuth(
        url=url,
        method=g("auth-method", str),
        signin=g("auth-signin", str),
        signin_redirect_param=g("auth-signin-redirect-param", str) or base.signin_redirect_param,
        response_headers=g("auth-response-headers", tuple) or (),
        request_redirect=g("auth-request-redirect", str),
        cache_key=g("auth-cache-key", str),
        cache_duration=g("auth-cache-duration", tuple) or base.cache_duration,
        always_set_cookie=vals.flag("auth-always-set-cookie"),
        keepalive=keepalive,
        keepalive_share_vars=vals.flag("auth-keepalive-share-vars"),
        keepalive_requests=g("auth-keepalive-requests", int) or base.keepalive_requests,
        keepalive_timeout=g("auth-keepalive-timeout", int) or base.keepalive_timeout,
    )


def _proxy_redirect(vals: Values) -> tuple[str, ...]:
    """ingress-nginx's rule: ``off`` / ``default`` from ``proxy-redirect-from`` alone, else
    the pair (``proxy-redirect-to: off`` writes nothing)."""
    source = vals.get("proxy-redirect-from", str)
    target = vals.get("proxy-redirect-to", str)
    if source is None:
        if target is not None:
            vals.ignore("has no effect without proxy-redirect-from", "proxy-redirect-to")
        return ()
    if source in ("off", "default"):
        if target is not None:
            vals.ignore(f"has no effect with proxy-redirect-from: {source}", "proxy-redirect-to")
        return (source,)
    if target is None or target == "off":
        vals.ignore("needs proxy-redirect-to", "proxy-redirect-from")
        return ()
    return (source, target)


def _modsecurity(vals: Values) -> ModSecurity | None:
    """The WAF annotations; they take effect where ModSecurity is on (this Ingress's
    ``enable-modsecurity`` or the ConfigMap's), which only the renderer knows."""
    names = (
        "enable-modsecurity",
        "enable-owasp-core-rules",
        "modsecurity-snippet",
        "modsecurity-transaction-id",
    )
    if not any(vals.has(n) for n in names):
        return None
    return ModSecurity(
        enable=vals.get("enable-modsecurity", bool),
        owasp_core_rules=vals.flag("enable-owasp-core-rules"),
        rules=vals.get("modsecurity-snippet", str),
        transaction_id=vals.get("modsecurity-transaction-id", str),
    )


def auth(vals: Values) -> AuthRequest | None:
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


def client_auth(vals: Values) -> ClientAuthRequest | None:
    names = (
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-error-page",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-match-cn",
    )
    ref = vals.get("auth-tls-secret", tuple)
    if ref is None:
        vals.ignore("has no effect without auth-tls-secret", *names)
        return None
    namespace, name = ref
    return ClientAuthRequest(
        namespace=namespace,
        name=name,
        verify=vals.get("auth-tls-verify-client", str) or "on",
        # 0 is ingress-nginx's "unset": its default depth 1
        depth=vals.get("auth-tls-verify-depth", int) or 1,
        error_page=vals.get("auth-tls-error-page", str),
        pass_certificate=vals.flag("auth-tls-pass-certificate-to-upstream"),
        match_cn=vals.get("auth-tls-match-cn", str),
    )


def policy(vals: Values) -> BackendPolicy:
    affinity = None
    cookie_names = (
        "affinity-mode",
        "session-cookie-name",
        "session-cookie-path",
        "session-cookie-max-age",
        "session-cookie-expires",
        "session-cookie-samesite",
        "session-cookie-secure",
        "session-cookie-change-on-failure",
        "session-cookie-domain",
    )
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
            domain=g("session-cookie-domain", str),
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


def canary(vals: Values) -> TrafficShaping | None:
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
        vals.ignore(
            "has no effect without canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
        )
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
