"""The route table and settings classes of ``--routing lua`` (ingressd.nginx.routes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ingressd.model import (
    CATCH_ALL,
    Backend,
    BackendName,
    Certificate,
    Configuration,
    Location,
    ObjectKey,
    PathType,
    Server,
)
from ingressd.model.settings import LocationSettings, Redirect
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.nginx.routes import RouteContext, RouteTable, class_body, route_table, size_bytes

CONTEXT = RouteContext()


def loc(
    path: str,
    backend: str | None = "default-web-80",
    *,
    ingress: str = "default/web",
    path_type: PathType = PathType.PREFIX,
    settings: LocationSettings | None = None,
    status: int = 503,
) -> Location:
    return Location(
        path=path,
        path_type=path_type,
        backend=BackendName(backend) if backend else None,
        ingress=ObjectKey(ingress),
        status=status,
        settings=settings or LocationSettings(),
    )


def config(*servers: Server) -> Configuration:
    names = {x.backend for s in servers for x in s.locations if x.backend}
    backends = tuple(
        Backend(name=n, namespace="default", service="web", service_port="80")
        for n in sorted(names)
    )
    catch_all = Server(CATCH_ALL, (loc("/", None, ingress="", status=404),))
    return Configuration(servers=(catch_all, *servers), backends=backends)


def entry(table: RouteTable, host: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(table.entries[host])
    return result


def test_plain_ingresses_of_many_hosts_share_one_settings_class() -> None:
    servers = [
        Server(f"h{i}.test", (loc("/", ingress=f"default/i{i}"), loc("/api", ingress=f"ns/i{i}")))
        for i in range(50)
    ]
    table = route_table(config(*servers), CONTEXT)
    route_classes = {
        r["class"]
        for host in table.entries
        if host != CATCH_ALL
        for r in entry(table, host)["locations"]
    }
    assert len(route_classes) == 1
    # the catch-all's 404 and the shared proxying class
    assert len(table.classes) == 2


def test_an_entry_carries_what_lua_needs_of_each_route() -> None:
    settings = LocationSettings(default_backend=BackendName("default-fallback-80"))
    server = Server(
        "www.zkj.com",
        (
            loc("/backend", ingress="default/demo", settings=settings),
            loc("/exact", ingress="default/demo", path_type=PathType.EXACT),
            loc("/gone", None, ingress="default/demo"),
        ),
        aliases=("zkj.com",),
        app_root="/app",
        certificate=Certificate(ObjectKey("default/tls"), "ab" * 32, "PEM"),
    )
    table = route_table(config(server), CONTEXT)
    got = entry(table, "www.zkj.com")
    assert got["host"] == "www.zkj.com"
    assert got["aliases"] == ["zkj.com"]
    assert got["hsts"] == "max-age=31536000; includeSubDomains" and got["appRoot"] == "/app"
    routes = got["locations"]
    assert [(r["path"], r["type"], r["backend"], r["status"]) for r in routes] == [
        ("/backend", "prefix", "default-web-80", 503),
        ("/exact", "exact", "default-web-80", 503),
        ("/gone", "prefix", None, 503),
    ]
    assert routes[0]["namespace"] == "default" and routes[0]["ingress"] == "demo"
    assert routes[0]["defaultBackend"] == "default-fallback-80"
    assert routes[0]["maxBody"] == 1024 * 1024
    # the default backend is the route's, not the class's: same class as a plain route
    assert routes[0]["class"] == routes[1]["class"] != routes[2]["class"]


def test_settings_that_change_the_block_make_another_class() -> None:
    plain = loc("/")
    redirect = loc("/", settings=LocationSettings(redirect=Redirect(301, "https://a.test/")))
    big = loc("/", settings=LocationSettings(body_size="8m"))
    table = route_table(
        config(
            Server("a.test", (plain,)),
            Server("b.test", (redirect,)),
            Server("c.test", (big,)),
            Server("d.test", (plain,), ssl_redirect=True),
        ),
        CONTEXT,
    )
    ids = {
        h: entry(table, h)["locations"][0]["class"]
        for h in ("a.test", "b.test", "c.test", "d.test")
    }
    assert len(set(ids.values())) == 4
    assert entry(table, "c.test")["locations"][0]["maxBody"] == 8 * 1024**2


def test_class_ids_are_the_same_in_every_build() -> None:
    first = route_table(config(Server("a.test", (loc("/"),))), CONTEXT)
    again = route_table(
        config(Server("a.test", (loc("/"),)), Server("b.test", (loc("/x"),))), CONTEXT
    )
    assert first.classes[0].id in {c.id for c in again.classes}
    assert first.entries["a.test"] == again.entries["a.test"]


def test_a_host_with_a_server_snippet_keeps_its_own_server_block() -> None:
    snippet = Server("own.test", (loc("/"),), snippet="add_header X-Own 1;")
    table = route_table(config(snippet, Server("lua.test", (loc("/"),))), CONTEXT)
    assert [s.hostname for s in table.own_blocks] == ["own.test"]
    assert set(table.entries) == {CATCH_ALL, "lua.test"}


def test_a_denied_route_answers_503_from_its_class() -> None:
    denied = loc("/", settings=LocationSettings(denied="auth-url is not supported"))
    (cls,) = [
        c
        for c in route_table(config(Server("a.test", (denied,))), CONTEXT).classes
        if c.location.settings.denied
    ]
    assert class_body(cls, proxy_headers=(), https_port_suffix="", hsts=True, secrets_dir="/s") == (
        (),
        "return 503",
    )


@pytest.mark.parametrize(
    ("text", "size"), [("0", 0), ("1m", 1 << 20), ("512k", 512 << 10), ("2G", 2 << 30), ("10", 10)]
)
def test_sizes_read_as_nginx_reads_them(text: str, size: int) -> None:
    assert size_bytes(text) == size


def test_lua_routed_nginx_conf_keeps_one_server_and_a_location_per_class(
    tmp_path: Path,
) -> None:
    servers = [Server(f"h{i}.test", (loc("/", ingress=f"default/i{i}"),)) for i in range(200)]
    text = render(
        config(*servers),
        settings=RenderSettings(routing="lua", http_port=18080, https_port=18443),
        paths=NginxPaths(tmp_path),
        generation=1,
    )
    assert text.count("server_name ") == 2  # the Lua-routed server and the control server
    assert text.count("location @c") == 2
    assert "h7.test" not in text
    (tmp_path / "certs").mkdir()
    (tmp_path / "logs").mkdir()
    (tmp_path / "control").mkdir()
    (tmp_path / "temp").mkdir()
    _default_certificate(tmp_path / "certs" / "default.pem")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text.replace("user nobody nogroup;", ""))
    checked = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr


def _default_certificate(path: Path) -> None:
    from tests.support.objects import self_signed_certificate

    cert_pem, key_pem = self_signed_certificate("default.invalid")
    path.write_text(cert_pem + key_pem)
