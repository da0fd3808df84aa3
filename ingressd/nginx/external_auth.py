"""External authentication: ExternalAuth -> the directives of ``auth_request``.  Pure.

    ExternalAuth (a location's settings) --location_auth()--> LocationAuth
        access lines (auth_request, auth_request_set, error_page 401), response headers
        (Set-Cookie), upstream headers (auth-response-headers)
        -> ingressd.nginx.directives puts them into the location (or settings class)
    ExternalAuths of a server (--routing nginx) or of every settings class (--routing lua)
        --auth_locations()--> the internal location ``= /_ingressd_auth_<id>`` that sends the
        subrequest, and the named location ``@ingressd_signin_<id>`` a 401 goes to
        -> the server block (ingressd.nginx.server_directives) or the Lua-routed server
    ExternalAuths --auth_http_lines()--> ``proxy_cache_path`` (http level) when a location
        caches answers (``auth-cache-key``), an upstream block per ``auth-keepalive`` setting

The subrequest (nginx's ``auth_request``): a 2xx lets the request through, with the
``auth-response-headers`` of the answer copied to the upstream request; a 401 goes to the
sign-in location (302 to ``auth-signin`` with the original URL in ``rd``) when there is one, else
is answered; a 403 is answered; anything else (and an auth service that cannot be reached) is a
500.  Its headers are ingress-nginx's (``X-Original-URL``, ``X-Original-Method``,
``X-Sent-From``, ``X-Real-IP``, ``X-Forwarded-For``, ``X-Auth-Request-Redirect``, ...), the
client's own headers (its cookies) pass, its body does not.  With ``auth-keepalive`` the
subrequest goes through an upstream block that keeps connections alive: nginx keeps the
connection of a subrequest whose answer has no body (oauth2-proxy's 202), and closes it
otherwise.  ingress-nginx sends the subrequest from Lua instead (``ngx.location.capture``), which
lua-nginx-module refuses for HTTP/2 requests ("http2 requests not supported yet"), so it turns
keepalive off whenever HTTP/2 is on; ingressd keeps ``auth_request`` for every client.

A subrequest shares the variables of the request it serves: ``$ingressd_auth_skip``, set in the
location for a path of ``no-auth-locations``, makes the subrequest answer 204 itself; the
location overrides the http-level ``rewrite_by_lua`` so that the balancer never runs (and never
re-rolls a canary) for it.  Every value is quoted by ``ingressd.nginx.quoting``.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingressd.model import Configuration
from ingressd.model.settings import ExternalAuth
from ingressd.nginx.quoting import (
    DirectiveError,
    bare_header,
    bare_word,
    header_word,
    quote_regex,
    quote_variables,
    quote_word,
)

__all__ = [
    "AUTH_CACHE_ZONE",
    "LocationAuth",
    "auth_http_lines",
    "auth_locations",
    "configuration_auths",
    "location_auth",
    "system_resolvers",
]

#: The ``proxy_cache`` zone of the auth answers (``auth-cache-key``).
AUTH_CACHE_ZONE = "ingressd_auth_cache"


@dataclass(frozen=True, slots=True)
class LocationAuth:
    """What ``auth-url`` adds to the location it protects."""

    #: Rewrite and access phase: the no-auth-locations test, ``auth_request``, ...
    lines: tuple[str, ...]
    #: ``add_header Set-Cookie ...`` (the caller adds HSTS again beside it).
    add_headers: tuple[str, ...]
    #: ``(name, value)`` for ``proxy_set_header``: the auth answer's headers.
    upstream_headers: tuple[tuple[str, str], ...]


def _ip_host(auth: ExternalAuth) -> bool:
    """Whether the auth service is given by IP address (else by a name nginx must resolve)."""
    host = urllib.parse.urlsplit(auth.url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _keepalive(auth: ExternalAuth) -> bool:
    """An upstream block with keepalive: for an auth service given by IP address only (a name
    in an upstream block is resolved when nginx loads the configuration, and one that does not
    resolve then would fail ``nginx -t``)."""
    return auth.keepalive > 0 and _ip_host(auth)


def system_resolvers(resolv_conf: str) -> tuple[str, ...]:
    """The ``nameserver`` addresses of an ``/etc/resolv.conf`` text, for nginx's ``resolver``."""
    out: list[str] = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1].split("%")[0])
            except ValueError:
                continue
            out.append(f"[{address}]" if address.version == 6 else str(address))
    return tuple(dict.fromkeys(out))


def _ident(auth: ExternalAuth) -> str:
    ident = auth.id
    if not re.fullmatch(r"a[0-9a-f]{12}", ident):
        raise DirectiveError(f"refusing auth location id {ident!r}")
    return ident


def auth_path(auth: ExternalAuth) -> str:
    """The internal location that sends the subrequest."""
    return f"/_ingressd_auth_{_ident(auth)}"


def signin_location(auth: ExternalAuth) -> str:
    return f"@ingressd_signin_{_ident(auth)}"


def _no_auth_regex(no_auth_locations: Sequence[str]) -> str:
    alternatives = "|".join(re.escape(p.rstrip("/")) for p in no_auth_locations)
    return quote_regex("^(" + alternatives + ")(/|$)")


def location_auth(auth: ExternalAuth, no_auth_locations: Sequence[str]) -> LocationAuth:
    lines: list[str] = []
    if no_auth_locations:
        lines += [
            'set $ingressd_auth_skip "";',
            f"if ($uri ~ {_no_auth_regex(no_auth_locations)}) {{",
            "    set $ingressd_auth_skip 1;",
            "}",
        ]
    lines += [
        f"auth_request {auth_path(auth)};",
        "auth_request_set $ingressd_auth_cookie $upstream_http_set_cookie;",
    ]
    headers: list[tuple[str, str]] = []
    for i, name in enumerate(auth.response_headers):
        variable = "$upstream_http_" + bare_header(name).lower().replace("-", "_")
        lines.append(f"auth_request_set $ingressd_auth_header_{int(i)} {variable};")
        headers.append((bare_header(name), f"$ingressd_auth_header_{int(i)}"))
    if auth.signin is not None:
        lines.append(f"error_page 401 = {signin_location(auth)};")
    always = " always" if auth.always_set_cookie else ""
    add_headers = (f"add_header Set-Cookie $ingressd_auth_cookie{always};",)
    return LocationAuth(tuple(lines), add_headers, tuple(headers))


def auth_locations(
    auths: Iterable[ExternalAuth],
    *,
    proxy_headers: Sequence[tuple[str, str]],
    no_auth_locations: Sequence[str],
    hsts_variable: str | None,
    resolvers: Sequence[str] = (),
) -> list[str]:
    """The internal subrequest location and the sign-in location of each distinct setting.

    ``resolvers``: nameservers for an auth service given by name (resolved per request, as
    ingress-nginx does, so that a name that does not resolve fails that request, not the
    configuration); without any such a request is answered 500.
    """
    lines: list[str] = []
    seen: set[str] = set()
    for auth in auths:
        ident = _ident(auth)
        if ident in seen:
            continue
        seen.add(ident)
        lines += _subrequest_location(auth, proxy_headers, no_auth_locations, resolvers)
        if auth.signin is not None:
            lines += _signin_location(auth, proxy_headers, hsts_variable)
    return lines


def _subrequest_location(
    auth: ExternalAuth,
    proxy_headers: Sequence[tuple[str, str]],
    no_auth_locations: Sequence[str],
    resolvers: Sequence[str],
) -> list[str]:
    inherited = dict(proxy_headers)
    host = urllib.parse.urlsplit(auth.url).netloc
    body = [
        "internal;",
        "access_log off;",
        # the balancer's rewrite handler is for the request, not its subrequest
        "rewrite_by_lua_block { return }",
    ]
    if no_auth_locations:
        body += ["if ($ingressd_auth_skip) {", "    return 204;", "}"]
    headers: list[tuple[str, str]] = [
        ("Content-Length", '""'),
        ("X-Forwarded-Proto", '""'),
        ("X-Request-ID", "$req_id"),
    ]
    if auth.method is not None:
        body.append(f"proxy_method {bare_word(auth.method)};")
        headers += [
            ("X-Original-URI", "$request_uri"),
            ("X-Scheme", inherited.get("X-Scheme", "$scheme")),
        ]
    redirect = (
        quote_word(auth.request_redirect) if auth.request_redirect is not None else "$request_uri"
    )
    headers += [
        ("Host", quote_word(host.rpartition("@")[2])),
        ("X-Original-URL", "$scheme://$http_host$request_uri"),
        ("X-Original-Method", "$request_method"),
        ("X-Sent-From", '"nginx-ingress-controller"'),
        ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-For", inherited.get("X-Forwarded-For", "$remote_addr")),
        ("X-Auth-Request-Redirect", redirect),
    ]
    headers += [(name, quote_variables(value)) for name, value in auth.proxy_set_headers]
    body += [
        "proxy_pass_request_body off;",
        "proxy_pass_request_headers on;",
        "proxy_intercept_errors off;",
        "proxy_ssl_server_name on;",
    ]
    body += [f"proxy_set_header {header_word(n)} {v};" for n, v in headers]
    if auth.cache_key is not None:
        key = f"$host{auth_path(auth)}{auth.cache_key}"
        body += [
            f"proxy_cache {AUTH_CACHE_ZONE};",
            f"proxy_cache_key {quote_variables(key)};",
            "proxy_buffering on;",
        ]
        body += [f"proxy_cache_valid {_cache_valid(d)};" for d in auth.cache_duration]
    if _keepalive(auth):
        # through the upstream block of auth_http_lines(), which keeps connections alive
        parts = urllib.parse.urlsplit(auth.url)
        target = parts._replace(netloc=f"ingressd_auth_{_ident(auth)}").geturl()
        body += ["proxy_http_version 1.1;", 'proxy_set_header Connection "";']
        if parts.scheme == "https":
            body.append(f"proxy_ssl_name {quote_word(parts.hostname or '')};")
        body.append(f"proxy_pass {quote_word(target)};")
    elif _ip_host(auth):
        body.append(f"proxy_pass {quote_word(auth.url)};")
    else:
        # a name: resolved per request (a variable target), never when nginx loads
        for resolver in resolvers:
            if not re.fullmatch(r"[0-9.]+|\[[0-9a-fA-F:.]+\]", resolver):
                raise DirectiveError(f"refusing resolver {resolver!r}")
        if resolvers:
            body += [f"resolver {' '.join(resolvers)} valid=30s;", "resolver_timeout 5s;"]
        body += [
            f"set $ingressd_auth_target {quote_word(auth.url)};",
            "proxy_pass $ingressd_auth_target;",
        ]
    return [
        f"location = {auth_path(auth)} {{",
        *(f"    {line}" for line in body),
        "}",
    ]


def _cache_valid(duration: str) -> str:
    *codes, time = duration.split()
    for code in codes:
        if code != "any" and not re.fullmatch(r"[1-5][0-9][0-9]", code):
            raise DirectiveError(f"refusing cache status {code!r}")
    if not re.fullmatch(r"[1-9][0-9]{0,8}(ms|s|m|h|d|w|M|y)", time):
        raise DirectiveError(f"refusing cache time {time!r}")
    return " ".join([*codes, time])


def _signin_location(
    auth: ExternalAuth, proxy_headers: Sequence[tuple[str, str]], hsts_variable: str | None
) -> list[str]:
    assert auth.signin is not None
    # The scheme the template forwards, unless proxy-set-headers gave X-Forwarded-Proto a value
    # of its own: the original URL then keeps the request's scheme.
    forwarded = {n.lower(): v for n, v in proxy_headers}.get("x-forwarded-proto", "$scheme")
    scheme = forwarded if forwarded in ("$scheme", "$pass_access_scheme") else "$scheme"
    query = urllib.parse.urlsplit(auth.signin.replace("$", "_")).query
    param = auth.signin_redirect_param
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", param):
        raise DirectiveError(f"refusing redirect parameter {param!r}")
    if any(k == param and v for k, v in urllib.parse.parse_qsl(query, keep_blank_values=True)):
        target = auth.signin
    else:
        joiner = "&" if query else "?"
        target = f"{auth.signin}{joiner}{param}={scheme}://$http_host$escaped_request_uri"
    body = [
        "add_header Set-Cookie $ingressd_auth_cookie;",
    ]
    if hsts_variable is not None:
        body.append(f"add_header Strict-Transport-Security {hsts_variable} always;")
    body += [
        "set_by_lua_block $escaped_request_uri {",
        "    return ngx.escape_uri(ngx.var.request_uri)",
        "}",
        f"return 302 {quote_variables(target)};",
    ]
    return [
        f"location {signin_location(auth)} {{",
        *(f"    {line}" for line in body),
        "}",
    ]


def auth_http_lines(auths: Iterable[ExternalAuth | None], cache_dir: str) -> list[str]:
    """http-level directives of ``auths``: ``proxy_cache_path`` of the auth answers when one
    caches them (``auth-cache-key``); an upstream block per ``auth-keepalive`` setting."""
    lines: list[str] = []
    cached = False
    upstreams: dict[str, ExternalAuth] = {}
    for auth in auths:
        if auth is None:
            continue
        cached = cached or auth.cache_key is not None
        if _keepalive(auth):
            upstreams.setdefault(_ident(auth), auth)
    if cached:
        if re.search(r'["\\$;{}#\x00-\x1f]', cache_dir):
            raise DirectiveError(f"refusing cache directory {cache_dir!r}")
        lines.append(
            f'proxy_cache_path "{cache_dir}" levels=1:2 keys_zone={AUTH_CACHE_ZONE}:10m '
            "max_size=128m inactive=30m use_temp_path=off;"
        )
    for ident in sorted(upstreams):
        auth = upstreams[ident]
        parts = urllib.parse.urlsplit(auth.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        host = parts.hostname or ""
        address = f"[{host}]:{int(port)}" if ":" in host else f"{host}:{int(port)}"
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", address):
            raise DirectiveError(f"refusing auth service address {address!r}")
        lines += [
            f"upstream ingressd_auth_{ident} {{",
            f"    server {address};",
            f"    keepalive {int(auth.keepalive)};",
            f"    keepalive_requests {int(auth.keepalive_requests)};",
            f"    keepalive_timeout {int(auth.keepalive_timeout)}s;",
            "}",
        ]
    return lines


def configuration_auths(config: Configuration) -> Iterable[ExternalAuth | None]:
    """The ``external_auth`` of every location of ``config``."""
    return (loc.settings.external_auth for s in config.servers for loc in s.locations)
