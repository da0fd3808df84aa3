"""Location directives from annotations: LocationSettings -> lines of a location block.  Pure.

    Location + LocationContext --location_lines()--> LocationBody(lines, pass_line)
        -> ingressd.nginx.routing puts them into RenderedLocation
        -> templates/nginx.conf.j2 prints them inside the ``location`` block
    LocationSettings --upstream_name()--> the upstream block it proxies through

Every value comes typed and validated from ``ingressd.annotations``; each is quoted again by
``ingressd.nginx.quoting``, which refuses what its grammar forbids (``DirectiveError``, raised
again as ``RenderError``), so a value that slipped past validation still cannot end a directive,
open a block or start a variable.  Numbers are printed with ``int()``.  Snippets are the one
exception: the operator opted in with ``--allow-snippet-annotations`` and ``nginx -t`` judges
them.  The server- and http-level directives (server-snippet, custom error pages, rate limit
zones, upstream blocks) are in ``ingressd.nginx.server_directives``.

Order inside a location matters: the rewrite-module directives (``set``, ``return``, ``if``,
``rewrite ... break``) run in the order written, so redirects come before the rewrite (``break``
ends them), and the template writes ``set $proxy_upstream_name`` before all of them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ingressd.model import Backend, Location
from ingressd.model.settings import (
    BackendProtocol,
    ClientAuth,
    HeaderAction,
    HeaderRule,
    LocationSettings,
)
from ingressd.nginx.external_auth import location_auth
from ingressd.nginx.modsecurity import NO_WAF, WafDefaults, waf_location_lines
from ingressd.nginx.quoting import (
    DirectiveError,
    bare_cidr,
    bare_size,
    bare_time,
    bare_word,
    header_word,
    on_off,
    quote_header,
    quote_header_name,
    quote_regex,
    quote_target,
    quote_text,
    quote_word,
)

__all__ = [
    "LocationBody",
    "LocationContext",
    "effective_ssl_redirect",
    "error_location",
    "location_lines",
    "secret_path",
    "upstream_name",
]


@dataclass(frozen=True, slots=True)
class LocationContext:
    """What a location's directives need from around it."""

    #: ``:8443`` when HTTPS is not on 443, for redirects.
    https_port_suffix: str = ""
    #: The server redirects HTTP to HTTPS by default (it has TLS and ``ssl-redirect`` is on).
    server_ssl_redirect: bool = False
    #: Add ``Strict-Transport-Security`` again where ``add_header`` is used (nginx would drop
    #: the server's own when a location has ``add_header``).
    hsts: bool = False
    #: The backend of the location (for the default ``proxy_ssl_name``).
    backend: Backend | None = None
    #: Directory holding the files made from Secrets.
    secrets_dir: str = ""
    #: The http-level ``proxy_set_header`` pairs, re-stated where a location sets its own
    #: (nginx drops inherited ``proxy_set_header`` when a location has one).
    proxy_headers: Sequence[tuple[str, str]] = ()
    #: A settings class of ``--routing lua`` (``ingressd.nginx.routes``): the router sets
    #: ``$ingressd_default_backend`` and the HSTS header's variable per route.
    lua_routed: bool = False
    #: Path prefixes where authentication does not apply (``no-auth-locations``).
    no_auth_locations: tuple[str, ...] = ()
    #: The server's client certificate settings (``auth-tls-*``): its locations refuse plain
    #: HTTP when verification is on, check ``auth-tls-match-cn`` and pass the ``ssl-client-*``
    #: headers to the pods.
    client_auth: ClientAuth | None = None
    #: The ConfigMap's WAF keys (what the http level has).
    modsecurity: WafDefaults = NO_WAF


@dataclass(frozen=True, slots=True)
class LocationBody:
    #: Directives after ``set $proxy_upstream_name`` (rewrite-phase ones first).
    lines: tuple[str, ...]
    #: ``proxy_pass http://upstream_balancer`` or its HTTPS / gRPC form.
    pass_line: str


def effective_ssl_redirect(settings: LocationSettings, server_default: bool) -> bool:
    """Redirect HTTP to HTTPS here: forced, or the server's default unless turned off."""
    return settings.force_ssl_redirect or (server_default and settings.ssl_redirect is not False)


_EMPTY = '""'

_PASS = {
    BackendProtocol.HTTP: "proxy_pass http://",
    BackendProtocol.HTTPS: "proxy_pass https://",
    BackendProtocol.GRPC: "grpc_pass grpc://",
    BackendProtocol.GRPCS: "grpc_pass grpcs://",
}


def upstream_name(s: LocationSettings) -> str:
    """The upstream block a location proxies through.

    Plain HTTP shares ``upstream_balancer``.  Every other protocol, and every distinct set of
    backend TLS settings, gets its own block (same Lua balancer): nginx's keepalive cache is
    per block and matches connections by address only, so sharing one would hand a connection
    opened without verification to a location that requires it, or an HTTP/1.1 connection to
    gRPC.
    """
    if s.backend_protocol is BackendProtocol.HTTP and s.proxy_ssl is None:
        return "upstream_balancer"
    key = repr((s.backend_protocol.value, s.proxy_ssl))
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return f"upstream_{s.backend_protocol.value.lower()}_{digest}"


def location_lines(location: Location, ctx: LocationContext) -> LocationBody:
    """The directives of ``location`` that come from its annotations."""
    s = location.settings
    lines: list[str] = []
    grpc = s.backend_protocol in (BackendProtocol.GRPC, BackendProtocol.GRPCS)
    pass_line = _PASS[s.backend_protocol] + upstream_name(s)
    if s.denied is not None:
        # A security annotation could not be applied: refuse rather than serve without it.
        return LocationBody(("return 503;",), pass_line)
    if s.default_backend is not None and not ctx.lua_routed:
        lines.append(f"set $ingressd_default_backend {quote_word(s.default_backend)};")
    lines += waf_location_lines(s.modsecurity, ctx.modsecurity)
    if s.access_log is not None and not s.access_log:
        lines.append("access_log off;")
    if s.rewrite_log:
        lines.append("rewrite_log on;")
    if effective_ssl_redirect(s, ctx.server_ssl_redirect):
        # $ingressd_redirect_uri: $request_uri without one trailing "/" (an http-level map),
        # as ingress-nginx redirects unless preserve-trailing-slash
        uri = "$request_uri" if s.preserve_trailing_slash else "$ingressd_redirect_uri"
        lines += [
            "if ($redirect_to_https) {",
            f"    return 308 https://$host{_port_suffix(ctx)}{uri};",
            "}",
        ]
    if ctx.client_auth is not None:
        lines += _client_auth_checks(ctx.client_auth)
    if s.redirect is not None:
        lines.append(f"return {int(s.redirect.code)} {quote_word(s.redirect.url)};")
    add_headers: list[str] = []
    if s.cors is not None:
        cors_lines, add_headers = _cors(s)
        lines += cors_lines
    if s.rewrite_target is not None and location.path_type.value == "Regex":
        lines.append(
            f"rewrite {quote_regex('(?i)' + location.path)} {quote_target(s.rewrite_target)} break;"
        )
    elif s.rewrite_target is not None:
        lines.append(
            f"rewrite {quote_regex('(?i)' + re.escape(location.path))}"
            f" {quote_target(s.rewrite_target)} break;"
        )
    # access phase
    for cidr in s.deny:
        lines.append(f"deny {bare_cidr(cidr)};")
    for cidr in s.allow:
        lines.append(f"allow {bare_cidr(cidr)};")
    if s.allow:
        lines.append("deny all;")
    if s.satisfy_any:
        lines.append("satisfy any;")
    if s.auth is not None:
        if ctx.no_auth_locations:
            # auth_basic is off where its realm evaluates to "off": for the no-auth-locations
            # (cert-manager's HTTP-01 challenges on a protected host).
            alternatives = "|".join(re.escape(p.rstrip("/")) for p in ctx.no_auth_locations)
            lines.append(f"set $ingressd_auth_realm {quote_text(s.auth.realm)};")
            lines.append(f"if ($uri ~ {quote_regex('^(' + alternatives + ')(/|$)')}) {{")
            lines.append("    set $ingressd_auth_realm off;")
            lines.append("}")
            lines.append("auth_basic $ingressd_auth_realm;")
        else:
            lines.append(f"auth_basic {quote_text(s.auth.realm)};")
        lines.append(f"auth_basic_user_file {_secret_path(ctx, s.auth.file.file_name)};")
    external = None
    if s.external_auth is not None:
        external = location_auth(s.external_auth, ctx.no_auth_locations)
        lines += external.lines
        add_headers += external.add_headers
    if s.limits is not None:
        lines += _limits(s)
    # proxying
    if s.body_size is not None:
        lines.append(f"client_max_body_size {bare_size(s.body_size)};")
    if s.client_body_buffer_size is not None:
        lines.append(f"client_body_buffer_size {bare_size(s.client_body_buffer_size)};")
    prefix = "grpc" if grpc else "proxy"
    for directive, value in (
        ("connect_timeout", s.connect_timeout),
        ("send_timeout", s.send_timeout),
        ("read_timeout", s.read_timeout),
        ("next_upstream_timeout", s.next_upstream_timeout),
    ):
        if value is not None:
            lines.append(f"{prefix}_{directive} {bare_time(value)};")
    if s.next_upstream:
        conditions = " ".join(bare_word(c) for c in s.next_upstream)
        lines.append(f"{prefix}_next_upstream {conditions};")
    if s.next_upstream_tries is not None:
        lines.append(f"{prefix}_next_upstream_tries {int(s.next_upstream_tries)};")
    if not grpc:
        lines += _proxy_buffers(s)
    if s.proxy_ssl is not None:
        lines += _proxy_ssl(s, ctx, prefix)
    if not grpc:
        for directive, words in (
            ("proxy_redirect", s.proxy_redirect),
            ("proxy_cookie_domain", s.cookie_domain),
            ("proxy_cookie_path", s.cookie_path),
        ):
            if words:
                lines.append(f"{directive} {' '.join(quote_word(w) for w in words)};")
    lines += _upstream_headers(s, ctx, grpc, external.upstream_headers if external else ())
    header_lines, header_adds = _header_rules(s)
    lines += header_lines
    add_headers += header_adds
    if add_headers and ctx.hsts:
        header = "$ingressd_hsts" if ctx.lua_routed else "$hsts_header"
        add_headers.append(f"add_header Strict-Transport-Security {header} always;")
    lines += add_headers
    errors_to = s.errors_to
    if errors_to is not None:
        if not ctx.lua_routed:
            # X-Service-Name / X-Service-Port of the error backend's request (--routing lua:
            # the router sets them from the route)
            backend = ctx.backend
            name, port = (backend.service, backend.service_port) if backend else ("", "")
            lines.append(f"set $service_name {quote_word(name) if name else _EMPTY};")
            lines.append(f"set $service_port {quote_word(port) if port else _EMPTY};")
        lines.append(f"{prefix}_intercept_errors on;")
        for code in s.custom_http_errors:
            name = error_location(errors_to, code)
            lines.append(f"error_page {int(code)} = {name};")
    if s.snippet is not None:
        lines += s.snippet.splitlines()
    return LocationBody(tuple(lines), pass_line)


def _client_auth_checks(auth: ClientAuth) -> list[str]:
    """After the HTTPS redirect: what the handshake cannot check.  ``$redirect_to_https`` is
    1 for a plain HTTP request that is not an ACME challenge (the server block sets it); such
    a request carries no client certificate, so with verification ``on`` it is refused as
    nginx refuses an HTTPS one without (496: 400, or the auth-tls-error-page)."""
    lines: list[str] = []
    if auth.verify == "on":
        lines += ["if ($redirect_to_https) {", "    return 496;", "}"]
    if auth.match_cn is not None:
        lines += [
            f"if ($ssl_client_s_dn !~ {quote_regex(auth.match_cn)}) {{",
            '    return 403 "client certificate unauthorized";',
            "}",
        ]
    return lines


def _port_suffix(ctx: LocationContext) -> str:
    suffix = ctx.https_port_suffix
    if suffix and not re.fullmatch(r":[0-9]{1,5}", suffix):
        raise DirectiveError(f"refusing port suffix {suffix!r}")
    return suffix


def _secret_path(ctx: LocationContext, file_name: str) -> str:
    return secret_path(ctx.secrets_dir, file_name)


def secret_path(secrets_dir: str, file_name: str) -> str:
    """The quoted path of a file made from a Secret (``DirectiveError`` for an unsafe one)."""
    unsafe_dir = re.search(r'["\\$\x00-\x1f]', secrets_dir)
    if not re.fullmatch(r"[a-z0-9._-]+", file_name) or unsafe_dir:
        raise DirectiveError(f"refusing secret file {file_name!r}")
    return f'"{secrets_dir}/{file_name}"'


def _limits(s: LocationSettings) -> list[str]:
    limits = s.limits
    assert limits is not None
    zone = bare_word(limits.zone)
    lines: list[str] = []
    if limits.connections:
        lines.append(f"limit_conn {zone}_conn {int(limits.connections)};")
    if limits.rpm:
        burst = int(limits.rpm) * int(limits.burst_multiplier)
        lines.append(f"limit_req zone={zone}_rpm burst={burst} nodelay;")
    if limits.rps:
        burst = int(limits.rps) * int(limits.burst_multiplier)
        lines.append(f"limit_req zone={zone}_rps burst={burst} nodelay;")
    if limits.rate is not None:
        lines.append(f"limit_rate {int(limits.rate)}k;")
    if limits.rate_after is not None:
        lines.append(f"limit_rate_after {int(limits.rate_after)}k;")
    return lines


def _proxy_buffers(s: LocationSettings) -> list[str]:
    lines: list[str] = []
    if s.buffering is not None:
        lines.append(f"proxy_buffering {on_off(s.buffering)};")
    if s.request_buffering is not None:
        lines.append(f"proxy_request_buffering {on_off(s.request_buffering)};")
    if s.buffer_size is not None or s.buffers_number is not None:
        size = bare_size(s.buffer_size or "4k")
        lines.append(f"proxy_buffer_size {size};")
        lines.append(f"proxy_buffers {int(s.buffers_number or 4)} {size};")
    if s.busy_buffers_size is not None:
        lines.append(f"proxy_busy_buffers_size {bare_size(s.busy_buffers_size)};")
    if s.max_temp_file_size is not None:
        lines.append(f"proxy_max_temp_file_size {bare_size(s.max_temp_file_size)};")
    if s.http_version is not None:
        lines.append(f"proxy_http_version {bare_word(s.http_version)};")
    return lines


def _proxy_ssl(s: LocationSettings, ctx: LocationContext, prefix: str) -> list[str]:
    ssl = s.proxy_ssl
    assert ssl is not None
    lines = [f"{prefix}_ssl_verify {on_off(ssl.verify)};"]
    if ssl.ca is not None:
        lines.append(f"{prefix}_ssl_trusted_certificate {_secret_path(ctx, ssl.ca.file_name)};")
    if ssl.client_certificate is not None:
        path = _secret_path(ctx, ssl.client_certificate.file_name)
        lines.append(f"{prefix}_ssl_certificate {path};")
        lines.append(f"{prefix}_ssl_certificate_key {path};")
    name = ssl.name
    if name is None and ctx.backend is not None:
        name = f"{ctx.backend.service}.{ctx.backend.namespace}.svc"
    if name is not None:
        lines.append(f"{prefix}_ssl_name {quote_word(name)};")
    lines.append(f"{prefix}_ssl_server_name {on_off(ssl.server_name)};")
    lines.append(f"{prefix}_ssl_verify_depth {int(ssl.verify_depth)};")
    if ssl.ciphers is not None:
        lines.append(f"{prefix}_ssl_ciphers {quote_word(ssl.ciphers)};")
    if ssl.protocols:
        lines.append(f"{prefix}_ssl_protocols {' '.join(bare_word(p) for p in ssl.protocols)};")
    return lines


def _upstream_headers(
    s: LocationSettings,
    ctx: LocationContext,
    grpc: bool,
    auth_headers: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Request headers to the pods: the http-level set with this location's overrides (and
    the headers of the auth service's answer, ``auth-response-headers``)."""
    overrides: dict[str, str] = {}
    if s.upstream_vhost is not None:
        overrides["Host"] = quote_word(s.upstream_vhost)
    if s.connection_header is not None:
        overrides["Connection"] = quote_word(s.connection_header)
    extra: list[tuple[str, str]] = []
    if s.auth is not None:
        # nginx checked the credentials; the pods never see them (as ingress-nginx does).
        extra.append(("Authorization", '""'))
    if s.x_forwarded_prefix is not None:
        extra.append(("X-Forwarded-Prefix", quote_word(s.x_forwarded_prefix)))
    extra += auth_headers
    if ctx.client_auth is not None:
        # what the handshake found out about the client certificate (as ingress-nginx)
        if ctx.client_auth.pass_certificate:
            extra.append(("ssl-client-cert", "$ssl_client_escaped_cert"))
        extra += [
            ("ssl-client-verify", "$ssl_client_verify"),
            ("ssl-client-subject-dn", "$ssl_client_s_dn"),
            ("ssl-client-issuer-dn", "$ssl_client_i_dn"),
        ]
    rules: dict[str, str] = {}
    for rule in s.header_rules:
        if rule.action is HeaderAction.PROXY_SET:
            for name, value in zip(rule.names, rule.values, strict=True):
                # the last rule for a name wins, replacing the template's value of it
                rules = {k: v for k, v in rules.items() if k.lower() != name.lower()}
                rules[name] = quote_header(value.parts)
    # what ingressd itself sets per location (cleared credentials, ...) is not overridden
    taken = {n.lower() for n, _ in extra} | {n.lower() for n in overrides}
    overrides.update((k, v) for k, v in rules.items() if k.lower() not in taken)
    if grpc:
        pairs = [
            ("Host", "$best_http_host"),
            ("X-Real-IP", "$remote_addr"),
            ("X-Request-ID", "$req_id"),
        ]
        listed = {n.lower() for n, _ in pairs} | {n.lower() for n in rules}
        kept = {k: v for k, v in overrides.items() if k.lower() in listed}
        pairs = _overridden(pairs, kept) + extra
        return [f"grpc_set_header {header_word(n)} {value};" for n, value in pairs]
    if not overrides and not extra:
        return []
    pairs = _overridden(list(ctx.proxy_headers), overrides) + extra
    return [f"proxy_set_header {header_word(n)} {value};" for n, value in pairs]


def _overridden(pairs: list[tuple[str, str]], overrides: dict[str, str]) -> list[tuple[str, str]]:
    """``pairs`` with the values of ``overrides`` (names compared case-insensitively), then the
    overrides they did not name."""
    by_lower = {n.lower(): (n, v) for n, v in overrides.items()}
    out = [by_lower.pop(n.lower(), (n, value)) for n, value in pairs]
    return out + list(by_lower.values())


def _header_rules(s: LocationSettings) -> tuple[list[str], list[str]]:
    """The header rules (``custom-headers``, then the snippet's), rendered again from their
    parsed form: headers-more lines, and ``add_header`` lines (``proxy_set_header`` rules are
    in ``_upstream_headers``)."""
    lines: list[str] = []
    adds: list[str] = []
    for rule in (*s.custom_headers, *s.header_rules):
        if rule.action is HeaderAction.PROXY_SET:
            continue
        if rule.action is HeaderAction.ADD:
            value = quote_header(rule.values[0].parts)
            always = " always" if rule.always else ""
            adds.append(f"add_header {quote_header_name(rule.names[0])} {value}{always};")
            continue
        lines.append(_more_line(rule))
    return lines, adds


def _more_line(rule: HeaderRule) -> str:
    words = [rule.action.value]
    if rule.replace_only:
        words.append("-r")
    if rule.statuses:
        words += ["-s", '"' + " ".join(str(int(c)) for c in rule.statuses) + '"']
    if rule.types:
        words += ["-t", '"' + " ".join(_media_type(t) for t in rule.types) + '"']
    if rule.action in (HeaderAction.SET, HeaderAction.SET_INPUT):
        for name, value in zip(rule.names, rule.values, strict=True):
            words.append(quote_header(value.parts, name))
    else:
        words += [quote_header_name(n, wildcard=True) for n in rule.names]
    return " ".join(words) + ";"


def _media_type(value: str) -> str:
    """A content type of ``-t``: ``type/subtype`` of token characters without ``$``."""
    if not re.fullmatch(r"[A-Za-z0-9!#&^_.+-]+/[A-Za-z0-9!#&^_.+-]+", value):
        raise DirectiveError(f"refusing content type {value!r}")
    return value


def _cors(s: LocationSettings) -> tuple[list[str], list[str]]:
    """Preflight answer (rewrite phase) and the headers of every answer."""
    cors = s.cors
    assert cors is not None
    lines: list[str] = []
    if cors.origins == ("*",):
        origin = '"*"'
    else:
        alternatives = "|".join(_origin_regex(o) for o in cors.origins)
        lines += [
            'set $ingressd_cors_origin "";',
            f"if ($http_origin ~* {quote_regex('^(' + alternatives + ')$')}) {{",
            "    set $ingressd_cors_origin $http_origin;",
            "}",
        ]
        origin = "$ingressd_cors_origin"
    common = [f"add_header Access-Control-Allow-Origin {origin} always;"]
    if cors.credentials:
        common.append('add_header Access-Control-Allow-Credentials "true" always;')
    preflight = [
        *common,
        f"add_header Access-Control-Allow-Methods {quote_text(cors.methods)} always;",
        f"add_header Access-Control-Allow-Headers {quote_text(cors.headers)} always;",
        f"add_header Access-Control-Max-Age {int(cors.max_age)} always;",
    ]
    lines += ["if ($request_method = OPTIONS) {"]
    lines += [f"    {line}" for line in preflight]
    lines += ["    return 204;", "}"]
    headers = list(common)
    if cors.expose_headers:
        headers.append(
            f"add_header Access-Control-Expose-Headers {quote_text(cors.expose_headers)} always;"
        )
    return lines, headers


def _origin_regex(origin: str) -> str:
    match = re.fullmatch(r"(https?)://(\*\.)?([a-z0-9.-]+)(:[0-9]{1,5})?", origin)
    if not match:
        raise DirectiveError(f"refusing CORS origin {origin!r}")
    scheme, wildcard, host, port = match.groups()
    out = f"{scheme}://"
    if wildcard:
        out += "[a-z0-9-]+\\."
    out += host.replace(".", "\\.")
    if port:
        out += port
    return out


def error_location(backend: str, code: int) -> str:
    """The named location that serves ``code`` from the ``default-backend`` ``backend``."""
    return f"@custom_{bare_word(backend.replace('-', '_'))}_{int(code)}"
