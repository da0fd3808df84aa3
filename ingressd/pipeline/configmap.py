"""ConfigMap options: the controller's ConfigMap in, validated global options out.  Pure.

    Snapshot.config_maps[--configmap] --parse_configmap(obj)--> (GlobalOptions, problems)
        GlobalOptions.render_settings(base) --> RenderSettings --Nginx.render--> nginx.conf
        GlobalOptions.build_options(base)   --> BuildOptions   --build_configuration()
        settings_changes(new, running)      --> reasons: the sync worker reloads when non-empty

Key names and defaults are ingress-nginx's, so an existing ConfigMap keeps its meaning:

    worker-processes                auto or 1..1024 (absent: the --worker-processes flag)
    proxy-body-size                 nginx size: 1m, 512k, 8m, 0 (no limit)          1m
    proxy-connect-timeout           seconds (an int, as ingress-nginx takes them)    5
    proxy-read-timeout / -send-     ... or an nginx time: 500ms, 1m30s, 2h          60
    ssl-redirect                    bool: 308 to HTTPS for hosts with a certificate  true
    hsts                            bool: Strict-Transport-Security on HTTPS         true
    hsts-max-age                    seconds                                          31536000
    hsts-include-subdomains         bool                                             true
    hsts-preload                    bool                                             false
    use-forwarded-headers           bool: trust X-Forwarded-* from the client        false
    forwarded-for-header            the header with the client's address             X-Forwarded-For
    proxy-real-ip-cidr              CIDRs (comma-separated) whose forwarded address  0.0.0.0/0
                                    is believed (use-forwarded-headers, enable-real-ip,
                                    use-proxy-protocol)
    enable-real-ip                  bool: the client address from forwarded-for-     false
                                    header (without trusting X-Forwarded-Proto/-Host)
    use-proxy-protocol              bool: the HTTP/HTTPS listeners take a PROXY      false
                                    protocol header (v1/v2), the client address
                                    from it
    proxy-protocol-header-timeout   nginx time to wait for it (stream listeners)     5s
    compute-full-forwarded-for      bool: X-Forwarded-For appends the peer to the    false
                                    header received instead of replacing it
    upstream-keepalive-connections  idle keepalive connections per worker, 0 = off   320
    worker-shutdown-timeout         nginx time                                       240s
    log-format-upstream             the access log format                            (built in)
    custom-http-errors              codes sent to --default-backend-service          (none)
    ssl-protocols                   TLS protocols, space separated               TLSv1.2 TLSv1.3
    ssl-ciphers                     OpenSSL cipher list (TLS 1.2)           ingress-nginx's list
    upstream-keepalive-timeout      seconds an idle upstream connection is kept      60
    upstream-keepalive-requests     requests per upstream keepalive connection       10000
    client-header-buffer-size       nginx buffer size (k or m)                       1k
    large-client-header-buffers     "<number> <size>"                                4 8k
    http2-max-field-size            obsolete since nginx 1.19.7: refused, see below  -
    allow-backend-server-header     bool: pass the pods' Server header               false
    server-tokens                   bool: send "Server: nginx/<version>" (else none) false
    no-auth-locations               path prefixes no authentication applies to   /.well-known/...
    global-auth-url (-method, -signin, -signin-redirect-param, -response-headers,
      -request-redirect, -cache-key, -cache-duration, -always-set-cookie)
                                    external authentication for every Ingress   (none)
                                    (the auth-* annotations' grammars; enable-global-auth:
                                    "false" on an Ingress opts out, its auth-url wins)
    annotations-risk-level          Low, Medium, High, Critical: annotations above   (the flag:
                                    it are refused                                   High)
    add-headers                     NS/NAME of a ConfigMap: response headers to      (none)
                                    every answer (name: value)
    proxy-set-headers               NS/NAME of a ConfigMap: request headers to the   (none)
                                    pods (name: value)
    hide-headers                    header names (comma-separated) the pods'         (none)
                                    answers lose
    global-allowed-response-headers header names (comma-separated) custom-headers    (any)
                                    may set
    enable-modsecurity              bool: ModSecurity on everywhere (DetectionOnly)  false
    enable-owasp-modsecurity-crs    bool: the OWASP Core Rule Set where it is on     false
    modsecurity-snippet             ModSecurity rules at the http level              (none)

``http2-max-field-size`` is obsolete in nginx 1.19.7 and later (this is 1.22): the limit of a
header line is ``large-client-header-buffers`` for HTTP/2 too, so the key is refused with a
Problem saying so, rather than written as a directive nginx only warns about.

Every value is checked here against a grammar narrower than nginx's, because it is written into
nginx.conf unquoted (numbers, sizes, times) or inside a single-quoted string (the log format).
An unknown key or a bad value becomes a ``Problem`` (kind ``ConfigMap``, field ``data.<key>``)
and is ignored: the option keeps its default and every other key still applies.  The ConfigMaps
``add-headers`` and ``proxy-set-headers`` name are read from the snapshot's ``config_maps``
(the Store watches them); each of their entries is a header whose name and value are checked
(``ingressd.annotations.headers``: values are text and allowed ``$variables``), and a bad entry
is a Problem naming that ConfigMap and key, left out while the others apply.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ingressd.annotations import Risk, extauth, headers, modsecurity, values
from ingressd.annotations.variables import AllowList, Grammar
from ingressd.build.building import BuildOptions
from ingressd.model import ObjectKey, Problem
from ingressd.model.settings import ExternalAuth, HeaderValue
from ingressd.nginx.modsecurity import WafDefaults
from ingressd.nginx.rendering import DEFAULT_SSL_CIPHERS, RenderSettings

__all__ = [
    "KNOWN_LOG_VARIABLES",
    "GlobalOptions",
    "parse_configmap",
    "settings_changes",
    "unusable_options",
]

#: Longest ``log-format-upstream`` accepted.
MAX_LOG_FORMAT_LENGTH = 2048
#: Longest nginx time accepted (ms): nginx keeps timers in 32-bit milliseconds on some builds.
MAX_TIME_MS = 2**31 - 1

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_SIZE = re.compile(r"(0|[1-9][0-9]{0,11})([kKmMgG]?)\Z")
_TIME_PART = re.compile(r"([0-9]{1,10})(ms|s|m|h|d|w|M|y)")
_TIME_UNITS_MS = {
    "y": 365 * 86400_000,
    "M": 30 * 86400_000,
    "w": 7 * 86400_000,
    "d": 86400_000,
    "h": 3600_000,
    "m": 60_000,
    "s": 1000,
    "ms": 1,
}
_UNIT_ORDER = list(_TIME_UNITS_MS)
_INT = re.compile(r"(0|[1-9][0-9]{0,9})\Z")
_LOG_FORMAT_REFUSED = re.compile(r"""['"\\{};\x00-\x1f\x7f]""")

#: Variables a log format may use: nginx's own (core, upstream, proxy, ssl, realip, gzip) and
#: the ones ingressd's template sets.  An unknown variable would make ``nginx -t`` fail and so
#: block every later reload; it is refused here instead.
_KNOWN_LOG_NAMES = frozenset(
    {
        # ngx_http_core_module
        "args",
        "binary_remote_addr",
        "body_bytes_sent",
        "bytes_sent",
        "connection",
        "connection_requests",
        "connection_time",
        "content_length",
        "content_type",
        "document_root",
        "document_uri",
        "host",
        "hostname",
        "https",
        "is_args",
        "limit_rate",
        "msec",
        "nginx_version",
        "pid",
        "pipe",
        "proxy_protocol_addr",
        "proxy_protocol_port",
        "proxy_protocol_server_addr",
        "proxy_protocol_server_port",
        "query_string",
        "realpath_root",
        "remote_addr",
        "remote_port",
        "remote_user",
        "request",
        "request_body",
        "request_body_file",
        "request_completion",
        "request_filename",
        "request_id",
        "request_length",
        "request_method",
        "request_time",
        "request_uri",
        "scheme",
        "server_addr",
        "server_name",
        "server_port",
        "server_protocol",
        "status",
        "tcpinfo_rtt",
        "tcpinfo_rttvar",
        "tcpinfo_snd_cwnd",
        "tcpinfo_rcv_space",
        "time_iso8601",
        "time_local",
        "uri",
        # upstream, proxy, ssl, realip, gzip
        "upstream_addr",
        "upstream_bytes_received",
        "upstream_bytes_sent",
        "upstream_cache_status",
        "upstream_connect_time",
        "upstream_header_time",
        "upstream_queue_time",
        "upstream_response_length",
        "upstream_response_time",
        "upstream_status",
        "proxy_host",
        "proxy_port",
        "proxy_add_x_forwarded_for",
        "ssl_cipher",
        "ssl_ciphers",
        "ssl_curves",
        "ssl_early_data",
        "ssl_protocol",
        "ssl_server_name",
        "ssl_session_id",
        "ssl_session_reused",
        "ssl_client_verify",
        "ssl_client_s_dn",
        "ssl_client_i_dn",
        "ssl_client_serial",
        "ssl_client_fingerprint",
        "realip_remote_addr",
        "realip_remote_port",
        "gzip_ratio",
        # set by templates/nginx.conf.j2
        "proxy_upstream_name",
        "namespace",
        "ingress_name",
        "req_id",
        "best_http_host",
    }
)
#: ... and the families (``$http_x_request_id``, ``$cookie_session``, ...).
KNOWN_LOG_VARIABLES = AllowList(
    _KNOWN_LOG_NAMES,
    prefixes=(
        "arg_",
        "cookie_",
        "http_",
        "sent_http_",
        "sent_trailer_",
        "upstream_http_",
        "upstream_cookie_",
        "upstream_trailer_",
    ),
    summary="the variables of nginx's modules and ingressd's template",
)
#: Text of a log format once ``_LOG_FORMAT_REFUSED`` passed it: printable ASCII (``$`` is the
#: variables' grammar); no ``${name}``, as braces are refused.
_LOG_FORMAT = Grammar(
    KNOWN_LOG_VARIABLES, re.compile(r"[\x20-\x7e]*"), "a log format", braces=False
)


@dataclass(frozen=True, slots=True)
class GlobalOptions:
    """The controller-wide options of the ConfigMap, validated, with ingress-nginx's defaults."""

    #: ``None``: the ``--worker-processes`` flag decides.
    worker_processes: str | None = None
    proxy_body_size: str = "1m"
    proxy_connect_timeout: str = "5s"
    proxy_read_timeout: str = "60s"
    proxy_send_timeout: str = "60s"
    ssl_redirect: bool = True
    hsts: bool = True
    hsts_max_age: int = 31536000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    use_forwarded_headers: bool = False
    forwarded_for_header: str = "X-Forwarded-For"
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)
    enable_real_ip: bool = False
    use_proxy_protocol: bool = False
    proxy_protocol_header_timeout: str = "5s"
    compute_full_forwarded_for: bool = False
    upstream_keepalive_connections: int = 320
    worker_shutdown_timeout: str = "240s"
    #: ``None``: the template's built-in format (ingress-nginx's ``upstreaminfo``).
    log_format_upstream: str | None = None
    #: Path prefixes where authentication does not apply (cert-manager's HTTP-01 solver).
    no_auth_locations: tuple[str, ...] = ("/.well-known/acme-challenge",)
    #: ``None``: the ``--annotations-risk-level`` flag decides.
    annotations_risk_level: Risk | None = None
    #: The entries of the ConfigMaps ``add-headers`` / ``proxy-set-headers`` name.
    add_headers: tuple[tuple[str, HeaderValue], ...] = ()
    proxy_set_headers: tuple[tuple[str, HeaderValue], ...] = ()
    hide_headers: tuple[str, ...] = ()
    #: ``None``: custom-headers may set any valid name.
    global_allowed_response_headers: tuple[str, ...] | None = None
    #: Status codes answered by the default backend where no Ingress sets its own.
    custom_http_errors: tuple[int, ...] = ()
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_ciphers: str = DEFAULT_SSL_CIPHERS
    upstream_keepalive_timeout: int = 60
    upstream_keepalive_requests: int = 10000
    client_header_buffer_size: str = "1k"
    large_client_header_buffers: str = "4 8k"
    allow_backend_server_header: bool = False
    server_tokens: bool = False
    #: ``global-auth-*``: external authentication for every Ingress (``enable-global-auth``).
    global_auth_url: str | None = None
    global_auth_method: str | None = None
    global_auth_signin: str | None = None
    global_auth_signin_redirect_param: str = "rd"
    global_auth_response_headers: tuple[str, ...] = ()
    global_auth_request_redirect: str | None = None
    global_auth_cache_key: str | None = None
    global_auth_cache_duration: tuple[str, ...] = ("200 202 401 5m",)
    global_auth_always_set_cookie: bool = False
    #: A ``global-auth-*`` key was invalid: every Ingress that global auth would protect
    #: answers 503 (fails closed) rather than serve without it.
    global_auth_invalid: bool = False
    enable_modsecurity: bool = False
    enable_owasp_modsecurity_crs: bool = False
    #: The administrator's ModSecurity rules (``SecRuleEngine On`` turns blocking on).
    modsecurity_snippet: str | None = None

    def render_settings(self, base: RenderSettings) -> RenderSettings:
        """``base`` (from the command line) with every nginx.conf option of this ConfigMap."""
        return dataclasses.replace(
            base,
            worker_processes=self.worker_processes or base.worker_processes,
            proxy_body_size=self.proxy_body_size,
            proxy_connect_timeout=self.proxy_connect_timeout,
            proxy_read_timeout=self.proxy_read_timeout,
            proxy_send_timeout=self.proxy_send_timeout,
            hsts=self.hsts,
            hsts_max_age=self.hsts_max_age,
            hsts_include_subdomains=self.hsts_include_subdomains,
            hsts_preload=self.hsts_preload,
            use_forwarded_headers=self.use_forwarded_headers,
            forwarded_for_header=self.forwarded_for_header,
            proxy_real_ip_cidr=self.proxy_real_ip_cidr,
            enable_real_ip=self.enable_real_ip,
            use_proxy_protocol=self.use_proxy_protocol,
            proxy_protocol_header_timeout=self.proxy_protocol_header_timeout,
            compute_full_forwarded_for=self.compute_full_forwarded_for,
            upstream_keepalive_connections=self.upstream_keepalive_connections,
            worker_shutdown_timeout=self.worker_shutdown_timeout,
            log_format_upstream=self.log_format_upstream,
            no_auth_locations=self.no_auth_locations,
            add_headers=self.add_headers,
            proxy_set_headers=self.proxy_set_headers,
            hide_headers=self.hide_headers,
            ssl_protocols=self.ssl_protocols,
            ssl_ciphers=self.ssl_ciphers,
            upstream_keepalive_timeout=self.upstream_keepalive_timeout,
            upstream_keepalive_requests=self.upstream_keepalive_requests,
            client_header_buffer_size=self.client_header_buffer_size,
            large_client_header_buffers=self.large_client_header_buffers,
            allow_backend_server_header=self.allow_backend_server_header,
            server_tokens=self.server_tokens,
            modsecurity=WafDefaults(
                enable=self.enable_modsecurity,
                crs=self.enable_owasp_modsecurity_crs,
                snippet=self.modsecurity_snippet,
            ),
        )

    def build_options(self, base: BuildOptions) -> BuildOptions:
        """``base`` with the options the builder applies (``ssl-redirect``, ``global-auth-*``,
        ``custom-http-errors``, ``annotations-risk-level``, ``global-allowed-response-headers``)."""
        return dataclasses.replace(
            base,
            default_ssl_redirect=self.ssl_redirect,
            custom_http_errors=self.custom_http_errors,
            global_auth=self.global_auth(),
            global_auth_invalid=self.global_auth_invalid,
            annotations_risk_level=self.annotations_risk_level or base.annotations_risk_level,
            allowed_response_headers=self.global_allowed_response_headers,
        )

    def global_auth(self) -> ExternalAuth | None:
        """``global-auth-url`` and the keys that tune it (nothing without the URL)."""
        if self.global_auth_url is None:
            return None
        return ExternalAuth(
            url=self.global_auth_url,
            method=self.global_auth_method,
            signin=self.global_auth_signin,
            signin_redirect_param=self.global_auth_signin_redirect_param,
            response_headers=self.global_auth_response_headers,
            request_redirect=self.global_auth_request_redirect,
            cache_key=self.global_auth_cache_key,
            cache_duration=self.global_auth_cache_duration,
            always_set_cookie=self.global_auth_always_set_cookie,
        )


# --- value grammars: each returns the normalized value or raises ValueError(why) -------------


_PATH_PREFIX = re.compile(r"/[A-Za-z0-9._~!*(),:@+=&%/-]*\Z")


def _path_prefixes(text: str) -> tuple[str, ...]:
    """Comma-separated path prefixes (``/.well-known/acme-challenge``); empty: none."""
    prefixes = tuple(item.strip() for item in text.split(",") if item.strip())
    for prefix in prefixes:
        if not _PATH_PREFIX.match(prefix) or "//" in prefix:
            raise ValueError(f"{prefix!r} is not a path prefix starting with '/'")
    return prefixes


def _risk(text: str) -> Risk:
    return Risk.parse(text)


def _configmap_ref(text: str) -> ObjectKey:
    """``namespace/name`` of a ConfigMap (resolved after every key is read)."""
    namespace, slash, name = text.partition("/")
    try:
        if not slash:
            raise values.InvalidValue("expected NAMESPACE/NAME of a ConfigMap")
        values.auth_secret_ref(text)
    except values.InvalidValue as exc:
        raise ValueError(str(exc)) from None
    return ObjectKey(f"{namespace}/{name}")


def _header_names(text: str) -> tuple[str, ...]:
    try:
        return values.comma_list(text, headers.header_name)
    except values.InvalidValue as exc:
        raise ValueError(str(exc)) from None


def _optional(parse: Callable[[str], str]) -> Callable[[str], str | None]:
    """An empty value is the default (unset), as ingress-nginx reads these keys."""

    def parse_optional(text: str) -> str | None:
        return parse(text) if text else None

    return parse_optional


def _bool(text: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError("expected a boolean: true or false")


def _int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not _INT.match(text):
            raise ValueError(f"expected a whole number from {low} to {high}")
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return value

    return parse


def _worker_processes(text: str) -> str:
    if text == "auto":
        return text
    return str(_int(1, 1024)(text))


def _size(text: str) -> str:
    if not _SIZE.match(text):
        raise ValueError("expected an nginx size: a number with an optional k, m or g (0: none)")
    return text


def _time(text: str) -> str:
    """An nginx time (``1m30s``, ``500ms``) or whole seconds (``60``), as ingress-nginx takes."""
    if _INT.match(text):
        total, normalized = int(text) * 1000, f"{int(text)}s"
    else:
        total, at, last_unit = 0, 0, -1
        for match in _TIME_PART.finditer(text):
            unit = _UNIT_ORDER.index(match.group(2))
            if match.start() != at or unit <= last_unit:
                break
            total += int(match.group(1)) * _TIME_UNITS_MS[match.group(2)]
            at, last_unit = match.end(), unit
        if at != len(text) or at == 0:
            raise ValueError(
                "expected seconds (60) or an nginx time with units in decreasing order "
                "(500ms, 1m30s, 2h)"
            )
        normalized = text
    if not 0 < total <= MAX_TIME_MS:
        raise ValueError(f"expected a time above 0 and at most {MAX_TIME_MS} ms")
    return normalized


def _log_format(text: str) -> str:
    """A log format for a single-quoted nginx string: printable text and ``$variables`` only."""
    if not text.strip():
        raise ValueError("must not be empty")
    if len(text) > MAX_LOG_FORMAT_LENGTH:
        raise ValueError(f"longer than {MAX_LOG_FORMAT_LENGTH} characters")
    bad = _LOG_FORMAT_REFUSED.search(text)
    if bad:
        raise ValueError(
            f"must not contain {bad.group()!r} (quotes, backslashes, braces, "
            "semicolons and control characters are refused)"
        )
    if not text.isascii():
        raise ValueError("must be ASCII")
    return _LOG_FORMAT.checked(text)


_LARGE_BUFFERS = re.compile(r"([1-9][0-9]{0,3})\s+(\S+)\Z")


def _large_buffers(text: str) -> str:
    """``large-client-header-buffers``: a number (1-1024) and a buffer size, ``4 8k``."""
    match = _LARGE_BUFFERS.match(text)
    if not match or int(match.group(1)) > 1024:
        raise ValueError("expected a number of buffers (1-1024) and a size: 4 8k")
    return f"{int(match.group(1))} {values.buffer_size(match.group(2))}"


def _obsolete_http2_field_size(text: str) -> str:
    raise ValueError(
        "http2_max_field_size is obsolete since nginx 1.19.7: "
        "large-client-header-buffers limits HTTP/2 header fields too; ignored"
    )


#: ConfigMap key -> (GlobalOptions field, parser).
_KEYS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "worker-processes": ("worker_processes", _worker_processes),
    "proxy-body-size": ("proxy_body_size", _size),
    "proxy-connect-timeout": ("proxy_connect_timeout", _time),
    "proxy-read-timeout": ("proxy_read_timeout", _time),
    "proxy-send-timeout": ("proxy_send_timeout", _time),
    "ssl-redirect": ("ssl_redirect", _bool),
    "hsts": ("hsts", _bool),
    "hsts-max-age": ("hsts_max_age", _int(0, 10**9)),
    "hsts-include-subdomains": ("hsts_include_subdomains", _bool),
    "hsts-preload": ("hsts_preload", _bool),
    "use-forwarded-headers": ("use_forwarded_headers", _bool),
    "forwarded-for-header": ("forwarded_for_header", values.header_name),
    "proxy-real-ip-cidr": ("proxy_real_ip_cidr", values.cidr_list),
    "enable-real-ip": ("enable_real_ip", _bool),
    "use-proxy-protocol": ("use_proxy_protocol", _bool),
    "proxy-protocol-header-timeout": ("proxy_protocol_header_timeout", _time),
    "compute-full-forwarded-for": ("compute_full_forwarded_for", _bool),
    "upstream-keepalive-connections": ("upstream_keepalive_connections", _int(0, 100000)),
    "worker-shutdown-timeout": ("worker_shutdown_timeout", _time),
    "log-format-upstream": ("log_format_upstream", _log_format),
    "no-auth-locations": ("no_auth_locations", _path_prefixes),
    "custom-http-errors": ("custom_http_errors", values.http_codes),
    "ssl-protocols": ("ssl_protocols", values.ssl_protocols),
    "ssl-ciphers": ("ssl_ciphers", values.ciphers),
    "upstream-keepalive-timeout": ("upstream_keepalive_timeout", _int(1, 86400)),
    "upstream-keepalive-requests": ("upstream_keepalive_requests", _int(1, 10**9)),
    "client-header-buffer-size": ("client_header_buffer_size", values.buffer_size),
    "large-client-header-buffers": ("large_client_header_buffers", _large_buffers),
    "http2-max-field-size": ("http2_max_field_size", _obsolete_http2_field_size),
    "allow-backend-server-header": ("allow_backend_server_header", _bool),
    "server-tokens": ("server_tokens", _bool),
    "global-auth-url": ("global_auth_url", _optional(extauth.auth_url)),
    "global-auth-method": ("global_auth_method", _optional(extauth.auth_method)),
    "global-auth-signin": ("global_auth_signin", _optional(extauth.signin_url)),
    "global-auth-signin-redirect-param": (
        "global_auth_signin_redirect_param",
        extauth.redirect_param,
    ),
    "global-auth-response-headers": (
        "global_auth_response_headers",
        lambda t: values.header_list(t) if t else (),
    ),
    "global-auth-request-redirect": (
        "global_auth_request_redirect",
        _optional(extauth.request_redirect),
    ),
    "global-auth-cache-key": ("global_auth_cache_key", _optional(extauth.cache_key)),
    "global-auth-cache-duration": ("global_auth_cache_duration", extauth.cache_durations),
    "global-auth-always-set-cookie": ("global_auth_always_set_cookie", _bool),
    "annotations-risk-level": ("annotations_risk_level", _risk),
    "add-headers": ("add_headers", _configmap_ref),
    "proxy-set-headers": ("proxy_set_headers", _configmap_ref),
    "hide-headers": ("hide_headers", _header_names),
    "global-allowed-response-headers": ("global_allowed_response_headers", _header_names),
    "enable-modsecurity": ("enable_modsecurity", _bool),
    "enable-owasp-modsecurity-crs": ("enable_owasp_modsecurity_crs", _bool),
    "modsecurity-snippet": ("modsecurity_snippet", modsecurity.rules_snippet),
}
_KEY_OF_FIELD = {field: key for key, (field, _) in _KEYS.items()}
#: ``RenderSettings.modsecurity`` (WafDefaults) field -> its ConfigMap key.
_WAF_KEYS = {
    "enable": "enable-modsecurity",
    "crs": "enable-owasp-modsecurity-crs",
    "snippet": "modsecurity-snippet",
}


def known_keys() -> list[str]:
    """The ConfigMap keys ingressd reads, sorted."""
    return sorted(_KEYS)


def _shown(value: object, limit: int = 60) -> str:
    if value is None:
        return "(default)"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_configmap(
    obj: Mapping[str, Any] | None,
    config_maps: Mapping[ObjectKey, Mapping[str, Any]] | None = None,
) -> tuple[GlobalOptions, tuple[Problem, ...]]:
    """Validated options of the controller's ConfigMap (defaults when ``obj`` is ``None``).

    ``config_maps``: the snapshot's, where the ConfigMaps ``add-headers`` and
    ``proxy-set-headers`` name are looked up.  Keys are read in sorted order, so problems come
    out in a stable order.
    """
    if obj is None:
        return GlobalOptions(), ()
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    key = ObjectKey(f"{meta.get('namespace', 'default')}/{meta.get('name', '')}")
    problems: list[Problem] = []

    def problem(field: str, reason: str) -> None:
        problems.append(Problem(kind="ConfigMap", key=key, field=field, reason=reason))

    data = obj.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problem("data", "expected a mapping of strings")
        data = {}
    values: dict[str, Any] = {}
    for name in sorted(data, key=str):
        raw = data[name]
        known = _KEYS.get(name) if isinstance(name, str) else None
        if known is None:
            problem(f"data.{name}", "unknown key (ignored)")
            continue
        if not isinstance(raw, str):
            problem(f"data.{name}", f"invalid value {_shown(raw)!r}: ConfigMap values are strings")
            continue
        field, parse = known
        try:
            values[field] = parse(raw.strip())
        except ValueError as exc:
            problem(f"data.{name}", f"invalid value {_shown(raw)!r}: {exc}")
            if name.startswith("global-auth-"):
                values["global_auth_invalid"] = True
    for name in ("add-headers", "proxy-set-headers"):
        field = _KEYS[name][0]
        if field in values:
            values[field] = _header_map(name, values[field], config_maps or {}, problems, key)
    binary = obj.get("binaryData")
    if isinstance(binary, dict):
        for name in sorted(binary, key=str):
            problem(f"binaryData.{name}", "binaryData is not read (ignored)")
    return GlobalOptions(**values), tuple(problems)


def _header_map(
    name: str,
    ref: ObjectKey,
    config_maps: Mapping[ObjectKey, Mapping[str, Any]],
    problems: list[Problem],
    own: ObjectKey,
) -> tuple[tuple[str, HeaderValue], ...]:
    """The checked entries of the ConfigMap ``ref`` (``add-headers``, ``proxy-set-headers``)."""
    found = config_maps.get(ref)
    if found is None:
        problems.append(
            Problem(
                "ConfigMap", own, f"data.{name}", f"ConfigMap {ref} not found", f"ConfigMap {ref}"
            )
        )
        return ()
    data = found.get("data")
    good, refused = headers.header_entries(data if isinstance(data, dict) else {})
    for entry, why in refused.items():
        reason = f"{why} (named by {own} data.{name}; left out)"
        problems.append(Problem("ConfigMap", ref, f"data.{entry}", reason))
    return good


def unusable_options(
    options: GlobalOptions, build: BuildOptions, configmap: ObjectKey | None
) -> tuple[Problem, ...]:
    """Valid keys that the controller's flags make moot: ``custom-http-errors`` without
    ``--default-backend-service`` (the errors would have nowhere to go)."""
    if options.custom_http_errors and build.default_backend_service is None and configmap:
        reason = "needs --default-backend-service (where the errors go); ignored"
        return (Problem("ConfigMap", configmap, "data.custom-http-errors", reason),)
    return ()


def settings_changes(new: RenderSettings, old: RenderSettings) -> tuple[str, ...]:
    """Why nginx.conf must change: ``global options changed: proxy-body-size 1m -> 8m``."""
    reasons = []
    for f in dataclasses.fields(RenderSettings):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if f.name == "modsecurity" and before != after:
            for sub, key in _WAF_KEYS.items():
                was, now = getattr(before, sub), getattr(after, sub)
                if was != now:
                    reasons.append(f"global options changed: {key} {_shown(was)} -> {_shown(now)}")
        elif before != after:
            key = _KEY_OF_FIELD.get(f.name, f.name.replace("_", "-"))
            reasons.append(f"global options changed: {key} {_shown(before)} -> {_shown(after)}")
    return tuple(reasons)
