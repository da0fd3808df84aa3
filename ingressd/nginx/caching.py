"""Caching: the text of each server block, kept between renders while its Server is unchanged.

    Server (same object as last render) --BlockCache.get()-----> ServerBlock with text: reused
    Server (new or changed)             --ServerBlock(server)--> text rendered by the template
    this render's blocks                --BlockCache.commit()--> kept for the next two renders

The builder hands on an unchanged Server as the same object, so ``id(server)`` (checked with
``is``) finds its block; a block whose text names backends (``proxy_ssl_name``) is also checked
against the backends of this render.  One ``BlockCache`` per template + settings + paths
(``block_cache()``), a few of them, for several nginx instances in one process.  The contract
this puts on the template is in ``ingressd.nginx.rendering``.
"""

from __future__ import annotations

import collections
from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass

import jinja2

from ingressd.model import Backend, BackendName, Configuration, Server
from ingressd.model.settings import DEFAULT_SETTINGS
from ingressd.nginx.external_auth import configuration_auths
from ingressd.nginx.quoting import DirectiveError, RenderError
from ingressd.nginx.server_directives import http_lines

__all__ = [
    "BlockCache",
    "LazyBackends",
    "ServerBlock",
    "adds_http_lines",
    "backend_facts",
    "block_cache",
    "clear_render_cache",
]


class LazyBackends(Mapping[BackendName, Backend]):
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
class ServerBlock:
    """What rendering made of one Server (kept alive here, so its ``id()`` stays its own)."""

    server: Server
    #: Whether the server adds http-level lines (rate limit zones, upstream blocks).
    http: bool
    #: Its server block, once rendered.
    text: str | None = None
    #: ``(name, namespace, service)`` of the backends the text names (``proxy_ssl_name``).
    backends: tuple[tuple[str, str | None, str | None], ...] = ()


def backend_facts(
    server: Server, backends: Mapping[BackendName, Backend]
) -> tuple[tuple[str, str | None, str | None], ...]:
    """What a block's text takes from the backends: ``ServerBlock.backends``."""
    facts: list[tuple[str, str | None, str | None]] = []
    for location in server.locations:
        if location.backend is not None and location.settings.proxy_ssl is not None:
            backend = backends.get(location.backend)
            facts.append(
                (
                    location.backend,
                    backend.namespace if backend else None,
                    backend.service if backend else None,
                )
            )
    return tuple(facts)


def adds_http_lines(server: Server) -> bool:
    """Whether ``http_lines`` or ``auth_http_lines`` has anything for this server (never with
    default settings)."""
    if all(loc.settings is DEFAULT_SETTINGS for loc in server.locations):
        return False
    alone = Configuration(servers=(server,))
    try:
        return bool(http_lines(alone)) or any(
            a is not None and (a.cache_key is not None or a.keepalive > 0)
            for a in configuration_auths(alone)
        )
    except DirectiveError as exc:
        raise RenderError(str(exc)) from exc


class BlockCache:
    """Server blocks of one template + settings + paths, by Server object.

    Two generations: the blocks of the last render, and of the one before (a dry run and a
    live render of another model may alternate); the rest is dropped.
    """

    def __init__(self) -> None:
        self.current: dict[int, ServerBlock] = {}
        self.previous: dict[int, ServerBlock] = {}

    def get(self, server: Server) -> ServerBlock | None:
        block = self.current.get(id(server))
        if block is None:
            block = self.previous.get(id(server))
        return block if block is not None and block.server is server else None

    def commit(self, blocks: dict[int, ServerBlock]) -> None:
        self.previous, self.current = self.current, blocks


#: Block caches by (template, settings, paths); a few, for several nginx instances in a process.
_BLOCK_CACHES: collections.OrderedDict[tuple[object, ...], BlockCache] = collections.OrderedDict()
_MAX_BLOCK_CACHES = 4


def block_cache(template: jinja2.Template, *parts: Hashable) -> BlockCache:
    """The cache of ``template`` with ``parts`` (the render's settings and paths)."""
    key = (id(template), template, *parts)
    cache = _BLOCK_CACHES.get(key)
    if cache is None:
        cache = _BLOCK_CACHES[key] = BlockCache()
        while len(_BLOCK_CACHES) > _MAX_BLOCK_CACHES:
            _BLOCK_CACHES.popitem(last=False)
    else:
        _BLOCK_CACHES.move_to_end(key)
    return cache


def clear_render_cache() -> None:
    """Forget every cached server block."""
    _BLOCK_CACHES.clear()
