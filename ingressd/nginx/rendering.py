"""Rendering: Configuration -> nginx.conf text (jinja2, ``templates/nginx.conf.j2``).

    Configuration + RenderSettings + NginxPaths --render()--> str

Pure apart from loading the template once.  Kubernetes Ingress semantics that nginx does not
have natively are translated here:

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

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressd.model import Backend, BackendName, Configuration, PathType, Server
from ingressd.nginx.directives import (
    DirectiveError,
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
) -> list[RenderedLocation]:
    """nginx locations for a server's Ingress paths, element-wise prefix and Exact-first;
    regex paths (``use-regex``) after them, longest first, as ingress-nginx orders them."""
    exact_paths = {loc.path for loc in server.locations if loc.path_type is PathType.EXACT}
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
        for modifier, path in forms:
            rendered = RenderedLocation(
                modifier=modifier,
                path=path,
                backend=loc.backend,
                namespace=namespace,
                ingress_name=name,
                status=loc.status,
                quoted_path=_quote_location(path, regex=loc.path_type is PathType.REGEX),
                lines=body.lines,
                pass_line=body.pass_line,
            )
            (regexes if loc.path_type is PathType.REGEX else out).append(rendered)
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


def render(
    config: Configuration,
    *,
    settings: RenderSettings,
    paths: NginxPaths,
    generation: int,
    template: Path = DEFAULT_TEMPLATE,
) -> str:
    """The whole nginx.conf for ``config``; raises ``RenderError`` for an unsafe value."""
    max_size, bucket = _hash_sizes(config)
    https_suffix = "" if settings.https_port == 443 else f":{settings.https_port}"
    try:
        annotation_http_lines = http_lines(config)
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc
    located = functools.partial(
        locations,
        backends=config.backend_map(),
        https_port_suffix=https_suffix,
        hsts=settings.hsts,
        secrets_dir=paths.secrets,
    )
    return _environment(template).render(
        servers=config.servers,
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
