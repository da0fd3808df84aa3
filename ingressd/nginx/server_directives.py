"""Server and http directives from annotations: Server / Configuration -> nginx.conf lines.  Pure.

    Server (+ its locations)   --server_lines()------> lines (app-root, server-snippet,
                                                        custom error page locations)
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
from ingressd.nginx.quoting import DirectiveError, bare_header, bare_word, quote_word

__all__ = [
    "client_auth_lines",
    "error_locations",
    "http_lines",
    "server_lines",
    "server_redirects",
]


def server_redirects(server: Server) -> bool:
    """Whether any location of ``server`` redirects HTTP to HTTPS."""
    return any(
        effective_ssl_redirect(loc.settings, server.ssl_redirect) for loc in server.locations
    )


def server_lines(server: Server, *, proxy_headers: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Directives of a server block from annotations: server-snippet, custom error pages."""
    lines: list[str] = []
    if server.app_root is not None:
        if not re.fullmatch(r"/[A-Za-z0-9._~\-/!*(),:@+=&]*", server.app_root):
            raise DirectiveError(f"refusing app-root {server.app_root!r}")
        lines += [
            "if ($uri = /) {",
            f'    return 302 "$scheme://$http_host{server.app_root}";',
            "}",
        ]
    if server.snippet is not None:
        lines += server.snippet.splitlines()
    lines += error_locations((server,), proxy_headers=proxy_headers)
    return lines


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
    servers: Sequence[Server], *, proxy_headers: Sequence[tuple[str, str]] = ()
) -> list[str]:
    """The internal locations that answer ``custom-http-errors`` from the ``default-backend``
    of the locations of ``servers``, one per backend and status code."""
    lines: list[str] = []
    seen: set[tuple[str, int]] = set()
    for location in (loc for server in servers for loc in server.locations):
        s = location.settings
        if s.default_backend is None or s.denied is not None:
            continue
        for code in s.custom_http_errors:
            if (s.default_backend, code) in seen:
                continue
            seen.add((s.default_backend, code))
            headers = [(n, v) for n, v in proxy_headers if n not in ("X-Original-URI", "Host")] + [
                ("Host", "$best_http_host"),
                ("X-Code", str(int(code))),
                ("X-Format", "$http_accept"),
                ("X-Original-URI", "$request_uri"),
                ("X-Namespace", "$namespace"),
                ("X-Ingress-Name", "$ingress_name"),
            ]
            lines += [
                f"location {error_location(s.default_backend, code)} {{",
                "    internal;",
                "    proxy_intercept_errors off;",
                *(f"    proxy_set_header {bare_header(n)} {v};" for n, v in headers),
                f"    set $proxy_upstream_name {quote_word(s.default_backend)};",
                "    rewrite (.*) / break;",
                "    proxy_pass http://upstream_balancer;",
                "}",
            ]
    return lines


def http_lines(config: Configuration) -> list[str]:
    """http-level directives from annotations: the rate limit zones, one set per Ingress; the
    upstream blocks of backend protocols other than plain HTTP (see ``upstream_name``)."""
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
            "    keepalive_timeout 60s;",
            "    keepalive_requests 10000;",
            "}",
        ]
    return out
