"""Routing: Kubernetes Ingress hosts and paths -> nginx ``server_name`` and locations.  Pure.

    Server --server_name()--> the ``server_name`` value
    Server (+ backends, proxy headers, ...) --locations()--> [RenderedLocation]
        (each with its directives from ``ingressd.nginx.directives.location_lines``)
        -> templates/nginx.conf.j2 writes one ``location`` block each (``ingressd.nginx.rendering``
           hands both functions to the template)

Kubernetes Ingress semantics that nginx does not have natively are translated here:

- Prefix ``/foo`` matches ``/foo`` and ``/foo/...`` but not ``/foobar`` (element-wise): it becomes
  ``location = /foo`` plus ``location /foo/``; nginx's longest-prefix rule then gives Kubernetes'
  "longest match wins".  An Exact ``/foo`` on the same server takes the ``= /foo`` slot: Exact
  beats Prefix.
- A wildcard host ``*.foo.com`` matches exactly one label, so it becomes the regular expression
  ``~^[^.]+\\.foo\\.com$`` rather than nginx's own ``*.foo.com`` (which matches any depth).
- Regex paths (``use-regex``, ``rewrite-target``) become ``location ~*`` after all the others,
  longest first, as ingress-nginx orders them.
- An Exact path ending in ``/`` (``/foo/``) becomes the regex ``location ~ ^/foo/\\z``, first of
  the regexes: ``location = /foo/`` with ``proxy_pass`` would make nginx answer ``/foo`` with a
  301 to ``/foo/`` (auto_redirect), while Exact ``/foo/`` does not match ``/foo``.  As the first
  regex it still beats every prefix, and ``/foo`` gets what the other locations give it.

Every string from an object goes through ``ingressd.nginx.quoting`` (``RenderError`` for what it
refuses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ingressd.model import Backend, BackendName, PathType, Server
from ingressd.model.settings import DEFAULT_SETTINGS, ClientAuth
from ingressd.nginx.directives import LocationBody, LocationContext, location_lines
from ingressd.nginx.modsecurity import NO_WAF, WafDefaults
from ingressd.nginx.quoting import DirectiveError, RenderError, quote, quote_regex

__all__ = ["RenderedLocation", "locations", "server_name"]


@dataclass(frozen=True, slots=True)
class RenderedLocation:
    modifier: str
    path: str
    backend: str | None
    namespace: str
    ingress_name: str
    status: int
    #: ``path`` quoted for the ``location`` line (a regex keeps its ``$`` anchors).
    quoted_path: str = ""
    #: Directives from annotations (``ingressd.nginx.directives``), after the ``set`` lines.
    lines: tuple[str, ...] = ()
    #: ``proxy_pass http://upstream_balancer`` or its HTTPS / gRPC form.
    pass_line: str = "proxy_pass http://upstream_balancer"
    #: ``namespace``, ``ingress_name`` and ``backend`` through ``quote()`` (when there is a
    #: backend; else empty).
    quoted_namespace: str = ""
    quoted_ingress_name: str = ""
    quoted_backend: str = ""


def _one_server_name(hostname: str) -> str:
    if hostname.startswith("*."):
        quote(hostname)  # refuses anything unsafe
        suffix = re.escape(hostname[2:])
        return f'"~^[^.]+\\.{suffix}$"'
    return quote(hostname)


def server_name(server: Server) -> str:
    """The ``server_name`` value: ``_`` for the catch-all, a one-label regex for wildcards;
    then the ``server-alias`` names."""
    if server.is_catch_all:
        return "_"
    return " ".join(_one_server_name(h) for h in (server.hostname, *server.aliases))


def locations(
    server: Server,
    proxy_headers: Sequence[tuple[str, str]] = (),
    *,
    backends: Mapping[BackendName, Backend] | None = None,
    https_port_suffix: str = "",
    hsts: bool = False,
    secrets_dir: str = "",
    bodies: dict[tuple[bool, int, ClientAuth | None], LocationBody] | None = None,
    no_auth_locations: tuple[str, ...] = (),
    modsecurity: WafDefaults = NO_WAF,
) -> list[RenderedLocation]:
    """nginx locations for a server's Ingress paths, element-wise prefix and Exact-first;
    regex paths (``use-regex``) after them, longest first, as ingress-nginx orders them.

    ``bodies``: where to keep the directives of locations with default settings (they depend
    only on the server's ssl redirect, client certificate settings and the proxy headers),
    across the calls of one render (which keeps ``proxy_headers`` alive: its ``id()`` is its
    own).
    """
    exact_paths = {loc.path for loc in server.locations if loc.path_type is PathType.EXACT}
    memo_key = (server.ssl_redirect, id(proxy_headers), server.client_auth)
    out: list[RenderedLocation] = []
    regexes: list[RenderedLocation] = []
    for loc in server.locations:
        namespace, _, name = loc.ingress.partition("/")
        if loc.path_type is PathType.REGEX:
            forms = [("~* ", "^" + loc.path)]
        elif loc.path_type is PathType.EXACT and _auto_redirects(loc.path):
            forms = [("~ ", _exact_regex(loc.path))]
        elif loc.path_type is PathType.EXACT:
            forms = [("= ", loc.path)]
        elif loc.path == "/":
            forms = [("", "/")]
        elif loc.path in exact_paths:
            forms = [("", loc.path + "/")]
        else:
            forms = [("= ", loc.path), ("", loc.path + "/")]
        shared = bodies is not None and loc.settings is DEFAULT_SETTINGS
        body = bodies.get(memo_key) if shared and bodies is not None else None
        if body is None:
            context = LocationContext(
                https_port_suffix=https_port_suffix,
                server_ssl_redirect=server.ssl_redirect,
                hsts=hsts and server.certificate is not None,
                backend=(backends or {}).get(loc.backend) if loc.backend else None,
                secrets_dir=secrets_dir,
                proxy_headers=proxy_headers,
                no_auth_locations=no_auth_locations,
                client_auth=server.client_auth,
                modsecurity=modsecurity,
            )
            try:
                body = location_lines(loc, context)
            except DirectiveError as exc:
                raise RenderError(str(exc)) from exc
            if shared and bodies is not None:
                bodies[memo_key] = body
        quoted = ("", "", "")
        if loc.backend:
            quoted = (quote(namespace), quote(name), quote(loc.backend))
        regex = loc.path_type is PathType.REGEX or forms[0][0] == "~ "
        for modifier, path in forms:
            rendered = RenderedLocation(
                modifier,
                path,
                loc.backend,
                namespace,
                name,
                loc.status,
                _quote_location(path, regex=regex),
                body.lines,
                body.pass_line,
                *quoted,
            )
            (regexes if regex else out).append(rendered)
    # the exact ones (case-sensitive ``~``) first, then longest first
    regexes.sort(key=lambda r: (r.modifier != "~ ", -len(r.path), r.path))
    return out + regexes


def _auto_redirects(path: str) -> bool:
    """``location = <path>`` with ``proxy_pass`` would redirect ``path`` without its slash."""
    return len(path) > 1 and path.endswith("/")


def _exact_regex(path: str) -> str:
    """A case-sensitive regex matching ``path`` alone (``\\z``: not before a final newline,
    which a decoded ``%0A`` can put into the URI)."""
    return "^" + re.sub(r"([.^$*+?()\[\]{}|\\-])", r"\\\1", path) + "\\z"


def _quote_location(path: str, *, regex: bool) -> str:
    if not regex:
        return quote(path)
    try:
        return quote_regex(path)
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
