"""The route table and settings classes of ``--routing lua`` (ingressd.nginx.routes)."""

from __future__ import annotations

import dataclasses
import json
import random
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
    Endpoint,
    Location,
    ObjectKey,
    PathType,
    Server,
    server_order,
)
from ingressd.model.settings import LocationSettings, ProxySSL, Redirect
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.nginx.routes import (
    BALANCER_REWRITE,
    RouteContext,
    RouteTable,
    TableChanges,
    balances_in_router,
    class_body,
    route_table,
    size_bytes,
    table_changes,
)

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
    ("lines", "tail", "balanced"),
    [
        ((), "proxy_pass http://upstream_balancer", True),
        (("proxy_read_timeout 120s;", "client_max_body_size 8m;"), "proxy_pass http://u", True),
        (("modsecurity off;",), "grpc_pass grpc://upstream_balancer", True),
        # anything that could act before the balancer's step or on the router's 503
        (
            ("if ($redirect_to_https) {", "    return 308 https://$host;", "}"),
            "proxy_pass x",
            False,
        ),
        (("rewrite (?i)/a /b break;",), "proxy_pass http://upstream_balancer", False),
        (("error_page 503 = @custom_x_503;",), "proxy_pass http://upstream_balancer", False),
        (("add_header X-A b always;",), "proxy_pass http://upstream_balancer", False),
        (("modsecurity on;",), "proxy_pass http://upstream_balancer", False),
        (("more_set_input_headers 'X-A: b';",), "proxy_pass http://upstream_balancer", False),
        ((), "return 404", False),
    ],
)
def test_the_router_balances_only_classes_whose_block_acts_in_the_content_phase_alone(
    lines: tuple[str, ...], tail: str, balanced: bool
) -> None:
    assert balances_in_router(lines, tail) is balanced


def test_lua_routed_conf_runs_the_balancer_step_in_the_router_or_in_the_block(
    tmp_path: Path,
) -> None:
    """No rewrite_by_lua at http level in lua mode: the plain class is in the router's list
    and its block has no Lua; the redirecting class and the catch-all's 404 say the step."""
    redirect = LocationSettings(redirect=Redirect(301, "https://a.test/"))
    slow = LocationSettings(read_timeout="120s")
    servers = [
        Server("plain.test", (loc("/"),)),
        Server("slow.test", (loc("/", settings=slow),)),
        Server("moved.test", (loc("/", settings=redirect),)),
        Server("own.test", (loc("/"),), snippet="add_header X-Own 1;"),
    ]
    configuration = config(*servers)
    table = route_table(configuration, CONTEXT)
    ids = {h: entry(table, h)["locations"][0]["class"] for h in ("plain.test", "slow.test")}
    moved = entry(table, "moved.test")["locations"][0]["class"]
    text = render(
        configuration,
        settings=RenderSettings(routing="lua", http_port=18080, https_port=18443),
        paths=NginxPaths(tmp_path),
        generation=1,
    )
    http_level = text[: text.index("server {")]
    assert "rewrite_by_lua" not in http_level
    balanced = f'{{"{min(ids.values())}", "{max(ids.values())}"}}'
    home = ids["plain.test"]  # the class of default settings
    assert f'require("ingressd.router").init({balanced}, "{home}",\n' in text

    def block(class_id: str) -> str:
        start = text.index(f"location @{class_id} {{")
        return text[start : text.index("\n        }", start)]

    for class_id in ids.values():
        assert "rewrite_by_lua" not in block(class_id)
    assert BALANCER_REWRITE in block(moved)
    # the entry location is the home class's block too, but for the body size (the router's)
    entry_location = text[text.index("        location / {") :]
    entry_location = entry_location[: entry_location.index("\n        }")]
    kept = [line for line in block(home).splitlines()[1:] if "client_max_body_size" not in line]
    assert kept[-1].endswith("proxy_pass http://upstream_balancer;")
    assert entry_location.splitlines()[-len(kept) :] == kept
    assert entry_location.count("client_max_body_size") == 1
    own = text[text.index("# server own.test") :]
    assert BALANCER_REWRITE in own[: own.index("location ")]
    nginx_mode = render(
        configuration,
        settings=RenderSettings(routing="nginx", http_port=18080, https_port=18443),
        paths=NginxPaths(tmp_path),
        generation=1,
    )
    assert "rewrite_by_lua_block {" in nginx_mode[: nginx_mode.index("server {")]
    assert BALANCER_REWRITE not in nginx_mode


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


# -- tables made from earlier ones --------------------------------------------------------------

_MENU = (
    LocationSettings(),
    LocationSettings(body_size="8m"),
    LocationSettings(redirect=Redirect(301, "https://a.test/")),
    LocationSettings(proxy_ssl=ProxySSL(verify=True)),
)
_CERTS = tuple(
    Certificate(ObjectKey(f"default/tls{i}"), f"{i:02x}" * 32, f"PEM {i}") for i in range(4)
)


def _random_server(rng: random.Random, host: str, serial: int) -> Server:
    locations = tuple(
        loc(
            path,
            rng.choice(("default-web-80", "default-api-80", None)),
            ingress=f"default/i{serial}",
            settings=rng.choice(_MENU),
        )
        for path in sorted(rng.sample(("/", "/api", "/b", "/c"), rng.randint(1, 3)))
    )
    roll = rng.random()
    return Server(
        host,
        locations,
        certificate=rng.choice(_CERTS) if roll < 0.4 else None,
        ssl_redirect=rng.random() < 0.3,
        snippet="add_header X-A 1;" if roll > 0.92 else None,
        aliases=(f"alias-{host}",) if 0.88 < roll <= 0.9 else (),
    )


def _random_config(servers: dict[str, Server]) -> Configuration:
    names = sorted({x.backend for s in servers.values() for x in s.locations if x.backend})
    catch_all = servers.get(CATCH_ALL) or Server(
        CATCH_ALL, (loc("/", None, ingress="", status=404),)
    )
    backends = tuple(
        Backend(
            name=BackendName(n), namespace="default", service=n.split("-")[1], service_port="80"
        )
        for n in names
    )
    ordered = sorted((s for h, s in servers.items() if h != CATCH_ALL), key=server_order)
    return Configuration(servers=(catch_all, *ordered), backends=backends)


@pytest.mark.parametrize("seed", range(8))
def test_a_table_made_from_an_earlier_one_equals_the_table_made_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    servers = {f"h{i:02}.test": _random_server(rng, f"h{i:02}.test", i) for i in range(30)}
    held: RouteTable | None = None
    previous: RouteTable | None = None
    context = CONTEXT
    for step in range(60):
        for _ in range(rng.choice((0, 1, 1, 2, 5, 40))):
            host = f"h{rng.randrange(40):02}.test"
            if host in servers and rng.random() < 0.3:
                del servers[host]
            else:  # a new server, or a new object in place of the old one (maybe equal)
                servers[host] = _random_server(rng, host, rng.randrange(3) + step)
        if rng.random() < 0.05:
            context = RouteContext(hsts=None) if context.hsts else CONTEXT
        cfg = _random_config(servers)
        table = route_table(cfg, context, previous)
        fresh = route_table(cfg, context)
        assert table == fresh
        assert table.entries.keys() == fresh.entries.keys()
        assert [c.location for c in table.classes] == [c.location for c in fresh.classes]
        assert table_changes(table, held) == _changes_by_comparing_everything(table, held)
        previous = held = table


def _changes_by_comparing_everything(new: RouteTable, old: RouteTable | None) -> TableChanges:
    before = old or RouteTable({}, (), ())
    hosts = {
        h: new.certificate_hosts.get(h)
        for h in sorted(new.certificate_hosts.keys() | before.certificate_hosts.keys())
        if new.certificate_hosts.get(h) != before.certificate_hosts.get(h)
    }
    uids = sorted({u for u in hosts.values() if u and u not in before.certificates})
    return TableChanges(
        routes=tuple(sorted(h for h in new.entries if before.entries.get(h) != new.entries[h])),
        removed=tuple(sorted(before.entries.keys() - new.entries.keys())),
        certificates={u: new.certificates[u] for u in uids},
        certificate_hosts=hosts,
    )


def test_a_table_of_the_same_servers_is_the_earlier_table() -> None:
    cfg = config(Server("a.test", (loc("/"),)), Server("b.test", (loc("/"),)))
    table = route_table(cfg, CONTEXT)
    assert route_table(cfg, CONTEXT, table) is table
    assert table_changes(table, table) == TableChanges()


def test_a_class_reached_over_tls_does_not_follow_the_backends_pods() -> None:
    settings = LocationSettings(proxy_ssl=ProxySSL(verify=True))
    cfg = config(Server("a.test", (loc("/", settings=settings),)))
    moved = dataclasses.replace(
        cfg,
        backends=tuple(
            dataclasses.replace(b, endpoints=(Endpoint("10.0.0.1", 80),)) for b in cfg.backends
        ),
    )
    assert route_table(cfg, CONTEXT).class_ids == route_table(moved, CONTEXT).class_ids
