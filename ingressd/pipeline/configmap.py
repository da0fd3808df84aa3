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

Every value is checked here against a grammar narrower than nginx's, because it is written into
nginx.conf unquoted (numbers, sizes, times) or inside a single-quoted string (the log format).
An unknown key or a bad value becomes a ``Problem`` (kind ``ConfigMap``, field ``data.<key>``)
and is ignored: the option keeps its default and every other key still applies.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ingressd.annotations import values
from ingressd.build.building import BuildOptions
from ingressd.model import ObjectKey, Problem
from ingressd.nginx.rendering import RenderSettings

__all__ = [
    "KNOWN_LOG_VARIABLES",
    "GlobalOptions",
    "parse_configmap",
    "settings_changes",
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
_LOG_VARIABLE = re.compile(r"\$([a-z_0-9]*)")

#: Variables a log format may use: nginx's own (core, upstream, proxy, ssl, realip, gzip) and
#: the ones ingressd's template sets.  An unknown variable would make ``nginx -t`` fail and so
#: block every later reload; it is refused here instead.
KNOWN_LOG_VARIABLES = frozenset(
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
#: Variable families: ``$http_x_request_id``, ``$cookie_session``, ...
KNOWN_LOG_VARIABLE_PREFIXES = (
    "arg_",
    "cookie_",
    "http_",
    "sent_http_",
    "sent_trailer_",
    "upstream_http_",
    "upstream_cookie_",
    "upstream_trailer_",
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
        )

    def build_options(self, base: BuildOptions) -> BuildOptions:
        """``base`` with the options the builder applies (``ssl-redirect``)."""
        return dataclasses.replace(base, default_ssl_redirect=self.ssl_redirect)


# --- value grammars: each returns the normalized value or raises ValueError(why) -------------


_PATH_PREFIX = re.compile(r"/[A-Za-z0-9._~!*(),:@+=&%/-]*\Z")


def _path_prefixes(text: str) -> tuple[str, ...]:
    """Comma-separated path prefixes (``/.well-known/acme-challenge``); empty: none."""
    prefixes = tuple(item.strip() for item in text.split(",") if item.strip())
    for prefix in prefixes:
        if not _PATH_PREFIX.match(prefix) or "//" in prefix:
            raise ValueError(f"{prefix!r} is not a path prefix starting with '/'")
    return prefixes


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
    for match in _LOG_VARIABLE.finditer(text):
        name = match.group(1)
        if not name:
            raise ValueError("'$' must start a variable name of a-z, 0-9 and _")
        if name not in KNOWN_LOG_VARIABLES and not any(
            name.startswith(prefix) and len(name) > len(prefix)
            for prefix in KNOWN_LOG_VARIABLE_PREFIXES
        ):
            raise ValueError(f"unknown variable ${name}")
    return text


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
}
_KEY_OF_FIELD = {field: key for key, (field, _) in _KEYS.items()}


def known_keys() -> list[str]:
    """The ConfigMap keys ingressd reads, sorted."""
    return sorted(_KEYS)


def _shown(value: object, limit: int = 60) -> str:
    if value is None:
        return "(default)"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_configmap(obj: Mapping[str, Any] | None) -> tuple[GlobalOptions, tuple[Problem, ...]]:
    """Validated options of the controller's ConfigMap (defaults when ``obj`` is ``None``).

    Keys are read in sorted order, so problems come out in a stable order.
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
    binary = obj.get("binaryData")
    if isinstance(binary, dict):
        for name in sorted(binary, key=str):
            problem(f"binaryData.{name}", "binaryData is not read (ignored)")
    return GlobalOptions(**values), tuple(problems)


def settings_changes(new: RenderSettings, old: RenderSettings) -> tuple[str, ...]:
    """Why nginx.conf must change: ``global options changed: proxy-body-size 1m -> 8m``."""
    reasons = []
    for f in dataclasses.fields(RenderSettings):
        before, after = getattr(old, f.name), getattr(new, f.name)
        if before != after:
            key = _KEY_OF_FIELD.get(f.name, f.name.replace("_", "-"))
            reasons.append(f"global options changed: {key} {_shown(before)} -> {_shown(after)}")
    return tuple(reasons)
