"""Server and http directives from annotations: Server / Configuration -> nginx.conf lines.  Pure.

    Server (+ its locations)   --server_lines()------> lines (app-root, ssl-ciphers,
                                                        server-snippet, custom error pages)
    Servers                    --www_redirects()-----> the from-to-www-redirect server blocks
    Server                     --server_redirects()--> whether any location redirects to HTTPS
    Server                     --client_auth_lines()-> ssl_client_certificate, ssl_verify_client,
                                                        ssl_crl, ... (``auth-tls-*``)
    Configuration              --http_lines()--------> lines (rate limit zones, upstream blocks)
        -> templates/nginx.conf.j2 prints them inside the server / http blocks

The location-level directives, and the names shared with them (``upstream_name``,
``error_location``), are in ``ingressd.nginx.directives``; every value is quoted again by
``ingressd.nginx.quoting`` (``DirectiveError`` for what it refuses).  ``server-snippet`` is
written as is: the operator opted in with ``--allow-snippet-annotations``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ingressd.model import Configuration, Server
from ingressd.nginx.directives import (
    effective_ssl_redirect,
    error_location,
    secret_path,
    upstream_name,
)
from ingressd.nginx.external_auth import auth_locations
from ingressd.nginx.quoting import DirectiveError, bare_word, header_word, on_off, quote_word

__all__ = [
    "client_auth_lines",
    "error_locations",
    "http_lines",
    "own_ssl_context",
    "server_lines",
    "server_redirects",
    "www_redirects",
]


def server_redirects(server: Server) -> bool:
    """Whether any location of ``server`` redirects HTTP to HTTPS."""
    return any(
        effective_ssl_redirect(loc.settings, server.ssl_redirect) for loc in server.locations
    )


def server_lines(
    server: Server,
    *,
    proxy_headers: Sequence[tuple[str, str]] = (),
    no_auth_locations: Sequence[str] = (),
    hsts_variable: str | None = None,
    resolvers: Sequence[str] = (),
) -> list[str]:
    """Directives of a server block from annotations: server-snippet, custom error pages, the
    subrequest and sign-in locations of ``auth-url``."""
    lines: list[str] = []
    if server.app_root is not None:
        if not re.fullmatch(r"/[A-Za-z0-9._~\-/!*(),:@+=&]*", server.app_root):
            raise DirectiveError(f"refusing app-root {server.app_root!r}")
        lines += [
            "if ($uri = /) {",
            f'    return 302 "$scheme://$http_host{server.app_root}";',
            "}",
        ]
    if server.ssl_ciphers is not None:
        lines.append(f"ssl_ciphers {quote_word(server.ssl_ciphers)};")
    if server.ssl_prefer_server_ciphers is not None:
        lines.append(f"ssl_prefer_server_ciphers {on_off(server.ssl_prefer_server_ciphers)};")
    if server.snippet is not None:
        lines += server.snippet.splitlines()
    lines += error_locations((server,), proxy_headers=proxy_headers)
    lines += auth_locations(
        (
            loc.settings.external_auth
            for loc in server.locations
            if loc.settings.external_auth is not None and loc.settings.denied is None
        ),
        proxy_headers=proxy_headers,
        no_auth_locations=no_auth_locations,
        hsts_variable=hsts_variable,
        resolvers=resolvers,
    )
    return lines


def own_ssl_context(server: Server) -> bool:
    """Whether a server without a certificate of its own needs the default one written into
    its block: nginx applies ``ssl_ciphers`` of the server SNI chose only when that server
    has an SSL context, and it has one only with ``ssl_certificate``."""
    return server.certificate is None and (
        server.ssl_ciphers is not None or server.ssl_prefer_server_ciphers is not None
    )


_HOST = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\Z")


def www_redirects(servers: Sequence[Server]) -> list[tuple[str, str, str | None]]:
    """``from-to-www-redirect``: ``(quoted name redirected, quoted redirect target, file name
    of the target host's certificate or None)`` per server that has one.  The target keeps
    the scheme, the port the client used and the URI (ingress-nginx's 308)."""
    out: list[tuple[str, str, str | None]] = []
    for server in servers:
        if server.www_redirect is None:
            continue
        if not _HOST.match(server.hostname):
            raise DirectiveError(f"refusing redirect host {server.hostname!r}")
        target = f'"$scheme://{server.hostname}:$server_port$request_uri"'
        certificate = server.certificate.file_name if server.certificate is not None else None
        out.append((quote_word(server.www_redirect), target, certificate))
    return out


_VERIFY_MODES = frozenset({"on", "off", "optional", "optional_no_ca"})


def client_auth_lines(server: Server, *, secrets_dir: str) -> list[str]:
    """A server's client certificate directives (``auth-tls-*``), server-level in nginx: the
    handshake of this server's SNI asks for a certificate and verifies it against the CA (and
    CRL) files; nginx answers a failed or missing one (``on``) with 400, or redirects to the
    ``auth-tls-error-page``.  The location-level part is in ``ingressd.nginx.directives``."""
    auth = server.client_auth
    if auth is None:
        return []
    if auth.verify not in _VERIFY_MODES:
        raise DirectiveError(f"refusing ssl_verify_client {auth.verify!r}")
    lines = [
        f"ssl_client_certificate {secret_path(secrets_dir, auth.ca.file_name)};",
        f"ssl_verify_client {auth.verify};",
        f"ssl_verify_depth {int(auth.depth)};",
    ]
    if auth.crl is not None:
        lines.append(f"ssl_crl {secret_path(secrets_dir, auth.crl.file_name)};")
    if auth.error_page is not None:
        lines.append(f"error_page 495 496 = {quote_word(auth.error_page)};")
    return lines


def error_locations(
    servers: Sequence[Server],
    *,
    proxy_headers: Sequence[tuple[str, str]] = (),
    balancer_rewrite: str | None = None,
) -> list[str]:
    """The internal locations that answer ``custom-http-errors`` from the ``default-backend``
    (or ``--default-backend-service``) of the locations of ``servers``, one per backend and
    status code, with the headers ingress-nginx sends to the error backend.
    ``balancer_rewrite``: the balancer's rewrite step, written in each (``--routing lua``
    has none at http level)."""
    lines: list[str] = []
    seen: set[tuple[str, int]] = set()
    for location in (loc for server in servers for loc in server.locations):
        s = location.settings
        errors_to = s.errors_to
        if errors_to is None:
            continue
        for code in s.custom_http_errors:
            if (errors_to, code) in seen:
                continue
            seen.add((errors_to, code))
            headers = [(n, v) for n, v in proxy_headers if n not in ("X-Original-URI", "Host")] + [
                ("Host", "$best_http_host"),
                ("X-Code", str(int(code))),
                ("X-Format", "$http_accept"),
                ("X-Original-URI", "$request_uri"),
                ("X-Namespace", "$namespace"),
                ("X-Ingress-Name", "$ingress_name"),
                ("X-Service-Name", "$service_name"),
                ("X-Service-Port", "$service_port"),
            ]
            lines += [
                f"location {error_location(errors_to, code)} {{",
                "    internal;",
                "    proxy_intercept_errors off;",
                *(f"    proxy_set_header {header_word(n)} {v};" for n, v in headers),
                f"    set $proxy_upstream_name {quote_word(errors_to)};",
                "    rewrite (.*) / break;",
                *([f"    {balancer_rewrite}"] if balancer_rewrite else []),
                "    proxy_pass http://upstream_balancer;",
                "}",
            ]
    return lines


def http_lines(
    config: Configuration, *, keepalive_timeout: int = 60, keepalive_requests: int = 10000
) -> list[str]:
    """http-level directives from annotations: the rate limit zones, one set per Ingress; the
    upstream blocks of backend protocols other than plain HTTP (see ``upstream_name``), with
    the ConfigMap's ``upstream-keepalive-timeout`` and ``-requests``."""
    zones: dict[str, list[str]] = {}
    upstreams: set[str] = set()
    for server in config.servers:
        for location in server.locations:
            if location.backend is not None and location.settings.denied is None:
                upstreams.add(upstream_name(location.settings))
            limits = location.settings.limits
            if limits is None or limits.zone in zones or location.settings.denied is not None:
                continue
            zone = bare_word(limits.zone)
            lines: list[str] = []
            if limits.connections:
                lines.append(f"limit_conn_zone $binary_remote_addr zone={zone}_conn:5m;")
            if limits.rpm:
                lines.append(
                    f"limit_req_zone $binary_remote_addr zone={zone}_rpm:5m"
                    f" rate={int(limits.rpm)}r/m;"
                )
            if limits.rps:
                lines.append(
                    f"limit_req_zone $binary_remote_addr zone={zone}_rps:5m"
                    f" rate={int(limits.rps)}r/s;"
                )
            zones[limits.zone] = lines
    out = [line for zone in sorted(zones) for line in zones[zone]]
    for name in sorted(upstreams - {"upstream_balancer"}):
        out += [
            f"upstream {bare_word(name)} {{",
            "    server 0.0.0.1; # placeholder: the Lua balancer picks every peer",
            "    balancer_by_lua_block {",
            '        require("ingressd.balancer").balance()',
            "    }",
            "    keepalive 32;",
            f"    keepalive_timeout {int(keepalive_timeout)}s;",
            f"    keepalive_requests {int(keepalive_requests)};",
            "}",
        ]
    return out
