"""Routes: Configuration -> the route table Lua matches and the settings classes nginx.conf keeps.
Pure.  Used by ``--routing lua`` (docs/routing.md).

    Configuration + RouteContext (+ an earlier RouteTable) --route_table()--> RouteTable
        entries      host -> its entry's JSON text (POST /configuration/routes)
        classes      one SettingsClass per distinct set of location settings
        own_blocks   servers that keep a server block of their own (``server-snippet``,
                     client certificates: ``auth-tls-*``)
        certificates uid -> PEM, and host -> uid (POST /configuration/certificates)
    RouteTable (new) + RouteTable (what Lua holds) --table_changes()--> TableChanges
        the hosts to POST and DELETE, the certificates and host names to POST
    SettingsClass + the template's proxy headers --class_body()--> the ``location @c<id>``
        block's directives (the template renders them); balances_in_router() says whether
        the router runs the balancer's rewrite step for its routes

``route_table`` and ``table_changes`` look only at the servers that are not the earlier
table's very objects (ARCHITECTURE.md, invariant 2): an entry depends on its server and the
context alone, so a change of one Ingress among 10,000 makes one entry and compares one.

A settings class is what a location's block depends on once the route's own values are taken
out: the backend, the Ingress's namespace and name and the ``default-backend`` name go to Lua
as variables, so every location with the same annotations (and the same HTTPS redirect) shares
one named location.  A new Ingress of an existing class changes only the route table.  The id is
a digest of what the block depends on (settings, the server's redirect default, the status of a
route without backend, the path of a rewrite, the Service of a backend reached over TLS), so
the same class has the same id in any build.

Each location's directives come from ``ingressd.nginx.directives``, as for ``--routing nginx``,
with two differences: ``$ingressd_hsts_header`` (set from the route's ``hsts``) replaces the
per-server HSTS header, and ``default-backend`` is not ``set`` in the block.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
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
    backend_order,
    differing,
    server_order,
)
from ingressd.nginx.directives import LocationContext, location_lines
from ingressd.nginx.modsecurity import NO_WAF, WafDefaults
from ingressd.nginx.quoting import DirectiveError, RenderError

__all__ = [
    "BALANCER_REWRITE",
    "RouteContext",
    "RouteTable",
    "SettingsClass",
    "TableChanges",
    "balances_in_router",
    "certificate_uid",
    "class_body",
    "keeps_own_block",
    "route_table",
    "size_bytes",
    "table_changes",
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
    #: ``from-to-www-redirect``: (name redirected, host), sorted; nginx.conf has a server
    #: block for each.
    www_redirects: tuple[tuple[str, str], ...] = ()
    #: What the table was made of: the Configuration's servers and the context (not compared;
    #: the next table and ``table_changes`` start from them).
    servers: tuple[Server, ...] = dataclasses.field(default=(), compare=False, repr=False)
    context: RouteContext | None = dataclasses.field(default=None, compare=False, repr=False)
    _index: _Index | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def class_ids(self) -> frozenset[str]:
        return frozenset(c.id for c in self.classes)


@dataclass(frozen=True, slots=True)
class TableChanges:
    """What Lua must be sent to go from one table to another."""

    #: Hosts whose entry is new or differs (POST them), sorted.
    routes: tuple[str, ...] = ()
    #: Hosts whose entry is gone (DELETE them), sorted.
    removed: tuple[str, ...] = ()
    #: Certificates the old table lacks, by uid.
    certificates: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Host names whose certificate changed -> the new uid, or None when it has none any more.
    certificate_hosts: Mapping[str, str | None] = dataclasses.field(default_factory=dict)


def keeps_own_block(server: Server) -> bool:
    """A server that needs server-level directives of its own: ``server-snippet``, client
    certificates (``auth-tls-*``: ``ssl_verify_client`` is chosen by the SNI's server block),
    ``ssl-ciphers`` / ``ssl-prefer-server-ciphers`` (they need an SSL context of its own)."""
    if server.is_catch_all:
        return False
    return (
        server.snippet is not None
        or server.client_auth is not None
        or server.ssl_ciphers is not None
        or server.ssl_prefer_server_ciphers is not None
    )


def route_table(
    config: Configuration, context: RouteContext, previous: RouteTable | None = None
) -> RouteTable:
    """The route table and settings classes of ``config``.

    ``previous`` (any earlier table, or None) only makes it cheaper: the servers that are
    ``previous``'s very objects keep their entries (an entry depends on its server and the
    context alone), so a sync after a one-Ingress change makes one entry.  The result is the
    table made from scratch (``tests/test_routes.py`` checks it on random changes).
    """
    if previous is None or previous._index is None or previous.context != context:
        return _full_table(config, context)
    fresh, stale = differing(config.servers, previous.servers, key=server_order)
    if not fresh and not stale:
        return (
            previous
            if config.servers is previous.servers
            else dataclasses.replace(previous, servers=config.servers)
        )
    # Aliases may claim names of other servers (the later one wins): only a full walk knows.
    if (
        previous._index.aliased
        or any(s.aliases for s in fresh)
        or len(fresh) + len(stale) > 64 + len(config.servers) // 8
    ):
        return _full_table(config, context)
    return _patched_table(config, context, previous, previous._index, fresh, stale)


def table_changes(new: RouteTable, old: RouteTable | None) -> TableChanges:
    """What Lua, holding ``old`` (None: nothing), must be sent to hold ``new``.

    Looks only at the servers that are not ``old``'s very objects when both tables were made
    with the same context; else at every host.
    """
    if old is None:
        return TableChanges(
            routes=tuple(sorted(new.entries)),
            certificates=dict(new.certificates),
            certificate_hosts=dict(new.certificate_hosts),
        )
    if new is old:
        return TableChanges()
    names: Iterable[str]
    if new.context is not None and new.context == old.context:
        fresh, stale = differing(new.servers, old.servers, key=server_order)
        names = {n for s in (*fresh, *stale) for n in (s.hostname, *s.aliases)}
    else:
        names = (
            new.entries.keys()
            | old.entries.keys()
            | new.certificate_hosts.keys()
            | old.certificate_hosts.keys()
        )
    routes = sorted(h for h in names if h in new.entries and old.entries.get(h) != new.entries[h])
    removed = sorted(h for h in names if h in old.entries and h not in new.entries)
    hosts = {
        h: new.certificate_hosts.get(h)
        for h in names
        if new.certificate_hosts.get(h) != old.certificate_hosts.get(h)
    }
    fresh_uids = {u for u in hosts.values() if u is not None and u not in old.certificates}
    return TableChanges(
        routes=tuple(routes),
        removed=tuple(removed),
        certificates={u: new.certificates[u] for u in sorted(fresh_uids)},
        certificate_hosts={h: hosts[h] for h in sorted(hosts)},
    )


@dataclass(frozen=True, slots=True)
class _Entry:
    """One Lua-routed server's part of a table."""

    text: str
    #: The classes its routes name, each once, in the order of its locations.
    classes: tuple[SettingsClass, ...]


@dataclass(frozen=True, slots=True)
class _ClassUse:
    #: How many servers' entries name the class.
    servers: int
    #: The class as made for the first of those servers (``server_order``): what a table
    #: made from scratch keeps.
    first: SettingsClass
    first_at: tuple[bool, str]


@dataclass(frozen=True, slots=True)
class _Index:
    """What a table was made of, for the next one; never changed once made."""

    #: Host -> its entry, for the Lua-routed servers.
    entries: Mapping[str, _Entry]
    #: Class id -> who uses it.
    classes: Mapping[str, _ClassUse]
    #: Certificate uid -> how many servers serve it.
    certificate_servers: Mapping[str, int]
    #: Lua-routed servers with aliases (a table with any is made from scratch).
    aliased: int


def _full_table(config: Configuration, context: RouteContext) -> RouteTable:
    """The table made from scratch."""
    default_limit = size_bytes(context.proxy_body_size)
    entries: dict[str, str] = {}
    made: dict[str, _Entry] = {}
    classes: dict[str, _ClassUse] = {}
    own: list[Server] = []
    certificates: dict[str, str] = {}
    certificate_hosts: dict[str, str] = {}
    users: dict[str, int] = {}
    aliased = 0
    for server in config.servers:
        if keeps_own_block(server):
            own.append(server)
            continue
        aliased += bool(server.aliases)
        entry = _entry(server, config, context, default_limit)
        made[server.hostname] = entry
        entries[server.hostname] = entry.text
        at = server_order(server)
        for settings_class in entry.classes:
            use = classes.get(settings_class.id)
            classes[settings_class.id] = (
                _ClassUse(1, settings_class, at)
                if use is None
                else _ClassUse(use.servers + 1, use.first, use.first_at)
            )
        if server.certificate is not None:
            _add_certificate(server, certificates, certificate_hosts, users)
    return _table(
        config,
        context,
        entries,
        own,
        certificates,
        certificate_hosts,
        _Index(made, classes, users, aliased),
    )


def _add_certificate(
    server: Server,
    certificates: dict[str, str],
    certificate_hosts: dict[str, str],
    users: dict[str, int],
) -> None:
    """``server``'s certificate into a table being made: its PEM by uid, the server's names
    (host and aliases) to the uid, one more server using it."""
    assert server.certificate is not None
    uid = certificate_uid(server.certificate)
    certificates[uid] = server.certificate.pem
    users[uid] = users.get(uid, 0) + 1
    for name in (server.hostname, *server.aliases):
        certificate_hosts[name] = uid


def _patched_table(
    config: Configuration,
    context: RouteContext,
    previous: RouteTable,
    index: _Index,
    fresh: Sequence[Server],
    stale: Sequence[Server],
) -> RouteTable:
    """``previous`` with the entries of ``stale`` servers taken out and those of ``fresh``
    ones put in (no server has aliases)."""
    default_limit = size_bytes(context.proxy_body_size)
    entries = dict(previous.entries)
    made = dict(index.entries)
    classes = dict(index.classes)
    certificates = dict(previous.certificates)
    certificate_hosts = dict(previous.certificate_hosts)
    users = dict(index.certificate_servers)
    own = list(previous.own_blocks)
    lost: set[str] = set()  # classes whose first server went: found again below
    for server in stale:
        host = server.hostname
        if keeps_own_block(server):
            own = [s for s in own if s is not server]
            continue
        entry = made.pop(host)
        del entries[host]
        for settings_class in entry.classes:
            use = classes[settings_class.id]
            if use.servers == 1:
                del classes[settings_class.id]
                lost.discard(settings_class.id)
            else:
                classes[settings_class.id] = dataclasses.replace(use, servers=use.servers - 1)
                if use.first_at == server_order(server):
                    lost.add(settings_class.id)
        if server.certificate is not None:
            uid = certificate_uid(server.certificate)
            del certificate_hosts[host]
            if users[uid] == 1:
                del users[uid]
                del certificates[uid]
            else:
                users[uid] -= 1
    for server in fresh:
        if keeps_own_block(server):
            own.append(server)
            continue
        entry = _entry(server, config, context, default_limit)
        made[server.hostname] = entry
        entries[server.hostname] = entry.text
        at = server_order(server)
        for settings_class in entry.classes:
            found = classes.get(settings_class.id)
            if found is None:
                classes[settings_class.id] = _ClassUse(1, settings_class, at)
            elif at < found.first_at and settings_class.id not in lost:
                classes[settings_class.id] = _ClassUse(found.servers + 1, settings_class, at)
            else:
                classes[settings_class.id] = dataclasses.replace(found, servers=found.servers + 1)
        if server.certificate is not None:
            _add_certificate(server, certificates, certificate_hosts, users)
    if lost:
        _find_first_users(config.servers, made, classes, lost)
    own.sort(key=server_order)
    return _table(
        config,
        context,
        entries,
        own,
        certificates,
        certificate_hosts,
        _Index(made, classes, users, 0),
    )


def _find_first_users(
    servers: Sequence[Server],
    made: Mapping[str, _Entry],
    classes: dict[str, _ClassUse],
    lost: set[str],
) -> None:
    """Give each class of ``lost`` its first server again, walking the servers in order."""
    for server in servers:
        entry = made.get(server.hostname)
        if entry is None:
            continue
        for settings_class in entry.classes:
            if settings_class.id in lost:
                lost.discard(settings_class.id)
                use = classes[settings_class.id]
                classes[settings_class.id] = _ClassUse(
                    use.servers, settings_class, server_order(server)
                )
        if not lost:
            return


def _table(
    config: Configuration,
    context: RouteContext,
    entries: dict[str, str],
    own: list[Server],
    certificates: dict[str, str],
    certificate_hosts: dict[str, str],
    index: _Index,
) -> RouteTable:
    return RouteTable(
        entries=entries,
        classes=tuple(index.classes[k].first for k in sorted(index.classes)),
        own_blocks=tuple(own),
        certificates=certificates,
        certificate_hosts=certificate_hosts,
        www_redirects=tuple(
            sorted((s.www_redirect, s.hostname) for s in config.servers if s.www_redirect)
        ),
        servers=config.servers,
        context=context,
        _index=index,
    )


def certificate_uid(certificate: Certificate) -> str:
    """The name Lua keeps a certificate under: a digest of its PEM, so a rotation is a new uid."""
    return certificate.sha256[:32]


def _entry(
    server: Server, config: Configuration, context: RouteContext, default_limit: int
) -> _Entry:
    routes = []
    classes: dict[str, SettingsClass] = {}
    for location in server.locations:
        settings_class = _settings_class(location, server, config, default_limit)
        classes.setdefault(settings_class.id, settings_class)
        namespace, _, name = location.ingress.partition("/")
        service: dict[str, str] = {}
        if location.backend and location.settings.errors_to is not None:
            # X-Service-Name / X-Service-Port of the error backend's request
            found = _backend(config, location.backend)
            if found is not None:
                service = {"service": found.service, "servicePort": found.service_port}
        routes.append(
            {
                **service,
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
    return _Entry(text, tuple(classes.values()))


def _settings_class(
    location: Location, server: Server, config: Configuration, default_limit: int
) -> SettingsClass:
    settings = location.settings
    size = settings.body_size
    limit = size_bytes(size) if size is not None else default_limit
    # What the block's text depends on, and nothing else: routes that agree share a class.
    # A backend matters for the default ``proxy_ssl_name`` alone: its Service, not its pods.
    backend = (
        _backend(config, location.backend)
        if location.backend and settings.proxy_ssl is not None
        else None
    )
    if settings.default_backend is not None and settings.errors_to != settings.default_backend:
        # only custom-http-errors sent to it write the default backend's name into the block
        settings = dataclasses.replace(settings, default_backend=None)
    key = (
        settings,
        server.ssl_redirect,
        location.backend is None and location.status,
        (backend.namespace, backend.service) if backend is not None else None,
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


def _backend(config: Configuration, name: BackendName) -> Backend | None:
    """The backend called ``name`` without its endpoints and policy, found by bisection."""
    backends = config.backends
    at = bisect.bisect_left(backends, name, key=backend_order)
    if at < len(backends) and backends[at].name == name:
        return backends[at].structure()
    return None


#: The balancer's rewrite step (``ingressd.balancer``): http level in ``--routing nginx``; in
#: ``--routing lua`` written where a location needs it (``balances_in_router``).
BALANCER_REWRITE = 'rewrite_by_lua_block { require("ingressd.balancer").rewrite() }'

#: What a class's block may hold for the router to run the balancer's rewrite step itself:
#: directives that act only in the content phase and on no answer of the router's own (503).
_CONTENT_ONLY = re.compile(
    r"(?:proxy|grpc)_[a-z_]+ |client_body_buffer_size |client_max_body_size "
)


def balances_in_router(lines: Sequence[str], tail: str) -> bool:
    """Whether the router runs the balancer's rewrite step (canary, default backend, 503) for
    the routes of a class whose named location holds ``lines`` and ``tail``: it proxies, and
    nothing in it could act before that step in a location (rewrite-phase directives, a
    snippet, WAF rules) or change the router's 503 (``error_page``, ``add_header``).  Such a
    named location then runs no Lua before the content phase (a handler fewer per request);
    any other gets ``BALANCER_REWRITE``, as every location had it from the http level."""
    return tail.startswith(("proxy_pass ", "grpc_pass ")) and all(
        line == "modsecurity off;" or _CONTENT_ONLY.match(line) for line in lines
    )


def class_body(
    settings_class: SettingsClass,
    *,
    proxy_headers: Sequence[tuple[str, str]],
    https_port_suffix: str,
    hsts: bool,
    secrets_dir: str,
    no_auth_locations: tuple[str, ...] = (),
    modsecurity: WafDefaults = NO_WAF,
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
        modsecurity=modsecurity,
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
