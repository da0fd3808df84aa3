"""Rendering reuses the text of unchanged server blocks; what it writes never depends on that."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ingressd.build.building import BuildCache, BuildOptions, build_configuration
from ingressd.model import (
    Backend,
    BackendName,
    Configuration,
    Location,
    ObjectKey,
    PathType,
    Server,
)
from ingressd.model.settings import LocationSettings, ProxySSL
from ingressd.nginx import rendering, routing
from ingressd.nginx.caching import clear_render_cache
from ingressd.nginx.dynamic import CHUNK_ITEMS, Body, backends_body, certificates_body
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.snapshot import KubeObject
from ingressd.store.store import Store
from tests.support import objects as o

#: The per-server render cache belongs to --routing nginx (server blocks per host).
SETTINGS = RenderSettings(routing="nginx")
PATHS = NginxPaths(Path("/var/lib/ingressd"))


@pytest.fixture
def rendered(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Host names of the server blocks rendered (not taken from the cache)."""
    clear_render_cache()
    seen: list[str] = []
    real = routing.locations

    def counting(server: Server, *args: Any, **kwargs: Any) -> list[routing.RenderedLocation]:
        seen.append(server.hostname)
        return real(server, *args, **kwargs)

    monkeypatch.setattr(rendering, "locations", counting)
    yield seen
    clear_render_cache()


def site(i: int, *paths: str) -> KubeObject:
    rule = o.rule(f"h{i}.test", *(o.path(p, f"svc{i}") for p in paths))
    return o.ingress(f"ing{i}", rules=[rule])


def cluster(n: int = 5) -> Store:
    store = Store(channel=UpdateChannel(maxsize=1 << 16))
    for i in range(n):
        for obj in (
            o.service(f"svc{i}"),
            o.endpoint_slice(f"svc{i}", endpoints=["10.0.0.1"]),
            site(i, "/", "/api"),
        ):
            store.apply(WatchEvent(EventType.ADDED, obj))
    return store


def uncached(
    config: Configuration, settings: RenderSettings = SETTINGS, generation: int = 1
) -> str:
    clear_render_cache()
    return render(config, settings=settings, paths=PATHS, generation=generation)


def test_an_unchanged_server_block_is_rendered_once(rendered: list[str]) -> None:
    config = build_configuration(cluster().snapshot(), BuildOptions()).configuration
    first = render(config, settings=SETTINGS, paths=PATHS, generation=1)
    assert sorted(rendered) == sorted(s.hostname for s in config.servers)
    rendered.clear()
    second = render(config, settings=SETTINGS, paths=PATHS, generation=2)
    assert rendered == []
    assert second == first.replace("generation 1", "generation 2").replace('"1";', '"2";')
    assert second == uncached(config, generation=2)


def test_a_changed_server_is_rendered_again_and_only_it(rendered: list[str]) -> None:
    store = cluster()
    options = BuildOptions()
    cache = BuildCache()  # as the sync worker builds: unchanged servers are the same objects
    before = build_configuration(store.snapshot(), options, cache=cache).configuration
    render(before, settings=SETTINGS, paths=PATHS, generation=1)
    store.apply(WatchEvent(EventType.MODIFIED, site(2, "/", "/api", "/new")))
    after = build_configuration(store.snapshot(), options, cache=cache).configuration
    rendered.clear()
    text = render(after, settings=SETTINGS, paths=PATHS, generation=2)
    assert rendered == ["h2.test"]
    assert 'location = "/new"' in text
    assert text == uncached(after, generation=2)


def test_other_settings_render_every_block_again(rendered: list[str]) -> None:
    config = build_configuration(cluster(3).snapshot(), BuildOptions()).configuration
    render(config, settings=SETTINGS, paths=PATHS, generation=1)
    rendered.clear()
    other = RenderSettings(http_port=8080, https_port=8443, routing="nginx")
    text = render(config, settings=other, paths=PATHS, generation=1)
    assert len(rendered) == len(config.servers)
    assert "listen 8443 ssl http2" in text and "listen 443 " not in text
    assert text == uncached(config, other)


def test_a_block_naming_a_backend_follows_that_backend() -> None:
    """``proxy_ssl_name`` defaults to the backend's Service: same Server, other Service."""
    name = BackendName("default-web-443")
    settings = LocationSettings(proxy_ssl=ProxySSL(verify=False))
    location = Location(
        "/", PathType.PREFIX, backend=name, ingress=ObjectKey("default/app"), settings=settings
    )
    server = Server("a.test", (location,))
    one = Configuration((server,), (Backend(name, "default", "web", "443"),))
    two = Configuration((server,), (Backend(name, "default", "other", "443"),))
    clear_render_cache()
    assert 'proxy_ssl_name "web.default.svc";' in render(
        one, settings=SETTINGS, paths=PATHS, generation=1
    )
    assert 'proxy_ssl_name "other.default.svc";' in render(
        two, settings=SETTINGS, paths=PATHS, generation=2
    )


def test_a_template_that_loops_over_servers_itself_still_works(tmp_path: Path) -> None:
    template = tmp_path / "custom.conf.j2"
    template.write_text(
        "events {}\nhttp {\n{% for server in servers %}"
        "    server { server_name {{ server_name(server) }}; }\n{% endfor %}}\n"
    )
    config = build_configuration(cluster(2).snapshot(), BuildOptions()).configuration
    text = render(config, settings=SETTINGS, paths=PATHS, generation=1, template=template)
    assert text == (
        "events {}\nhttp {\n    server { server_name _; }\n"
        '    server { server_name "h0.test"; }\n    server { server_name "h1.test"; }\n}\n'
    )


async def test_backend_and_certificate_bodies_are_their_json_whether_sent_whole_or_in_chunks() -> (
    None
):
    async def joined(body: Body) -> bytes:
        if isinstance(body, bytes):
            return body
        return b"".join([chunk async for chunk in body])

    for count in (0, 3, CHUNK_ITEMS, CHUNK_ITEMS + 1, 2 * CHUNK_ITEMS + 5):
        config = build_configuration(cluster(count).snapshot(), BuildOptions()).configuration
        body = backends_body(config.backends)
        assert isinstance(body, bytes) == (count <= CHUNK_ITEMS)
        lua = [b.to_lua() for b in config.backends]
        assert await joined(body) == json.dumps(lua, separators=(",", ":")).encode()
        certificates = {f"uid-{i}": f'-----PEM {i}\n"é' for i in range(count)}
        servers = {f"h{i}.test": (f"uid-{i}" if i % 2 else None) for i in range(count)}
        body = certificates_body(certificates, servers)
        assert isinstance(body, bytes) == (count <= CHUNK_ITEMS)
        sent = json.loads(await joined(body))
        assert sent == {"certificates": certificates, "servers": servers}
