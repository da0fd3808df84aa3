"""The table: every ingress-nginx annotation ingressd knows, how far it is supported, its parser.

    ANNOTATIONS["proxy-body-size"] = Annotation(name, support, parser, difference, fail_closed)
        parser: str -> typed value, or raises values.InvalidValue   (pure)
        -> parsing.parse_annotations() runs the parsers of an Ingress's annotations
        -> ``ingressd check`` prints each annotation's support

Names are without the prefix (``--annotations-prefix``, default ``nginx.ingress.kubernetes.io``).
``fail_closed``: when the value is invalid (or, for an unsupported one, present at all) the
Ingress's locations answer 503 instead of proxying, because ignoring it would expose what it
protects (access lists, authentication, backend TLS verification).  Everything else that is
invalid is ignored with a Problem and its default applies.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ingressd.annotations import extauth, modsecurity, patterns, urls
from ingressd.annotations import values as v
from ingressd.model.validation import validate_service_name

__all__ = ["ANNOTATIONS", "DEFAULT_PREFIX", "Annotation", "Group", "Risk", "Support"]

DEFAULT_PREFIX = "nginx.ingress.kubernetes.io"

#: Longest snippet accepted.
MAX_SNIPPET_LENGTH = 16384


class Support(enum.Enum):
    SUPPORTED = "supported"
    DIFFERENT = "supported with a difference"
    UNSUPPORTED = "unsupported"


class Risk(enum.IntEnum):
    """ingress-nginx's risk level of an annotation (1.12+, ``annotationsRiskLevel``).

    ``--annotations-risk-level`` (default High) refuses the annotations above it.
    """

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        return self.name.capitalize()

    @classmethod
    def parse(cls, text: str) -> Risk:
        """``Low``, ``Medium``, ``High`` or ``Critical`` (any case)."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError("expected Low, Medium, High or Critical") from None


class Group(enum.Enum):
    ROUTING = "routing"
    TLS = "tls"
    PROXY = "proxy"
    ACCESS = "access"
    BALANCING = "balancing"
    CANARY = "canary"
    SNIPPET = "snippet"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Annotation:
    name: str
    group: Group
    support: Support
    #: ``None`` for unsupported annotations.
    parser: Callable[[str], Any] | None = None
    #: For ``DIFFERENT`` and ``UNSUPPORTED``: what a user migrating from ingress-nginx must know.
    difference: str = ""
    fail_closed: bool = False
    #: Applies on a canary Ingress too (ingress-nginx ignores the others there).
    on_canary: bool = False
    #: ingress-nginx's risk level; ``None`` for annotations ingress-nginx 1.12+ no longer has.
    risk: Risk | None = None


def _service_name(text: str) -> str:
    value = text.strip()
    reason = validate_service_name(value)
    if reason is not None:
        raise v.InvalidValue(f"must be a Service name in the Ingress's namespace: {reason}")
    return value


def _backend_protocol(text: str) -> str:
    value = text.strip().upper()
    if value in ("AJP", "FCGI", "AUTO_HTTP"):
        raise v.InvalidValue(f"{value} is not supported by ingressd (HTTP, HTTPS, GRPC, GRPCS)")
    return v.enumeration("HTTP", "HTTPS", "GRPC", "GRPCS")(text)


def _auth_type(text: str) -> str:
    if text.strip().lower() == "digest":
        raise v.InvalidValue("digest is not supported by ingressd (basic only)")
    return v.enumeration("basic")(text)


def _header_value(text: str) -> str:
    value = text.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.:/=+,@!*~-]{1,256}", value):
        raise v.InvalidValue("must be 1-256 of letters, digits and '_.:/=+,@!*~-'")
    return value


def _error_page(text: str) -> str:
    """``auth-tls-error-page``: an absolute http(s) URL without a fragment."""
    value = urls.redirect_url(text)
    if "#" in value:
        raise v.InvalidValue("must not have a fragment ('#')")
    return value


def _snippet(text: str) -> str:
    """nginx directives; only the block structure is checked (the whole text must stay inside
    the block it is written into), ``nginx -t`` checks the rest."""
    if len(text) > MAX_SNIPPET_LENGTH:
        raise v.InvalidValue(f"must be at most {MAX_SNIPPET_LENGTH} characters")
    if "\x00" in text:
        raise v.InvalidValue("must not contain NUL")
    depth = 0
    quote: str | None = None
    escaped = False
    comment = False
    for char in text:
        if comment:
            comment = char != "\n"
            continue
        if escaped:
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif quote is not None:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#":
            comment = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth < 0:
                raise v.InvalidValue("closes a block it did not open")
    if quote is not None:
        raise v.InvalidValue("has an unterminated quoted string")
    if depth != 0:
        raise v.InvalidValue("leaves a block open")
    return text


#: Risk levels as ingress-nginx 1.12+ assigns them (``internal/ingress/annotations/*/main.go``);
#: aliases (``whitelist-source-range``, ``limit-whitelist``) have their annotation's level.
_RISKS: dict[str, Risk] = {
    "affinity": Risk.LOW,
    "affinity-canary-behavior": Risk.LOW,
    "affinity-mode": Risk.MEDIUM,
    "allowlist-source-range": Risk.MEDIUM,
    "app-root": Risk.MEDIUM,
    "auth-always-set-cookie": Risk.LOW,
    "auth-cache-duration": Risk.MEDIUM,
    "auth-cache-key": Risk.MEDIUM,
    "auth-keepalive": Risk.LOW,
    "auth-keepalive-requests": Risk.LOW,
    "auth-keepalive-share-vars": Risk.LOW,
    "auth-keepalive-timeout": Risk.LOW,
    "auth-method": Risk.LOW,
    "auth-proxy-set-headers": Risk.MEDIUM,
    "auth-realm": Risk.MEDIUM,
    "auth-request-redirect": Risk.MEDIUM,
    "auth-response-headers": Risk.MEDIUM,
    "auth-secret": Risk.MEDIUM,
    "auth-secret-type": Risk.LOW,
    "auth-signin": Risk.HIGH,
    "auth-signin-redirect-param": Risk.MEDIUM,
    "auth-snippet": Risk.CRITICAL,
    "auth-tls-error-page": Risk.HIGH,
    "auth-tls-match-cn": Risk.HIGH,
    "auth-tls-pass-certificate-to-upstream": Risk.LOW,
    "auth-tls-secret": Risk.MEDIUM,
    "auth-tls-verify-client": Risk.MEDIUM,
    "auth-tls-verify-depth": Risk.LOW,
    "auth-type": Risk.LOW,
    "auth-url": Risk.HIGH,
    "backend-protocol": Risk.LOW,
    "canary": Risk.LOW,
    "canary-by-cookie": Risk.MEDIUM,
    "canary-by-header": Risk.MEDIUM,
    "canary-by-header-pattern": Risk.MEDIUM,
    "canary-by-header-value": Risk.MEDIUM,
    "canary-weight": Risk.LOW,
    "canary-weight-total": Risk.LOW,
    "client-body-buffer-size": Risk.LOW,
    "configuration-snippet": Risk.CRITICAL,
    "connection-proxy-header": Risk.LOW,
    "cors-allow-credentials": Risk.LOW,
    "cors-allow-headers": Risk.MEDIUM,
    "cors-allow-methods": Risk.MEDIUM,
    "cors-allow-origin": Risk.MEDIUM,
    "cors-expose-headers": Risk.MEDIUM,
    "cors-max-age": Risk.LOW,
    "custom-headers": Risk.MEDIUM,
    "custom-http-errors": Risk.LOW,
    "default-backend": Risk.LOW,
    "denylist-source-range": Risk.MEDIUM,
    "disable-proxy-intercept-errors": Risk.LOW,
    "enable-access-log": Risk.LOW,
    "enable-cors": Risk.LOW,
    "enable-global-auth": Risk.LOW,
    "enable-modsecurity": Risk.LOW,
    "enable-opentelemetry": Risk.LOW,
    "enable-owasp-core-rules": Risk.LOW,
    "enable-rewrite-log": Risk.LOW,
    "fastcgi-index": Risk.MEDIUM,
    "fastcgi-params-configmap": Risk.MEDIUM,
    "force-ssl-redirect": Risk.MEDIUM,
    "from-to-www-redirect": Risk.LOW,
    "http2-push-preload": Risk.LOW,
    "limit-allowlist": Risk.LOW,
    "limit-burst-multiplier": Risk.LOW,
    "limit-connections": Risk.LOW,
    "limit-rate": Risk.LOW,
    "limit-rate-after": Risk.LOW,
    "limit-rpm": Risk.LOW,
    "limit-rps": Risk.LOW,
    "limit-whitelist": Risk.LOW,
    "load-balance": Risk.LOW,
    "mirror-host": Risk.HIGH,
    "mirror-request-body": Risk.LOW,
    "mirror-target": Risk.HIGH,
    "modsecurity-snippet": Risk.CRITICAL,
    "modsecurity-transaction-id": Risk.HIGH,
    "opentelemetry-operation-name": Risk.MEDIUM,
    "opentelemetry-trust-incoming-span": Risk.LOW,
    "permanent-redirect": Risk.MEDIUM,
    "permanent-redirect-code": Risk.LOW,
    "preserve-trailing-slash": Risk.MEDIUM,
    "proxy-body-size": Risk.MEDIUM,
    "proxy-buffer-size": Risk.LOW,
    "proxy-buffering": Risk.LOW,
    "proxy-buffers-number": Risk.LOW,
    "proxy-busy-buffers-size": Risk.LOW,
    "proxy-connect-timeout": Risk.LOW,
    "proxy-cookie-domain": Risk.MEDIUM,
    "proxy-cookie-path": Risk.MEDIUM,
    "proxy-http-version": Risk.LOW,
    "proxy-max-temp-file-size": Risk.LOW,
    "proxy-next-upstream": Risk.MEDIUM,
    "proxy-next-upstream-timeout": Risk.LOW,
    "proxy-next-upstream-tries": Risk.LOW,
    "proxy-read-timeout": Risk.LOW,
    "proxy-redirect-from": Risk.MEDIUM,
    "proxy-redirect-to": Risk.MEDIUM,
    "proxy-request-buffering": Risk.LOW,
    "proxy-send-timeout": Risk.LOW,
    "proxy-ssl-ciphers": Risk.MEDIUM,
    "proxy-ssl-name": Risk.HIGH,
    "proxy-ssl-protocols": Risk.LOW,
    "proxy-ssl-secret": Risk.MEDIUM,
    "proxy-ssl-server-name": Risk.LOW,
    "proxy-ssl-verify": Risk.LOW,
    "proxy-ssl-verify-depth": Risk.LOW,
    "relative-redirects": Risk.LOW,
    "rewrite-target": Risk.MEDIUM,
    "satisfy": Risk.LOW,
    "server-alias": Risk.HIGH,
    "server-snippet": Risk.CRITICAL,
    "service-upstream": Risk.LOW,
    "session-cookie-change-on-failure": Risk.LOW,
    "session-cookie-conditional-samesite-none": Risk.LOW,
    "session-cookie-domain": Risk.MEDIUM,
    "session-cookie-expires": Risk.MEDIUM,
    "session-cookie-max-age": Risk.MEDIUM,
    "session-cookie-name": Risk.MEDIUM,
    "session-cookie-path": Risk.MEDIUM,
    "session-cookie-samesite": Risk.LOW,
    "session-cookie-secure": Risk.LOW,
    "ssl-ciphers": Risk.LOW,
    "ssl-passthrough": Risk.LOW,
    "ssl-prefer-server-ciphers": Risk.LOW,
    "ssl-redirect": Risk.LOW,
    "stream-snippet": Risk.CRITICAL,
    "temporal-redirect": Risk.MEDIUM,
    "temporal-redirect-code": Risk.LOW,
    "upstream-hash-by": Risk.HIGH,
    "upstream-hash-by-subset": Risk.LOW,
    "upstream-hash-by-subset-size": Risk.LOW,
    "upstream-vhost": Risk.LOW,
    "use-port-in-redirects": Risk.LOW,
    "use-regex": Risk.LOW,
    "whitelist-source-range": Risk.MEDIUM,
    "x-forwarded-prefix": Risk.MEDIUM,
}


_S, _D, _U = Support.SUPPORTED, Support.DIFFERENT, Support.UNSUPPORTED
_MAX_INT = 2**31 - 1


def _a(
    name: str,
    group: Group,
    support: Support,
    parser: Callable[[str], Any] | None = None,
    difference: str = "",
    *,
    fail_closed: bool = False,
    on_canary: bool = False,
) -> Annotation:
    return Annotation(
        name, group, support, parser, difference, fail_closed, on_canary, _RISKS.get(name)
    )


_R, _T, _P, _A, _B, _C, _N, _O = (
    Group.ROUTING,
    Group.TLS,
    Group.PROXY,
    Group.ACCESS,
    Group.BALANCING,
    Group.CANARY,
    Group.SNIPPET,
    Group.OTHER,
)

_TABLE: tuple[Annotation, ...] = (
    # routing and rewriting
    _a("rewrite-target", _R, _S, patterns.rewrite_target),
    _a(
        "use-regex",
        _R,
        _D,
        v.boolean,
        "only the paths of the Ingress that sets it (or rewrite-target) become regular "
        "expressions; ingress-nginx turns every path of the host into one",
    ),
    _a("app-root", _R, _S, v.path),
    _a("permanent-redirect", _R, _S, urls.redirect_url),
    _a("permanent-redirect-code", _R, _S, v.integer(300, 308)),
    _a("temporal-redirect", _R, _S, urls.redirect_url),
    _a("temporal-redirect-code", _R, _S, v.integer(300, 308)),
    _a("server-alias", _R, _S, v.host_list),
    _a("default-backend", _R, _S, _service_name),
    _a(
        "custom-http-errors",
        _R,
        _D,
        v.http_codes,
        "without default-backend on the same Ingress it needs --default-backend-service "
        "(ingress-nginx then sends the errors to its built-in 404 server)",
    ),
    _a("upstream-vhost", _R, _S, urls.upstream_vhost),
    _a("x-forwarded-prefix", _R, _S, v.path),
    _a(
        "from-to-www-redirect",
        _R,
        _D,
        v.boolean,
        "the 308 keeps a final '/' of the URI (ingress-nginx drops it); with --routing lua "
        "the redirected name is a server block of its own (a reload when it appears)",
    ),
    _a("preserve-trailing-slash", _R, _S, v.boolean),
    _a("use-port-in-redirects", _R, _U),
    # TLS
    _a("ssl-redirect", _T, _S, v.boolean),
    _a("force-ssl-redirect", _T, _S, v.boolean),
    _a("backend-protocol", _T, _S, _backend_protocol),
    _a(
        "proxy-ssl-secret",
        _T,
        _D,
        v.auth_secret_ref,
        "only Secrets in the Ingress's own namespace",
        fail_closed=True,
    ),
    _a(
        "proxy-ssl-verify",
        _T,
        _D,
        v.on_off,
        "without proxy-ssl-name the pod certificate is checked against "
        "<service>.<namespace>.svc (ingress-nginx checks 'upstream_balancer')",
        fail_closed=True,
    ),
    _a("proxy-ssl-verify-depth", _T, _S, v.integer(1, 10), fail_closed=True),
    _a("proxy-ssl-name", _T, _S, urls.upstream_vhost, fail_closed=True),
    _a("proxy-ssl-server-name", _T, _S, v.on_off),
    _a("proxy-ssl-ciphers", _T, _S, v.ciphers, fail_closed=True),
    _a("proxy-ssl-protocols", _T, _S, v.ssl_protocols, fail_closed=True),
    _a(
        "auth-tls-secret",
        _T,
        _D,
        v.auth_secret_ref,
        "only Secrets in the Ingress's own namespace; the Ingress needs a host (the catch-all "
        "server cannot ask for client certificates); plain HTTP requests are refused (400) "
        "when verification is on, except ACME challenges",
        fail_closed=True,
    ),
    # invalid: reported, and the default applies (on, depth 1: the strictest), as ingress-nginx
    _a("auth-tls-verify-client", _T, _S, v.enumeration("on", "off", "optional", "optional_no_ca")),
    _a("auth-tls-verify-depth", _T, _S, v.integer(0, 100)),
    _a(
        "auth-tls-error-page",
        _T,
        _D,
        _error_page,
        "an absolute http(s) URL only (ingress-nginx also takes a path or a named location)",
    ),
    _a("auth-tls-pass-certificate-to-upstream", _T, _S, v.boolean),
    _a("auth-tls-match-cn", _T, _S, patterns.common_name, fail_closed=True),
    _a(
        "ssl-passthrough",
        _T,
        _D,
        v.boolean,
        difference="needs --enable-ssl-passthrough, as in ingress-nginx; the HTTPS port is then "
        "nginx's stream module reading the SNI name (no proxy in the controller process), and "
        "the host's rule's / path (else its first path) names the Service",
    ),
    _a(
        "ssl-ciphers",
        _T,
        _D,
        v.ciphers,
        "with --routing lua the host gets a server block of its own (a reload when it "
        "appears), as with server-snippet",
    ),
    _a(
        "ssl-prefer-server-ciphers",
        _T,
        _D,
        v.boolean,
        "with --routing lua the host gets a server block of its own, as with ssl-ciphers",
    ),
    # proxy tuning
    _a("proxy-body-size", _P, _S, v.size),
    _a("client-body-buffer-size", _P, _S, v.buffer_size),
    _a("proxy-connect-timeout", _P, _S, v.seconds),
    _a("proxy-send-timeout", _P, _S, v.seconds),
    _a("proxy-read-timeout", _P, _S, v.seconds),
    _a("proxy-next-upstream", _P, _S, v.next_upstream),
    _a("proxy-next-upstream-tries", _P, _S, v.integer(0, 100)),
    _a("proxy-next-upstream-timeout", _P, _S, v.seconds),
    _a("proxy-request-buffering", _P, _S, v.on_off),
    _a("proxy-buffering", _P, _S, v.on_off),
    _a("proxy-buffers-number", _P, _S, v.integer(1, 64)),
    _a("proxy-buffer-size", _P, _S, v.buffer_size),
    _a("proxy-busy-buffers-size", _P, _S, v.buffer_size),
    _a("proxy-max-temp-file-size", _P, _S, v.buffer_size),
    _a("proxy-http-version", _P, _S, v.enumeration("1.0", "1.1")),
    _a("connection-proxy-header", _P, _S, v.token),
    _a("enable-access-log", _P, _S, v.boolean),
    _a("enable-rewrite-log", _P, _S, v.boolean),
    _a("proxy-redirect-from", _P, _S, v.proxy_redirect_url),
    _a("proxy-redirect-to", _P, _S, v.proxy_redirect_url),
    _a("proxy-cookie-domain", _P, _S, v.cookie_rewrite),
    _a("proxy-cookie-path", _P, _S, v.cookie_rewrite),
    _a(
        "service-upstream",
        _P,
        _D,
        v.boolean,
        "its backend is named <namespace>-<service>-<port>-cluster-ip, so Ingresses with and "
        "without it on one Service keep their own upstreams",
    ),
    _a(
        "custom-headers",
        _P,
        _D,
        v.auth_secret_ref,
        "only ConfigMaps in the Ingress's own namespace",
        fail_closed=True,
    ),
    _a("disable-proxy-intercept-errors", _P, _U),
    # access
    _a("whitelist-source-range", _A, _S, v.cidr_list, fail_closed=True),
    _a("allowlist-source-range", _A, _S, v.cidr_list, fail_closed=True),
    _a("denylist-source-range", _A, _S, v.cidr_list, fail_closed=True),
    _a("limit-rps", _A, _S, v.integer(0, 1_000_000)),
    _a("limit-rpm", _A, _S, v.integer(0, 60_000_000)),
    _a("limit-connections", _A, _S, v.integer(0, 65535)),  # nginx's limit_conn maximum
    _a("limit-burst-multiplier", _A, _S, v.integer(1, 1000)),
    _a("limit-rate", _A, _S, v.integer(0, 10_000_000)),
    _a("limit-rate-after", _A, _S, v.integer(0, 10_000_000)),
    _a("limit-whitelist", _A, _U),
    _a("limit-allowlist", _A, _U),
    _a("global-rate-limit", _A, _U),
    _a("global-rate-limit-window", _A, _U),
    _a("global-rate-limit-key", _A, _U),
    _a("global-rate-limit-ignored-cidrs", _A, _U),
    _a("auth-type", _A, _S, _auth_type, fail_closed=True),
    _a(
        "auth-secret",
        _A,
        _D,
        v.auth_secret_ref,
        "only Secrets in the Ingress's own namespace",
        fail_closed=True,
    ),
    _a("auth-secret-type", _A, _S, v.enumeration("auth-file", "auth-map"), fail_closed=True),
    _a("auth-realm", _A, _S, v.realm, fail_closed=True),
    _a("satisfy", _A, _S, v.enumeration("all", "any")),
    _a("auth-url", _A, _S, extauth.auth_url, fail_closed=True),
    _a("auth-method", _A, _S, extauth.auth_method, fail_closed=True),
    _a("auth-signin", _A, _S, extauth.signin_url),
    _a("auth-signin-redirect-param", _A, _S, extauth.redirect_param),
    _a("auth-response-headers", _A, _S, v.header_list, fail_closed=True),
    _a(
        "auth-proxy-set-headers",
        _A,
        _D,
        v.auth_secret_ref,
        "only ConfigMaps in the Ingress's own namespace; values may use allow-listed "
        "variables only",
        fail_closed=True,
    ),
    _a("auth-request-redirect", _A, _S, extauth.request_redirect),
    _a("auth-cache-key", _A, _S, extauth.cache_key, fail_closed=True),
    _a("auth-cache-duration", _A, _S, extauth.cache_durations, fail_closed=True),
    _a("auth-keepalive", _A, _S, v.integer(0, 10000)),
    _a(
        "auth-keepalive-share-vars",
        _A,
        _D,
        v.boolean,
        "accepted without effect: the auth subrequest always shares the request's variables "
        "(nginx's auth_request; ingressd's subrequest location sets none of them)",
    ),
    _a("auth-keepalive-requests", _A, _S, v.integer(1, 1_000_000)),
    _a("auth-keepalive-timeout", _A, _S, v.integer(1, 86400)),
    _a("auth-always-set-cookie", _A, _S, v.boolean),
    _a("auth-snippet", _A, _U),
    _a("enable-global-auth", _A, _S, v.boolean, fail_closed=True),
    _a("enable-cors", _A, _S, v.boolean),
    _a("cors-allow-origin", _A, _S, urls.cors_origins),
    _a("cors-allow-methods", _A, _S, v.method_list),
    _a("cors-allow-headers", _A, _S, v.header_list),
    _a("cors-expose-headers", _A, _S, lambda t: v.header_list(t, star=True)),
    _a("cors-allow-credentials", _A, _S, v.boolean),
    _a("cors-max-age", _A, _S, v.integer(0, _MAX_INT)),
    # balancing (Lua, dynamic)
    _a("load-balance", _B, _S, v.enumeration("round_robin", "ewma"), on_canary=True),
    _a("upstream-hash-by", _B, _S, patterns.hash_key, on_canary=True),
    _a("upstream-hash-by-subset", _B, _U, on_canary=True),
    _a("upstream-hash-by-subset-size", _B, _U, on_canary=True),
    _a("affinity", _B, _S, v.enumeration("cookie"), on_canary=True),
    _a("affinity-mode", _B, _S, v.enumeration("balanced", "persistent"), on_canary=True),
    _a(
        "affinity-canary-behavior",
        _B,
        _S,
        v.enumeration("sticky", "legacy"),
        on_canary=True,
    ),
    _a("session-cookie-name", _B, _S, v.cookie_name, on_canary=True),
    _a("session-cookie-path", _B, _S, v.path, on_canary=True),
    _a("session-cookie-max-age", _B, _S, v.integer(0, _MAX_INT), on_canary=True),
    _a("session-cookie-expires", _B, _S, v.integer(0, _MAX_INT), on_canary=True),
    _a("session-cookie-samesite", _B, _S, v.enumeration("None", "Lax", "Strict"), on_canary=True),
    _a("session-cookie-secure", _B, _S, v.boolean, on_canary=True),
    _a("session-cookie-change-on-failure", _B, _S, v.boolean, on_canary=True),
    _a("session-cookie-conditional-samesite-none", _B, _U, on_canary=True),
    _a("session-cookie-domain", _B, _S, v.cookie_domain, on_canary=True),
    # canary (Lua, dynamic)
    _a("canary", _C, _S, v.boolean, on_canary=True),
    _a("canary-by-header", _C, _S, v.header_name, on_canary=True),
    _a("canary-by-header-value", _C, _S, _header_value, on_canary=True),
    _a("canary-by-header-pattern", _C, _S, patterns.regex, on_canary=True),
    _a("canary-by-cookie", _C, _S, v.cookie_name, on_canary=True),
    _a("canary-weight", _C, _S, v.integer(0, 1_000_000), on_canary=True),
    _a("canary-weight-total", _C, _S, v.integer(1, 1_000_000), on_canary=True),
    # snippets
    _a(
        "configuration-snippet",
        _N,
        _D,
        _snippet,
        "refused unless ingressd runs with --allow-snippet-annotations (and "
        "--annotations-risk-level Critical), except a snippet made only of header rules "
        "(more_set_headers, more_clear_headers, more_set_input_headers, "
        "more_clear_input_headers, proxy_set_header, add_header)",
    ),
    _a(
        "server-snippet",
        _N,
        _D,
        _snippet,
        "refused unless ingressd runs with --allow-snippet-annotations",
    ),
    _a("stream-snippet", _N, _U),
    _a(
        "modsecurity-snippet",
        _N,
        _D,
        modsecurity.rules_snippet,
        "without --allow-snippet-annotations only SecRuleEngine On|DetectionOnly|Off and "
        "SecRuleRemoveById lines are accepted (ingress-nginx refuses it whole); the "
        "recommended base configuration stays loaded beside it",
    ),
    # web application firewall (ModSecurity with the OWASP Core Rule Set)
    _a("enable-modsecurity", _O, _S, v.boolean),
    _a("enable-owasp-core-rules", _O, _S, v.boolean),
    _a("modsecurity-transaction-id", _O, _S, modsecurity.transaction_id),
    # other modules nginx here does not have
    _a("enable-opentracing", _O, _U),
    _a("opentracing-trust-incoming-span", _O, _U),
    _a("enable-opentelemetry", _O, _U),
    _a("opentelemetry-trust-incoming-span", _O, _U),
    _a("opentelemetry-operation-name", _O, _U),
    _a("enable-influxdb", _O, _U),
    _a("influxdb-measurement", _O, _U),
    _a("influxdb-port", _O, _U),
    _a("influxdb-host", _O, _U),
    _a("influxdb-server-name", _O, _U),
    _a("mirror-target", _O, _U),
    _a("mirror-request-body", _O, _U),
    _a("mirror-host", _O, _U),
    _a("http2-push-preload", _O, _U),
)

#: Every known annotation by name (without prefix).
ANNOTATIONS: dict[str, Annotation] = {a.name: a for a in _TABLE}
assert len(ANNOTATIONS) == len(_TABLE), "duplicate annotation in the table"
