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
from dataclasses import dataclass
from pathlib import Path

import jinja2

from ingressd.model import Configuration, PathType, Server

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


@dataclass(frozen=True, slots=True)
class RenderedLocation:
    modifier: str
    path: str
    backend: str | None
    namespace: str
    ingress_name: str
    status: int


def server_name(server: Server) -> str:
    """The ``server_name`` value: ``_`` for the catch-all, a one-label regex for wildcards."""
    if server.is_catch_all:
        return "_"
    if server.is_wildcard:
        quote(server.hostname)  # refuses anything unsafe
        suffix = re.escape(server.hostname[2:])
        return f'"~^[^.]+\\.{suffix}$"'
    return quote(server.hostname)


def locations(server: Server) -> list[RenderedLocation]:
    """nginx locations for a server's Ingress paths, element-wise prefix and Exact-first."""
    exact_paths = {loc.path for loc in server.locations if loc.path_type is PathType.EXACT}
    out: list[RenderedLocation] = []
    for loc in server.locations:
        namespace, _, name = loc.ingress.partition("/")
        if loc.path_type is PathType.EXACT:
            forms = [("= ", loc.path)]
        elif loc.path == "/":
            forms = [("", "/")]
        elif loc.path in exact_paths:
            forms = [("", loc.path + "/")]
        else:
            forms = [("= ", loc.path), ("", loc.path + "/")]
        for modifier, path in forms:
            out.append(
                RenderedLocation(
                    modifier=modifier,
                    path=path,
                    backend=loc.backend,
                    namespace=namespace,
                    ingress_name=name,
                    status=loc.status,
                )
            )
    return out


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
    return _environment(template).render(
        servers=config.servers,
        settings=settings,
        paths=paths,
        q=quote,
        qp=_quote_path,
        server_name=server_name,
        locations=locations,
        generation=int(generation),
        worker_user=settings.worker_user,
        listen_http=int(settings.http_port),
        listen_https=int(settings.https_port),
        https_port_suffix=https_suffix,
        control_port=int(settings.control_port),
        server_names_hash_max_size=max_size,
        server_names_hash_bucket_size=bucket,
    )
