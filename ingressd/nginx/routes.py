"""Routes: Configuration -> the route table Lua matches and the settings classes nginx.conf keeps.
Pure.  Used by ``--routing lua`` (docs/routing.md).

    Configuration + RouteContext --route_table()--> RouteTable
        entries      host -> its entry's JSON text (POST /configuration/routes)
        classes      one SettingsClass per distinct set of location settings
        own_blocks   servers that keep a server block of their own (``server-snippet``,
                     client certificates: ``auth-tls-*``)
    SettingsClass + the template's proxy headers --class_body()--> the ``location @c<id>``
        block's directives (the template renders them)

A settings class is what a location's block depends on once the route's own values are taken
out: the backend, the Ingress's namespace and name and the ``default-backend`` name go to Lua
as variables, so every location with the same annotations (and the same HTTPS redirect) shares
one named location.  A new Ingress of an existing class changes only the route table.  The id is
a digest of what the block depends on (settings, the server's redirect default, the status of a
route without backend, the path of a rewrite), so the same class has the same id in any build.

Each location's directives come from ``ingressd.nginx.directives``, as for ``--routing nginx``,
with two differences: ``$ingressd_hsts_header`` (set from the route's ``hsts``) replaces the
per-server HSTS header, and ``default-backend`` is not ``set`` in the block.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ingressd.annotations.values import InvalidValue, size_in_bytes
from ingressd.model import (
    Backend,
    BackendName,
    Certificate,
    Configuration,
    Location,
    PathType,
    Server,
)
from ingressd.nginx.directives import LocationContext, location_lines
from ingressd.nginx.quoting import DirectiveError, RenderError

__all__ = [
    "RouteContext",
    "RouteTable",
    "SettingsClass",
    "certificate_uid",
    "class_body",
    "keeps_own_block",
    "route_table",
    "size_bytes",
]

_TYPES = {PathType.EXACT: "exact", PathType.PREFIX: "prefix", PathType.REGEX: "regex"}


def size_bytes(text: str) -> int:
    """An nginx size (``1m``, ``512k``, ``0``) in bytes; 0 means no limit."""
    try:
        return size_in_bytes(text)
    except InvalidValue:
        raise RenderError(f"refusing size {text!r}") from None


@dataclass(frozen=True, slots=True)
class SettingsClass:
    """One named location: the directives many routes share.

    ``location`` stands for every route of the class (its path, backend and Ingress are not
    written into the block; a backend matters only for the default ``proxy_ssl_name``).
    """

    id: str
    location: Location
    #: The server's HTTPS redirect default (``ssl-redirect`` of its TLS hosts).
    server_ssl_redirect: bool
    backend: Backend | None
    #: Largest request body in bytes (0: no limit); the router answers 413 above it.
    max_body: int


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What the route table needs from the controller's settings."""

    #: The ``Strict-Transport-Security`` value sent on HTTPS by hosts with a certificate
    #: (the ConfigMap's ``hsts-*``), or None when ``hsts`` is off.
    hsts: str | None = "max-age=31536000; includeSubDomains"
    #: ``proxy-body-size`` of the ConfigMap, the limit of locations that set none.
    proxy_body_size: str = "1m"


@dataclass(frozen=True, slots=True)
class RouteTable:
    #: Host name (``_`` for the catch-all) -> the JSON text of its entry.
    entries: Mapping[str, str]
    #: Every class a route names, sorted by id.
    classes: tuple[SettingsClass, ...]
    #: Servers rendered as their own server block (nginx picks them by name before Lua).
    own_blocks: tuple[Server, ...]
    #: Certificate uid (a digest of the PEM) -> PEM chain and key, for the Lua-routed hosts.
    certificates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Host name or alias (exact or ``*.`` wildcard) -> the uid of its certificate.
    certificate_hosts: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def class_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.classes)


def keeps_own_block(server: Server) -> bool:
    """A server that needs server-level directives of its own: ``server-snippet``, or client
    certificates (``auth-tls-*``: ``ssl_verify_client`` is chosen by the SNI's server block)."""
    if server.is_catch_all:
        return False
    return server.snippet is not None or server.client_auth is not None


def route_table(config: Configuration, context: RouteContext) -> RouteTable:
    """The route table and settings classes of ``config``.

    A server's entry and classes are kept while the builder hands on the same Server object
    (and the context is the same), so a sync after a one-Ingress change reads one server.
    """
    backends: dict[BackendName, Backend] | None = None
    classes: dict[str, SettingsClass] = {}
    entries: dict[str, str] = {}
    own: list[Server] = []
    cache = _CACHE
    kept: dict[int, _Entry] = {}
    certificates: dict[str, str] = {}
    certificate_hosts: dict[str, str] = {}
    for server in config.servers:
        if keeps_own_block(server):
            own.append(server)
            continue
        if server.certificate is not None:
            uid = certificate_uid(server.certificate)
            certificates[uid] = server.certificate.pem
            for name in (server.hostname, *server.aliases):
                certificate_hosts[name] = uid
        found = cache.get(id(server))
        if found is None or found.server is not server or found.context != context:
            if backends is None:
                backends = {b.name: b for b in config.backends}
            found = _entry(server, backends, context)
        kept[id(server)] = found
        entries[server.hostname] = found.text
        for settings_class in found.classes:
            classes.setdefault(settings_class.id, settings_class)
    cache.clear()
    cache.update(kept)
    return RouteTable(
        entries=entries,
        classes=tuple(classes[k] for k in sorted(classes)),
        own_blocks=tuple(own),
        certificates=certificates,
        certificate_hosts=certificate_hosts,
    )


def certificate_uid(certificate: Certificate) -> str:
    """The name Lua keeps a certificate under: a digest of its PEM, so a rotation is a new uid."""
    return certificate.sha256[:32]


@dataclass(frozen=True, slots=True)
class _Entry:
    server: Server
    context: RouteContext
    text: str
    classes: tuple[SettingsClass, ...]


#: id(Server) -> its entry, for the servers of the last table made (one controller per process
#: builds tables; a second table of other servers only costs the entries again).
_CACHE: dict[int, _Entry] = {}


def _entry(
    server: Server, backends: Mapping[BackendName, Backend], context: RouteContext
) -> _Entry:
    default_limit = size_bytes(context.proxy_body_size)
    routes = []
    classes: dict[str, SettingsClass] = {}
    for location in server.locations:
        settings_class = _settings_class(location, server, backends, default_limit)
        classes.setdefault(settings_class.id, settings_class)
        namespace, _, name = location.ingress.partition("/")
        routes.append(
            {
                "path": location.path,
                "type": _TYPES[location.path_type],
                "class": settings_class.id,
                "backend": location.backend,
                "status": location.status,
                "namespace": namespace,
                "ingress": name,
                "defaultBackend": location.settings.default_backend,
                "maxBody": settings_class.max_body,
            }
        )
    entry = {
        "host": server.hostname,
        "aliases": list(server.aliases),
        "hsts": context.hsts if server.certificate is not None else None,
        "appRoot": server.app_root,
        "locations": routes,
    }
    text = json.dumps(entry, separators=(",", ":"), sort_keys=True)
    return _Entry(server, context, text, tuple(classes.values()))


def _settings_class(
    location: Location,
    server: Server,
    backends: Mapping[BackendName, Backend],
    default_limit: int,
) -> SettingsClass:
    settings = location.settings
    size = settings.body_size
    limit = size_bytes(size) if size is not None else default_limit
    # What the block's text depends on, and nothing else: routes that agree share a class.
    backend = backends.get(location.backend) if location.backend else None
    if settings.default_backend is not None and not settings.custom_http_errors:
        # only custom-http-errors writes the default backend's name into the block
        settings = dataclasses.replace(settings, default_backend=None)
    key = (
        settings,
        server.ssl_redirect,
        location.backend is None and location.status,
        backend if settings.proxy_ssl is not None else None,
        location.path if settings.rewrite_target is not None else None,
        location.path_type if settings.rewrite_target is not None else None,
        limit,
    )
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
    return SettingsClass(
        id=f"c{digest}",
        location=location,
        server_ssl_redirect=server.ssl_redirect,
        backend=backend,
        max_body=limit,
    )


def class_body(
    settings_class: SettingsClass,
    *,
    proxy_headers: Sequence[tuple[str, str]],
    https_port_suffix: str,
    hsts: bool,
    secrets_dir: str,
    no_auth_locations: tuple[str, ...] = (),
) -> tuple[tuple[str, ...], str]:
    """The directives of a class's named location and its last one (``proxy_pass ...``, or
    ``return <status>`` for routes without a backend); ``RenderError`` for a refused value."""
    location = settings_class.location
    context = LocationContext(
        https_port_suffix=https_port_suffix,
        server_ssl_redirect=settings_class.server_ssl_redirect,
        # Every class repeats the header where it sets its own; its variable is empty for
        # hosts without a certificate, so hosts with and without one share classes.
        hsts=hsts,
        backend=settings_class.backend,
        secrets_dir=secrets_dir,
        proxy_headers=proxy_headers,
        lua_routed=True,
        no_auth_locations=no_auth_locations,
    )
    try:
        body = location_lines(location, context)
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
    if location.settings.denied is not None:
        return (), "return 503"
    if location.backend is None:
        return body.lines, f"return {int(location.status)}"
    return body.lines, body.pass_line
