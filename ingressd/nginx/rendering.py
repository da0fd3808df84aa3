"""Rendering: Configuration -> nginx.conf text (jinja2, ``templates/nginx.conf.j2``).

    Configuration + RenderSettings + NginxPaths --render()--> str
        server_name, locations   <- ingressd.nginx.routing (Ingress semantics, directives)
        server / http lines      <- ingressd.nginx.server_directives
        unchanged server blocks  <- ingressd.nginx.caching

Pure in behaviour: the template is loaded once, and each server block's text is kept (by the
Server object, per template + settings + paths, two renders deep) and reused while the builder
hands on the same Server: a render after a one-Ingress change renders one block and joins
the others (benchmarks/RESULTS.md has the figures).  The template contract for that
(``--template``): it gets ``servers`` and ``server_blocks(macro)``;
``{{ server_blocks(server_block) }}`` puts every server's ``server_block(server)`` macro output
there (the call returns a placeholder that must appear as is); a block must depend only on
its server and on what every render gets alike (settings, paths, the helpers), never on
``generation``.  A template may also loop over ``servers`` itself, without reuse.

Every string from an object goes through ``ingressd.nginx.quoting``, which refuses
(``RenderError``) anything that could escape a quoted nginx string, as a last line of defence
behind the builder's validation.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressd.memory import gc_paused
from ingressd.model import Configuration, Server
from ingressd.model.settings import DEFAULT_SETTINGS, HeaderValue
from ingressd.nginx.caching import (
    LazyBackends,
    ServerBlock,
    adds_http_lines,
    backend_facts,
    block_cache,
)
from ingressd.nginx.external_auth import auth_http_lines, auth_locations, configuration_auths
from ingressd.nginx.modsecurity import NO_WAF, WafDefaults, http_setup
from ingressd.nginx.quoting import (
    DirectiveError,
    RenderError,
    header_word,
    quote,
    quote_header,
    quote_header_name,
    quote_log_format,
    quote_path,
)
from ingressd.nginx.routes import (
    BALANCER_REWRITE,
    RouteContext,
    RouteTable,
    SettingsClass,
    balances_in_router,
    class_body,
    route_table,
)
from ingressd.nginx.routing import locations, server_name
from ingressd.nginx.server_directives import (
    client_auth_lines,
    error_locations,
    http_lines,
    own_ssl_context,
    server_lines,
    server_redirects,
    www_redirects,
)


def resource_root(package_file: Path, prefix: Path) -> Path:
    """Where ``templates/``, ``lua/`` and ``manifests/demo/`` are.

    In a checkout or an editable install, beside the ``ingressd`` package; in an installed
    wheel, under ``<prefix>/share/ingressd`` (``[tool.setuptools.data-files]``).
    """
    checkout = package_file.resolve().parents[2]
    if (checkout / "templates" / "nginx.conf.j2").is_file():
        return checkout
    return prefix / "share" / "ingressd"


#: Where the template, the Lua code and the demo's manifests are.
PROJECT_ROOT = resource_root(Path(__file__), Path(sys.prefix))
DEFAULT_TEMPLATE = PROJECT_ROOT / "templates" / "nginx.conf.j2"


#: More passthrough backends than this are not rendered (a socket path each, ``p<i>.sock``).
MAX_PASSTHROUGH_BACKENDS = 9999

#: Longest path a Unix socket takes (``sun_path`` is 108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 107


class WorkDirError(ValueError):
    """The work dir cannot hold nginx's files: its control socket path would be too long, or
    nginx's unprivileged workers could not reach it."""


@dataclass(frozen=True, slots=True)
class NginxPaths:
    """Files and directories of one nginx instance, all inside its work dir.

    Raises ``WorkDirError`` when the control socket's path would not fit a Unix socket.
    """

    work_dir: Path

    def __post_init__(self) -> None:
        # The longest socket path: the control socket's, or a passthrough backend's.
        for socket in (self.control_socket, self.passthrough_socket(MAX_PASSTHROUGH_BACKENDS)):
            size = len(os.fsencode(socket))
            if size > MAX_SOCKET_PATH:
                raise WorkDirError(
                    f"work dir {str(self.work_dir)!r} is too long: the socket {socket} would "
                    f"be {size} bytes, a Unix socket path takes at most {MAX_SOCKET_PATH}; "
                    "choose a shorter --work-dir"
                )

    @property
    def control_dir(self) -> Path:
        """The control socket's directory, 0700: only the controller's user may connect."""
        return self.work_dir / "control"

    @property
    def control_socket(self) -> str:
        """nginx's control endpoint (Lua configuration, health, generation): a Unix socket,
        never a TCP port, so that no request nginx proxies can reach it."""
        return str(self.control_dir / "nginx.sock")

    @property
    def conf(self) -> Path:
        return self.work_dir / "nginx.conf"

    @property
    def pid(self) -> str:
        return str(self.work_dir / "nginx.pid")

    @property
    def logs(self) -> Path:
        return self.work_dir / "logs"

    @property
    def error_log(self) -> str:
        return str(self.logs / "error.log")

    @property
    def access_log(self) -> str:
        return str(self.logs / "access.log")

    @property
    def temp(self) -> str:
        return str(self.work_dir / "temp")

    @property
    def lua(self) -> str:
        return str(self.work_dir / "lua")

    @property
    def certs(self) -> str:
        return str(self.work_dir / "certs")

    @property
    def default_certificate(self) -> str:
        return str(self.work_dir / "certs" / "default.pem")

    @property
    def stream(self) -> str:
        """The stream block's files: one peer list per backend (``<backend>.json``, read by
        njs per connection) and the internal sockets of TLS passthrough; 0755, read by the
        workers."""
        return str(self.work_dir / "stream")

    def stream_peers(self, backend: str) -> str:
        return f"{self.stream}/{backend}.json"

    @property
    def https_socket(self) -> str:
        """``--enable-ssl-passthrough``: the HTTPS servers' listener behind the stream front
        (PROXY protocol, so the client's address is kept)."""
        return f"{self.stream}/https.sock"

    def passthrough_socket(self, index: int) -> str:
        """``--enable-ssl-passthrough``: where the front hands the connections of the
        passthrough hosts of the ``index``-th passthrough backend (its server picks the pod);
        numbered, since a backend name can be longer than a Unix socket path may be."""
        return f"{self.stream}/p{int(index)}.sock"

    @property
    def modsecurity(self) -> str:
        """ModSecurity's base configuration and CRS include (``ingressd.nginx.modsecurity``)."""
        return str(self.work_dir / "modsecurity")

    @property
    def secrets(self) -> str:
        """Files made from Secrets that annotations name (htpasswd, CA bundles), 0600."""
        return str(self.work_dir / "secrets")


#: ingress-nginx's ``ssl-ciphers`` default (TLS 1.2; TLS 1.3 suites are OpenSSL's own).
DEFAULT_SSL_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256"
)


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Controller-wide settings written into nginx.conf (ingress-nginx's defaults)."""

    http_port: int = 80
    https_port: int = 443
    worker_processes: str = "auto"
    worker_shutdown_timeout: str = "240s"
    worker_user: str | None = None
    error_log_level: str = "notice"
    proxy_body_size: str = "1m"
    proxy_connect_timeout: str = "5s"
    proxy_read_timeout: str = "60s"
    proxy_send_timeout: str = "60s"
    upstream_keepalive_connections: int = 320
    lua_shared_dict_size: str = "64m"
    # ConfigMap options (ingressd.pipeline.configmap validates them before they get here).
    hsts: bool = True
    hsts_max_age: int = 31536000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    use_forwarded_headers: bool = False
    forwarded_for_header: str = "X-Forwarded-For"
    proxy_real_ip_cidr: tuple[str, ...] = ("0.0.0.0/0",)
    #: The client address from ``forwarded_for_header`` (without the other X-Forwarded-*).
    enable_real_ip: bool = False
    #: The HTTP/HTTPS listeners take a PROXY protocol header; the client address from it.
    use_proxy_protocol: bool = False
    proxy_protocol_header_timeout: str = "5s"
    #: X-Forwarded-For: the header received, then the peer (instead of the client alone).
    compute_full_forwarded_for: bool = False
    #: ``None``: the template's built-in ``upstreaminfo`` format.
    log_format_upstream: str | None = None
    #: Path prefixes where authentication does not apply (``no-auth-locations``).
    no_auth_locations: tuple[str, ...] = ("/.well-known/acme-challenge",)
    #: ``add-headers``: response headers of every answer (``more_set_headers``).
    add_headers: tuple[tuple[str, HeaderValue], ...] = ()
    #: ``proxy-set-headers``: request headers to the pods, after the template's own.
    proxy_set_headers: tuple[tuple[str, HeaderValue], ...] = ()
    #: ``hide-headers``: response headers of the pods nginx does not pass on.
    hide_headers: tuple[str, ...] = ()
    ssl_protocols: tuple[str, ...] = ("TLSv1.2", "TLSv1.3")
    ssl_ciphers: str = DEFAULT_SSL_CIPHERS
    upstream_keepalive_timeout: int = 60
    upstream_keepalive_requests: int = 10000
    client_header_buffer_size: str = "1k"
    #: ``<number> <size>``.
    large_client_header_buffers: str = "4 8k"
    #: Pass the pods' ``Server`` header (else nginx hides it).
    allow_backend_server_header: bool = False
    #: ``Server: nginx/1.22.1``; off: no ``Server`` header at all (headers-more).
    server_tokens: bool = False
    #: Nameservers (``/etc/resolv.conf``'s) for auth services given by name (``auth-url``).
    resolvers: tuple[str, ...] = ()
    #: ``lua``: one catch-all server, routes decided by Lua, a named location per settings
    #: class (docs/routing.md); ``nginx``: a server block per host, locations per path.
    routing: str = "lua"
    #: ``--enable-ssl-passthrough``: the HTTPS port is a stream listener that reads the SNI
    #: name (ssl_preread); the HTTPS servers listen on an internal socket behind it.
    ssl_passthrough: bool = False
    #: ``enable-modsecurity``, ``enable-owasp-modsecurity-crs``, ``modsecurity-snippet``.
    modsecurity: WafDefaults = NO_WAF


def route_context(settings: RenderSettings) -> RouteContext:
    """What the route table takes from the nginx.conf settings (``--routing lua``)."""
    return RouteContext(
        hsts=hsts_value(settings) if settings.hsts else None,
        proxy_body_size=settings.proxy_body_size,
    )


def hsts_value(settings: RenderSettings) -> str:
    """The ``Strict-Transport-Security`` header value of the ConfigMap's ``hsts-*`` options."""
    value = f"max-age={int(settings.hsts_max_age)}"
    if settings.hsts_include_subdomains:
        value += "; includeSubDomains"
    if settings.hsts_preload:
        value += "; preload"
    return value


def header_http_lines(settings: RenderSettings) -> list[str]:
    """``add-headers`` and ``hide-headers``, for the http block; ``RenderError`` if refused."""
    try:
        lines = [
            f"more_set_headers {quote_header(value.parts, name)};"
            for name, value in settings.add_headers
        ]
        lines += [f"proxy_hide_header {quote_header_name(n)};" for n in settings.hide_headers]
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
    return lines


def with_proxy_set_headers(
    settings: RenderSettings, builtin: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The template's ``proxy_set_header`` pairs with ``proxy-set-headers``: a name the
    template sets gets the ConfigMap's value, the others follow (names and values quoted)."""
    try:
        extra = {
            name.lower(): (header_word(name), quote_header(v.parts))
            for name, v in settings.proxy_set_headers
        }
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
    pairs = [extra.pop(name.lower(), (name, value)) for name, value in builtin]
    return pairs + list(extra.values())


def _www_redirects(config: Configuration) -> list[tuple[str, str, str | None]]:
    try:
        return www_redirects(config.servers)
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc


def _server_lines(
    server: Server,
    proxy_headers: Sequence[tuple[str, str]] = (),
    *,
    settings: RenderSettings,
) -> list[str]:
    hsts = settings.hsts and server.certificate is not None
    try:
        return server_lines(
            server,
            proxy_headers=proxy_headers,
            no_auth_locations=settings.no_auth_locations,
            hsts_variable="$hsts_header" if hsts else None,
            resolvers=settings.resolvers,
        )
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc


def _hash_sizes(config: Configuration) -> tuple[int, int]:
    """server_names_hash_{max,bucket}_size big enough for these host names."""
    longest = max((len(s.hostname) for s in config.servers), default=1)
    bucket = 64
    while bucket < longest + 32:
        bucket *= 2
    max_size = 512
    while max_size < 2 * len(config.servers):
        max_size *= 2
    return max_size, bucket


@functools.lru_cache(maxsize=4)
def _environment(template: Path) -> jinja2.Template:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
    )
    return env.get_template(template.name)


def render(
    config: Configuration,
    *,
    settings: RenderSettings,
    paths: NginxPaths,
    generation: int,
    template: Path = DEFAULT_TEMPLATE,
    keep_classes: Sequence[SettingsClass] = (),
    table: RouteTable | None = None,
) -> str:
    """The whole nginx.conf for ``config``; raises ``RenderError`` for an unsafe value.

    ``keep_classes`` (``--routing lua``): settings classes to render besides ``config``'s own,
    those the route table Lua holds still names until the new table is sent after the reload.
    ``table`` (``--routing lua``): ``config``'s route table with these settings, when the
    caller has it (else it is made here).

    The template gets ``servers`` and ``server_blocks(macro)``: that renders each server with
    the template's ``macro(server)`` and joins the blocks, reusing the text made for the same
    ``Server`` object by an earlier render with the same template, settings and paths (the
    builder hands on an unchanged Server as the same object).  A block must depend only on its
    server and the render's settings and paths, never on ``generation`` or other servers.
    """
    with gc_paused():
        return _render(config, settings, paths, generation, template, keep_classes, table)


def _render(
    config: Configuration,
    settings: RenderSettings,
    paths: NginxPaths,
    generation: int,
    template: Path,
    keep_classes: Sequence[SettingsClass],
    table: RouteTable | None,
) -> str:
    compiled = _environment(template)
    cache = block_cache(compiled, settings, paths)
    backends = LazyBackends(config)
    blocks: dict[int, ServerBlock] = {}
    contributing: list[Server] = []
    lua_routed = settings.routing == "lua"
    if lua_routed and table is None:
        table = route_table(config, route_context(settings))
    elif not lua_routed:
        table = None
    block_servers = table.own_blocks if table is not None else config.servers
    for server in block_servers:
        block = cache.get(server)
        if (
            block is not None
            and block.backends
            and block.backends != backend_facts(server, backends)
        ):
            block = None
        if block is None:
            block = ServerBlock(server, adds_http_lines(server))
        blocks[id(server)] = block
        if block.http:
            contributing.append(server)
    max_size, bucket = _hash_sizes(Configuration(servers=tuple(block_servers)))
    https_suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
    proxy_protocol = " proxy_protocol" if settings.use_proxy_protocol else ""
    listen_http = f"{int(settings.http_port)}{proxy_protocol}"
    listen_https = (
        f"{quote_path('unix:' + paths.https_socket)} proxy_protocol"
        if settings.ssl_passthrough
        else f"{int(settings.https_port)}{proxy_protocol}"
    )
    classes = _with_kept(table.classes, keep_classes) if table is not None else ()
    auths = (
        [c.location.settings.external_auth for c in classes]
        if lua_routed
        else configuration_auths(Configuration(servers=tuple(contributing)))
    )
    try:
        annotation_http_lines = http_lines(
            config if lua_routed else Configuration(servers=tuple(contributing)),
            keepalive_timeout=settings.upstream_keepalive_timeout,
            keepalive_requests=settings.upstream_keepalive_requests,
        )
        annotation_http_lines += auth_http_lines(auths, paths.temp + "/auth_cache")
        waf = http_setup(
            config,
            settings.modsecurity,
            paths.modsecurity,
            also=(c.location.settings for c in keep_classes) if lua_routed else (),
        )
    except (DirectiveError, ValueError) as exc:
        raise RenderError(str(exc)) from exc
    located = functools.partial(
        locations,
        no_auth_locations=settings.no_auth_locations,
        backends=backends,
        https_port_suffix=https_suffix,
        hsts=settings.hsts,
        secrets_dir=paths.secrets,
        bodies={},
        modsecurity=settings.modsecurity,
    )

    parts: list[str] = []

    def server_blocks(macro: Callable[[Server], str]) -> str:
        """Render the blocks not cached; the template gets a placeholder, replaced by the
        blocks below (one copy of a 10 MB text instead of two)."""
        if not parts:
            for server in block_servers:
                block = blocks[id(server)]
                if block.text is None:
                    block.text = str(macro(server))
                    block.backends = backend_facts(server, backends)
                parts.append(block.text)
        return _BLOCKS_PLACEHOLDER

    def body_of(
        settings_class: SettingsClass, proxy_headers: Sequence[tuple[str, str]]
    ) -> tuple[tuple[str, ...], str]:
        return class_body(
            settings_class,
            no_auth_locations=settings.no_auth_locations,
            proxy_headers=proxy_headers,
            https_port_suffix=https_suffix,
            hsts=settings.hsts,
            secrets_dir=paths.secrets,
            modsecurity=settings.modsecurity,
        )

    # The classes whose routes the router balances (``balances_in_router``; what it says does
    # not depend on the proxy headers, all content-phase lines): one decision for both the
    # init_by_lua list and the blocks.
    balanced = frozenset(
        c.id for c in classes if lua_routed and balances_in_router(*body_of(c, ()))
    )

    def class_lines(
        settings_class: SettingsClass, proxy_headers: Sequence[tuple[str, str]]
    ) -> tuple[tuple[str, ...], str]:
        """A class's directives; the balancer's rewrite step first unless the router runs it."""
        lines, tail = body_of(settings_class, proxy_headers)
        if settings_class.id not in balanced:
            lines = (BALANCER_REWRITE, *lines)
        return lines, tail

    def router_balanced() -> str:
        """``balanced`` as a Lua array of strings, for init_by_lua."""
        ids = sorted(balanced)
        for class_id in ids:
            if not _CLASS_ID.fullmatch(class_id):
                raise RenderError(f"refusing settings class id {class_id!r}")
        return "{" + ", ".join(f'"{class_id}"' for class_id in ids) + "}"

    # The home class: one balanced class whose routes the catch-all's ``location /`` serves
    # itself, with no ``ngx.exec`` into its named location (a second pass through the
    # handlers per request). The one of default settings if routes use it, else the first
    # balanced one; it changes only with the set of classes, which a reload applies anyway.
    # None while the ModSecurity module is loaded: ``location /`` keeps it off then, so that
    # a request is inspected once, by its class's rules in the named location.
    home = min(
        (c for c in classes if c.id in balanced and not waf.module),
        key=lambda c: (c.location.settings != DEFAULT_SETTINGS, c.id),
        default=None,
    )

    def home_lines(proxy_headers: Sequence[tuple[str, str]]) -> tuple[tuple[str, ...], str]:
        """The home class's directives for ``location /``, but those it sets already (the
        router answers 413, ModSecurity off); ``((), "")`` without a home class."""
        if home is None:
            return (), ""
        lines, tail = body_of(home, proxy_headers)
        kept = tuple(line for line in lines if not line.startswith(_SET_BY_CATCH_ALL))
        return kept, tail

    def router_home() -> str:
        """The home class's id as a Lua string, or ``nil``."""
        return "nil" if home is None else f'"{home.id}"'

    # location /'s client_max_body_size: the largest limit of the classes (none if one has
    # none), so that nginx's own check there refuses no route's body; the router checks the
    # routes of a smaller limit.
    limits = [c.max_body for c in classes]
    body_limit = 0 if not limits or 0 in limits else max(limits)

    def entry_body_limit() -> int:
        return body_limit

    def router_writes() -> str:
        """Replaced once the whole text is known: the route variables it reads."""
        return _WRITES_PLACEHOLDER

    def class_auth_locations(proxy_headers: Sequence[tuple[str, str]]) -> list[str]:
        """The auth subrequest and sign-in locations of the settings classes (lua)."""
        try:
            return auth_locations(
                (
                    c.location.settings.external_auth
                    for c in classes
                    if c.location.settings.external_auth is not None
                    and c.location.settings.denied is None
                ),
                proxy_headers=proxy_headers,
                no_auth_locations=settings.no_auth_locations,
                hsts_variable="$ingressd_hsts" if settings.hsts else None,
                resolvers=settings.resolvers,
            )
        except DirectiveError as exc:
            raise RenderError(str(exc)) from exc

    def server_client_auth_lines(server: Server) -> list[str]:
        try:
            return client_auth_lines(server, secrets_dir=paths.secrets)
        except DirectiveError as exc:
            raise RenderError(str(exc)) from exc

    def all_error_locations(proxy_headers: Sequence[tuple[str, str]]) -> list[str]:
        try:
            return error_locations(
                config.servers, proxy_headers=proxy_headers, balancer_rewrite=BALANCER_REWRITE
            )
        except DirectiveError as exc:
            raise RenderError(str(exc)) from exc

    text = compiled.render(
        servers=block_servers,
        routing=settings.routing,
        settings_classes=classes,
        class_lines=class_lines,
        router_balanced=router_balanced,
        router_home=router_home,
        router_writes=router_writes,
        entry_body_limit=entry_body_limit,
        home_lines=home_lines,
        balancer_rewrite=BALANCER_REWRITE,
        error_locations=all_error_locations,
        auth_locations=class_auth_locations,
        server_blocks=server_blocks,
        settings=settings,
        paths=paths,
        q=quote,
        qp=quote_path,
        ql=quote_log_format,
        server_name=server_name,
        locations=located,
        server_lines=functools.partial(_server_lines, settings=settings),
        server_redirects=server_redirects,
        own_ssl_context=own_ssl_context,
        www_redirects=_www_redirects(config),
        client_auth_lines=server_client_auth_lines,
        annotation_http_lines=annotation_http_lines,
        header_http_lines=header_http_lines(settings),
        with_proxy_set_headers=functools.partial(with_proxy_set_headers, settings),
        modsecurity=waf,
        generation=int(generation),
        worker_user=settings.worker_user,
        listen_http=listen_http,
        listen_https=listen_https,
        streams=config.streams,
        passthrough_sockets={
            backend: quote_path("unix:" + paths.passthrough_socket(i))
            for i, backend in enumerate(
                sorted({p.backend for p in config.streams.passthrough})[:MAX_PASSTHROUGH_BACKENDS]
            )
        },
        stream_block=bool(
            config.streams.services or config.streams.passthrough or settings.ssl_passthrough
        ),
        https_port_suffix=https_suffix,
        server_names_hash_max_size=max_size,
        server_names_hash_bucket_size=bucket,
    )
    cache.commit({key: block for key, block in blocks.items() if block.text is not None})
    pieces = text.split(_BLOCKS_PLACEHOLDER)
    if len(pieces) > 1:
        out: list[str] = [pieces[0]]
        for piece in pieces[1:]:
            out += parts
            out.append(piece)
        text = "".join(out)
    if _WRITES_PLACEHOLDER in text:
        read = [name for name in ROUTER_VARIABLES if _reads(text, name)]
        text = text.replace(_WRITES_PLACEHOLDER, "{" + ", ".join(f'"{n}"' for n in read) + "}")
    return text


#: The route's variables the router writes only when nginx.conf reads them (a log format,
#: a header, the custom error locations): each write costs a lookup by name per request.
#: ``$proxy_upstream_name`` and ``$ingressd_default_backend`` are always written (the
#: balancer reads them).
ROUTER_VARIABLES = ("namespace", "ingress_name", "service_name", "service_port")


def _reads(text: str, name: str) -> bool:
    """Whether ``text`` reads the variable ``name`` anywhere but as ``set``'s target."""
    return re.search(rf"(?<!set )\$(?:{name}(?![A-Za-z0-9_])|\{{{name}\}})", text) is not None


def _with_kept(
    classes: Sequence[SettingsClass], kept: Sequence[SettingsClass]
) -> tuple[SettingsClass, ...]:
    by_id = {c.id: c for c in kept}
    by_id.update((c.id, c) for c in classes)
    return tuple(by_id[k] for k in sorted(by_id))


#: What ``server_blocks()`` returns inside the template (no template writes NUL).
_BLOCKS_PLACEHOLDER = "\x00ingressd server blocks\x00"
#: What ``router_writes()`` returns inside the template.
_WRITES_PLACEHOLDER = "\x00ingressd router writes\x00"
#: A settings class id as ``ingressd.nginx.routes`` makes it (and Lua's validation takes it).
#: Directives ``location /`` of the catch-all sets itself: a home class's own are left out.
_SET_BY_CATCH_ALL = ("client_max_body_size ",)

_CLASS_ID = re.compile(r"c[0-9a-f]{1,63}")
