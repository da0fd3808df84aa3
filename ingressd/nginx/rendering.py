"""Rendering: Configuration -> nginx.conf text (jinja2, ``templates/nginx.conf.j2``).

    Configuration + RenderSettings + NginxPaths --render()--> str

Pure in behaviour: the template is loaded once, and each server block's text is kept (by the
Server object, per template + settings + paths, two renders deep) and reused while the builder
hands on the same Server: a render after a one-Ingress change renders one block and joins
10,000 (~10 ms instead of ~0.3 s).  The template contract for that (``--template``): it gets
``servers`` and ``server_blocks(macro)``; ``{{ server_blocks(server_block) }}`` puts every
server's ``server_block(server)`` macro output there (the call returns a placeholder that
must appear as is); a block must depend only on its server and on what every render gets
alike (settings, paths, the helpers), never on ``generation``.  A template may also loop over
``servers`` itself, without reuse.

Kubernetes Ingress semantics that nginx does not have natively are translated here:

- Prefix ``/foo`` matches ``/foo`` and ``/foo/...`` but not ``/foobar`` (element-wise): it becomes
  ``location = /foo`` plus ``location /foo/``; nginx's longest-prefix rule then gives Kubernetes'
  "longest match wins".  An Exact ``/foo`` on the same server takes the ``= /foo`` slot: Exact
  beats Prefix.
- A wildcard host ``*.foo.com`` matches exactly one label, so it becomes the regular expression
  ``~^[^.]+\\.foo\\.com$`` rather than nginx's own ``*.foo.com`` (which matches any depth).

Every string from an object goes through ``quote()``, which refuses (``RenderError``) anything
that could escape a quoted nginx string, as a last line of defence behind the builder's
validation.
"""

from __future__ import annotations

import collections
import functools
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressd.memory import gc_paused
from ingressd.model import (
    DEFAULT_SETTINGS,
    Backend,
    BackendName,
    Configuration,
    PathType,
    Server,
)
from ingressd.nginx.directives import (
    DirectiveError,
    LocationBody,
    LocationContext,
    http_lines,
    location_lines,
    quote_regex,
    server_lines,
    server_redirects,
)

#: Where the repository keeps the template and the Lua code (an editable install or a checkout).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = PROJECT_ROOT / "templates" / "nginx.conf.j2"

_UNSAFE = re.compile(r'["\\$;{}#\s\x00-\x1f\x7f\']')


class RenderError(ValueError):
    """A value could not be written into nginx.conf safely."""


def quote(value: str) -> str:
    """Quote ``value`` for nginx.conf, refusing characters that could change its meaning."""
    match = _UNSAFE.search(value)
    if match:
        raise RenderError(f"refusing to write {value!r} into nginx.conf: {match.group()!r}")
    return f'"{value}"'


def _quote_path(value: str) -> str:
    """Quote a file-system path (ours, not a user's: spaces are fine, quotes and ``$`` are not)."""
    if re.search(r'["\\$\x00-\x1f\x7f]', value):
        raise RenderError(f"refusing to write path {value!r} into nginx.conf")
    return f'"{value}"'


def _quote_log_format(value: str) -> str:
    """Single-quote a log format: ``$variables`` are its purpose, anything that ends it is not."""
    match = re.search(r"['\"\\{};\x00-\x1f\x7f]", value)
    if match:
        raise RenderError(f"refusing to write log format {value!r}: {match.group()!r}")
    return f"'{value}'"


@dataclass(frozen=True, slots=True)
class NginxPaths:
    """Files and directories of one nginx instance, all inside its work dir."""

    work_dir: Path

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
    def secrets(self) -> str:
        """Files made from Secrets that annotations name (htpasswd, CA bundles), 0600."""
        return str(self.work_dir / "secrets")


@dataclass(frozen=True, slots=True)
class RenderSettings:
    """Controller-wide settings written into nginx.conf (ingress-nginx's defaults)."""

    http_port: int = 80
    https_port: int = 443
    control_port: int = 10246
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
    # ConfigMap options (ingressd.configmap validates them before they get here).
    hsts: bool = True
    hsts_max_age: int = 31536000
    hsts_include_subdomains: bool = True
    hsts_preload: bool = False
    use_forwarded_headers: bool = False
    #: ``None``: the template's built-in ``upstreaminfo`` format.
    log_format_upstream: str | None = None


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
    bodies: dict[tuple[bool, int], LocationBody] | None = None,
) -> list[RenderedLocation]:
    """nginx locations for a server's Ingress paths, element-wise prefix and Exact-first;
    regex paths (``use-regex``) after them, longest first, as ingress-nginx orders them.

    ``bodies``: where to keep the directives of locations with default settings (they depend
    only on the server's ssl redirect and the proxy headers), across the calls of one render
    (which keeps ``proxy_headers`` alive: its ``id()`` is its own).
    """
    exact_paths = {loc.path for loc in server.locations if loc.path_type is PathType.EXACT}
    memo_key = (server.ssl_redirect, id(proxy_headers))
    out: list[RenderedLocation] = []
    regexes: list[RenderedLocation] = []
    for loc in server.locations:
        namespace, _, name = loc.ingress.partition("/")
        if loc.path_type is PathType.REGEX:
            forms = [("~* ", "^" + loc.path)]
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
        regex = loc.path_type is PathType.REGEX
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
    regexes.sort(key=lambda r: (-len(r.path), r.path))
    return out + regexes


def _quote_location(path: str, *, regex: bool) -> str:
    if not regex:
        return quote(path)
    try:
        return quote_regex(path)
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc


def _server_lines(server: Server, proxy_headers: Sequence[tuple[str, str]] = ()) -> list[str]:
    try:
        return server_lines(server, proxy_headers=proxy_headers)
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


class _Backends(Mapping[BackendName, Backend]):
    """``config.backend_map()``, made on first use (a render that reuses every server block
    never needs it)."""

    def __init__(self, config: Configuration) -> None:
        self._config = config
        self._map: dict[BackendName, Backend] | None = None

    def _get(self) -> dict[BackendName, Backend]:
        if self._map is None:
            self._map = self._config.backend_map()
        return self._map

    def __getitem__(self, key: BackendName) -> Backend:
        return self._get()[key]

    def __iter__(self) -> Iterator[BackendName]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._config.backends)


@dataclass(slots=True)
class _Block:
    """What rendering made of one Server (kept alive here, so its ``id()`` stays its own)."""

    server: Server
    #: Whether the server adds http-level lines (rate limit zones, upstream blocks).
    http: bool
    #: Its server block, once rendered.
    text: str | None = None
    #: ``(name, namespace, service)`` of the backends the text names (``proxy_ssl_name``).
    backends: tuple[tuple[str, str | None, str | None], ...] = ()


def _backend_facts(
    server: Server, backends: Mapping[BackendName, Backend]
) -> tuple[tuple[str, str | None, str | None], ...]:
    facts: list[tuple[str, str | None, str | None]] = []
    for location in server.locations:
        if location.backend is not None and location.settings.proxy_ssl is not None:
            backend = backends.get(location.backend)
            facts.append(
                (location.backend, backend.namespace if backend else None,
                 backend.service if backend else None)
            )
    return tuple(facts)


def _adds_http_lines(server: Server) -> bool:
    """Whether ``http_lines`` has anything for this server (never with default settings)."""
    if all(loc.settings is DEFAULT_SETTINGS for loc in server.locations):
        return False
    try:
        return bool(http_lines(Configuration(servers=(server,))))
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc


class _BlockCache:
    """Server blocks of one template + settings + paths, by Server object.

    Two generations: the blocks of the last render, and of the one before (a dry run and a
    live render of another model may alternate); the rest is dropped.
    """

    def __init__(self) -> None:
        self.current: dict[int, _Block] = {}
        self.previous: dict[int, _Block] = {}

    def get(self, server: Server) -> _Block | None:
        block = self.current.get(id(server))
        if block is None:
            block = self.previous.get(id(server))
        return block if block is not None and block.server is server else None

    def commit(self, blocks: dict[int, _Block]) -> None:
        self.previous, self.current = self.current, blocks


#: Block caches by (template, settings, paths); a few, for several nginx instances in a process.
_BLOCK_CACHES: collections.OrderedDict[tuple[object, ...], _BlockCache] = (
    collections.OrderedDict()
)
_MAX_BLOCK_CACHES = 4


def _block_cache(
    template: jinja2.Template, settings: RenderSettings, paths: NginxPaths
) -> _BlockCache:
    key = (id(template), template, settings, paths)
    cache = _BLOCK_CACHES.get(key)
    if cache is None:
        cache = _BLOCK_CACHES[key] = _BlockCache()
        while len(_BLOCK_CACHES) > _MAX_BLOCK_CACHES:
            _BLOCK_CACHES.popitem(last=False)
    else:
        _BLOCK_CACHES.move_to_end(key)
    return cache


def clear_render_cache() -> None:
    """Forget every cached server block."""
    _BLOCK_CACHES.clear()


def render(
    config: Configuration,
    *,
    settings: RenderSettings,
    paths: NginxPaths,
    generation: int,
    template: Path = DEFAULT_TEMPLATE,
) -> str:
    """The whole nginx.conf for ``config``; raises ``RenderError`` for an unsafe value.

    The template gets ``servers`` and ``server_blocks(macro)``: that renders each server with
    the template's ``macro(server)`` and joins the blocks, reusing the text made for the same
    ``Server`` object by an earlier render with the same template, settings and paths (the
    builder hands on an unchanged Server as the same object).  A block must depend only on its
    server and the render's settings and paths, never on ``generation`` or other servers.
    """
    with gc_paused():
        return _render(config, settings, paths, generation, template)


def _render(
    config: Configuration,
    settings: RenderSettings,
    paths: NginxPaths,
    generation: int,
    template: Path,
) -> str:
    compiled = _environment(template)
    cache = _block_cache(compiled, settings, paths)
    backends = _Backends(config)
    blocks: dict[int, _Block] = {}
    contributing: list[Server] = []
    for server in config.servers:
        block = cache.get(server)
        if block is not None and block.backends and block.backends != _backend_facts(
            server, backends
        ):
            block = None
        if block is None:
            block = _Block(server, _adds_http_lines(server))
        blocks[id(server)] = block
        if block.http:
            contributing.append(server)
    max_size, bucket = _hash_sizes(config)
    https_suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
    try:
        annotation_http_lines = http_lines(Configuration(servers=tuple(contributing)))
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
    located = functools.partial(
        locations,
        backends=backends,
        https_port_suffix=https_suffix,
        hsts=settings.hsts,
        secrets_dir=paths.secrets,
        bodies={},
    )

    parts: list[str] = []

    def server_blocks(macro: Callable[[Server], str]) -> str:
        """Render the blocks not cached; the template gets a placeholder, replaced by the
        blocks below (one copy of a 10 MB text instead of two)."""
        if not parts:
            for server in config.servers:
                block = blocks[id(server)]
                if block.text is None:
                    block.text = str(macro(server))
                    block.backends = _backend_facts(server, backends)
                parts.append(block.text)
        return _BLOCKS_PLACEHOLDER

    text = compiled.render(
        servers=config.servers,
        server_blocks=server_blocks,
        settings=settings,
        paths=paths,
        q=quote,
        qp=_quote_path,
        ql=_quote_log_format,
        server_name=server_name,
        locations=located,
        server_lines=_server_lines,
        server_redirects=server_redirects,
        annotation_http_lines=annotation_http_lines,
        generation=int(generation),
        worker_user=settings.worker_user,
        listen_http=int(settings.http_port),
        listen_https=int(settings.https_port),
        https_port_suffix=https_suffix,
        control_port=int(settings.control_port),
        server_names_hash_max_size=max_size,
        server_names_hash_bucket_size=bucket,
    )
    cache.commit({key: block for key, block in blocks.items() if block.text is not None})
    pieces = text.split(_BLOCKS_PLACEHOLDER)
    if len(pieces) == 1:
        return text
    out: list[str] = [pieces[0]]
    for piece in pieces[1:]:
        out += parts
        out.append(piece)
    return "".join(out)


#: What ``server_blocks()`` returns inside the template (no template writes NUL).
_BLOCKS_PLACEHOLDER = "\x00ingressd server blocks\x00"
