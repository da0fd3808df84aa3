"""The Lua side of ingressd (lua/ingressd) tested in a real nginx.

Flow: `running_nginx()` makes a private prefix under /tmp (readable by the `nobody` workers that a
root master starts), copies `lua/` into it, writes a harness nginx.conf (the production http block
of the contract plus test locations), runs `nginx` in the foreground on free ports and stops it on
exit. On top of it:

- Lua unit tests: GET /lua-tests?file=test_x.lua runs lua/tests/test_x.lua inside a worker
  (lua/tests/runner.lua); one pytest test per file, failing with each Lua case's message.
- Protocol: POST/PUT/GET on /configuration/backends and /configuration/version.
- Proxying to aiohttp backends on 127.0.1.1..4 (one port): round robin, the next request after a
  POST in every worker, 503s, retries, reload.

Servers in the harness conf (the /configuration ones on Unix sockets, as in production):
  http_port          "/" -> backend "svc-a", "/b/" -> "svc-b", "/unknown/" -> "svc-unknown",
                     "/plain" (no backend), "/lua-tests" (runner); `reuseport` so that fresh
                     connections spread over both workers; answers carry X-Worker-Pid
  control.sock       /configuration as in the contract (client_body_buffer_size 16m)
  small-buffer.sock  /configuration with a 1k body buffer (bodies go to a temp file)
  small-dict.sock    /configuration on a 32k shared dict (to fill it up)
  router_port        the routing contract of docs/routing.md: `location /` runs ingressd.router,
  tls_port           which hands requests to `@ca0` (echoes the class and the variables it got,
                     as JSON; client_max_body_size 1k), `@cb1` (proxies through the balancer,
                     X-Class: cb1), `@cb2` (the same, its routes balanced by the router: no
                     Lua of its own) or `@c403` / `@c404` (the classes of routes without
                     backend: their status); tls_port serves HTTPS with ssl_certificate_by_lua
                     (ingressd.certificates) over a self-signed default certificate
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingressd.model import Backend, BackendName, Endpoint
from ingressd.nginx.dynamic import CHUNK_ITEMS, LuaEndpoint
from tests.support.objects import self_signed_certificate

# ============================================================================ harness

LUA_SRC = Path(__file__).resolve().parent.parent / "lua"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
MODULES = Path("/usr/share/nginx/modules")

# Lines in error.log that mean our Lua code raised or misbehaved.
LUA_ERROR_MARKERS = (
    "runtime error",
    "lua entry thread aborted",
    "failed to run balancer_by_lua",
    "ingressd: balancer error",
    "ingressd: failed to refresh",
    "ingressd: certificate selection failed",
    "ingressd: cannot set certificate",
    "ingressd: regex location",
)

CONF = """
load_module @MODULES@/ndk_http_module.so;
load_module @MODULES@/ngx_http_lua_module.so;
daemon off;
master_process on;
worker_processes 2;
pid @ROOT@/nginx.pid;
error_log @ROOT@/error.log notice;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path @ROOT@/tmp/client_body;
    proxy_temp_path @ROOT@/tmp/proxy;
    fastcgi_temp_path @ROOT@/tmp/fastcgi;
    uwsgi_temp_path @ROOT@/tmp/uwsgi;
    scgi_temp_path @ROOT@/tmp/scgi;

    lua_package_path "@ROOT@/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_shared_dict ingressd_configuration 64m;
    lua_shared_dict ingressd_test 4m;
    lua_shared_dict ingressd_small 32k;
    init_by_lua_block {
        require("ingressd.configuration"); require("ingressd.balancer")
        require("ingressd.router").init({"cb2"}); require("ingressd.certificates")
    }
    init_worker_by_lua_block {
        require("ingressd.balancer").init_worker(); require("ingressd.router").init_worker()
    }

    upstream upstream_balancer {
        server 0.0.0.1;
        balancer_by_lua_block { require("ingressd.balancer").balance() }
        keepalive 320;
    }

    proxy_next_upstream error timeout;
    proxy_next_upstream_tries 3;
    proxy_connect_timeout 2s;
    proxy_http_version 1.1;
    proxy_set_header Connection "";

    server {
        listen 127.0.0.1:@HTTP_PORT@ reuseport;
        rewrite_by_lua_block { require("ingressd.balancer").rewrite() }
        set $proxy_upstream_name "";
        add_header X-Worker-Pid $pid always;
        location / { set $proxy_upstream_name "svc-a"; proxy_pass http://upstream_balancer; }
        location /b/ { set $proxy_upstream_name "svc-b"; proxy_pass http://upstream_balancer; }
        location /unknown/ {
            set $proxy_upstream_name "svc-unknown";
            proxy_pass http://upstream_balancer;
        }
        location = /plain { content_by_lua_block { ngx.say("plain") } }
        location = /lua-tests {
            content_by_lua_block { require("tests.runner").http("@ROOT@/lua/tests") }
        }
    }
    server {
        listen 127.0.0.1:@ROUTER_PORT@ reuseport;
        listen 127.0.0.1:@TLS_PORT@ ssl reuseport;
        server_name _;
        ssl_certificate @ROOT@/default.pem;
        ssl_certificate_key @ROOT@/default.pem;
        ssl_certificate_by_lua_block { require("ingressd.certificates").call() }
        client_max_body_size 0;
        set $proxy_upstream_name "";
        set $namespace "";
        set $ingress_name "";
        set $ingressd_default_backend "";
        set $ingressd_hsts "";
        add_header X-Worker-Pid $pid always;
        location / {
            rewrite_by_lua_block { require("ingressd.router").route() }
            content_by_lua_block { ngx.exit(500) }
        }
        location @ca0 {
            client_max_body_size 1k;
            add_header X-Worker-Pid $pid always;
            add_header Strict-Transport-Security $ingressd_hsts always;
            rewrite_by_lua_block { return }
            content_by_lua_block {
                ngx.req.read_body()
                local body = ngx.req.get_body_data() or ""
                ngx.header["Content-Type"] = "application/json"
                ngx.say(require("cjson").encode({
                    class = "ca0", backend = ngx.var.proxy_upstream_name,
                    namespace = ngx.var.namespace, ingress = ngx.var.ingress_name,
                    default_backend = ngx.var.ingressd_default_backend,
                    hsts = ngx.var.ingressd_hsts, uri = ngx.var.uri, body = #body,
                }))
            }
        }
        location @cb1 {
            rewrite_by_lua_block { require("ingressd.balancer").rewrite() }
            add_header X-Worker-Pid $pid always;
            add_header X-Class cb1 always;
            proxy_pass http://upstream_balancer;
        }
        # a class the router balances (listed in init_by_lua): no Lua of its own
        location @cb2 {
            add_header X-Class cb2 always;
            proxy_pass http://upstream_balancer;
        }
        # classes of routes without backend end with their status (ingressd.nginx.routes)
        location @c403 { return 403; }
        location @c404 { return 404; }
    }
    server {
        listen unix:@ROOT@/control.sock;
        client_max_body_size 0;
        client_body_buffer_size 16m;
        location /configuration {
            content_by_lua_block { require("ingressd.configuration").call() }
        }
    }
    server {
        listen unix:@ROOT@/small-buffer.sock;
        client_max_body_size 0;
        client_body_buffer_size 1k;
        location /configuration {
            content_by_lua_block { require("ingressd.configuration").call() }
        }
    }
    server {
        listen unix:@ROOT@/small-dict.sock;
        client_max_body_size 0;
        client_body_buffer_size 16m;
        location /configuration {
            content_by_lua_block {
                require("ingressd.configuration").call(ngx.shared.ingressd_small)
            }
        }
    }
}
"""


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free on `host` right now."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


SOCKETS = ("control.sock", "small-buffer.sock", "small-dict.sock")


@dataclass
class Nginx:
    """One harness nginx: its prefix, HTTP port, control sockets and master process."""

    root: Path
    http_port: int
    router_port: int
    tls_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def router(self) -> str:
        return f"http://127.0.0.1:{self.router_port}"

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def control(self) -> str:
        return unix_url(self.root / "control.sock")

    @property
    def small_buffer(self) -> str:
        return unix_url(self.root / "small-buffer.sock")

    @property
    def small_dict(self) -> str:
        return unix_url(self.root / "small-dict.sock")

    @property
    def error_log_path(self) -> Path:
        return self.root / "error.log"

    def error_log(self) -> str:
        try:
            return self.error_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def lua_errors(self) -> list[str]:
        return [
            line
            for line in self.error_log().splitlines()
            if any(marker in line for marker in LUA_ERROR_MARKERS)
        ]

    def write_conf(self) -> Path:
        text = CONF
        for key, value in {
            "@MODULES@": str(MODULES),
            "@ROOT@": str(self.root),
            "@HTTP_PORT@": str(self.http_port),
            "@ROUTER_PORT@": str(self.router_port),
            "@TLS_PORT@": str(self.tls_port),
        }.items():
            text = text.replace(key, value)
        path = self.root / "nginx.conf"
        path.write_text(text)
        return path

    def start(self, timeout: float = 10.0) -> None:
        conf = self.write_conf()
        with open(self.root / "nginx.out", "wb") as out:
            self.process = subprocess.Popen(
                [NGINX, "-p", str(self.root), "-c", str(conf), "-e", str(self.error_log_path)],
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {self.process.returncode}:\n{self.error_log()}"
                )
            ports = (self.http_port, self.router_port, self.tls_port)
            if all(_listening(p) for p in ports) and all(_answers(self.root / s) for s in SOCKETS):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not listen in {timeout}s:\n{self.error_log()}")
            time.sleep(0.02)

    def reload(self) -> None:
        """`nginx -s reload`: SIGHUP to the master."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex(str(path)) == 0


def _make_readable(root: Path) -> None:
    """Workers run as `nobody` when the master is root: let them read and traverse `root`."""
    os.chmod(root, 0o755)
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in filenames:
            os.chmod(os.path.join(dirpath, f), 0o644)


@functools.cache
def rsa_pem(host: str) -> str:
    """A self-signed RSA 2048 certificate and its key for ``host``, in one PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, host)])
    start = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode()
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
    )


def ec_pem(host: str) -> str:
    """A fresh self-signed EC P-256 certificate and its key for ``host``, in one PEM."""
    cert, key = self_signed_certificate(host)
    return cert + key


@functools.cache
def _fixture_pems() -> dict[str, str]:
    ec = ec_pem("ec.fixture.test")
    return {
        "ec.pem": ec,
        "rsa.pem": rsa_pem("rsa.fixture.test"),
        "cert-only.pem": ec.split("-----BEGIN PRIVATE KEY-----")[0],
        "default.pem": ec_pem("default.invalid"),
    }


def write_fixtures(root: Path) -> None:
    """The default certificate of the TLS listener and the PEMs lua/tests reads."""
    fixtures = root / "lua" / "tests" / "fixtures"
    fixtures.mkdir()
    pems = _fixture_pems()
    for name, text in pems.items():
        (fixtures / name).write_text(text)
    (root / "default.pem").write_text(pems["default.pem"])


@contextlib.contextmanager
def running_nginx() -> Iterator[Nginx]:
    """A started harness nginx with a fresh shared dict; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="ingressd-lua-"))
    try:
        shutil.copytree(LUA_SRC, root / "lua")
        (root / "tmp").mkdir()
        write_fixtures(root)
        _make_readable(root)
        os.chmod(root / "tmp", 0o777)  # nginx creates its *_temp_path dirs in here
        http_port, router_port, tls_port = free_ports(3)
        nginx = Nginx(root, http_port, router_port, tls_port)
        nginx.start()
        try:
            yield nginx
        finally:
            nginx.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ============================================================================ test helpers


@dataclass
class Reply:
    status: int
    body: str
    pid: str
    allow: str | None = None


@dataclass
class Backends:
    """aiohttp servers on 127.0.1.1..N, one shared port, each answering with its address."""

    port: int
    addresses: list[str]
    hits: Counter[str] = field(default_factory=Counter)
    runners: list[web.AppRunner] = field(default_factory=list)

    def backend(
        self, name: str, addresses: list[str] | None = None, **extra: Any
    ) -> dict[str, Any]:
        """A backend object as the controller sends it (ports as strings)."""
        chosen = self.addresses if addresses is None else addresses
        return {
            "name": name,
            "service": {"namespace": "default", "name": name},
            "port": "80",
            "endpoints": [{"address": a, "port": str(self.port)} for a in chosen],
            **extra,
        }


async def start_backends(count: int) -> Backends:
    for _ in range(10):
        port = free_ports(1, "127.0.1.1")[0]
        backends = Backends(port, [f"127.0.1.{i}" for i in range(1, count + 1)])
        try:
            for address in backends.addresses:
                await _serve(backends, address)
            return backends
        except OSError:
            await stop_backends(backends)
    raise RuntimeError("no free port shared by every backend address")


async def _serve(backends: Backends, address: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        backends.hits[address] += 1
        return web.Response(text=address)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    backends.runners.append(runner)
    await web.TCPSite(runner, address, backends.port).start()


async def stop_backends(backends: Backends) -> None:
    for runner in backends.runners:
        await runner.cleanup()


def fresh_session() -> aiohttp.ClientSession:
    """Every request on a new connection (so that requests spread over the workers)."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(force_close=True), timeout=aiohttp.ClientTimeout(total=15)
    )


def unix_url(path: Path) -> str:
    """The base URL of a Unix socket in nginx's notation, ``http://unix:/path.sock:``;
    ``fetch`` sends ``<base>/uri`` over that socket."""
    return f"http://unix:{path}:"


async def fetch(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    data: bytes | None = None,
) -> Reply:
    """``session`` for TCP URLs; a ``unix_url`` target gets a fresh connection of its own."""
    if body is not None:
        data = json.dumps(body).encode()
    if url.startswith("http://unix:"):
        path, _, uri = url.removeprefix("http://unix:").partition(":")
        async with aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path), timeout=aiohttp.ClientTimeout(total=15)
        ) as unix:
            return await _reply(unix.request(method, f"http://localhost{uri}", data=data))
    return await _reply(session.request(method, url, data=data))


async def _reply(request: Any) -> Reply:
    async with request as resp:
        return Reply(
            resp.status,
            await resp.text(),
            resp.headers.get("X-Worker-Pid", ""),
            resp.headers.get("Allow"),
        )


# ============================================================================ fixtures


@pytest.fixture(scope="module")
def lua_nginx() -> Iterator[Nginx]:
    with running_nginx() as nginx:
        yield nginx


@pytest.fixture
def nginx() -> Iterator[Nginx]:
    with running_nginx() as nginx:
        yield nginx
        assert nginx.lua_errors() == []


@pytest.fixture
async def backends() -> AsyncIterator[Backends]:
    backends = await start_backends(4)
    yield backends
    await stop_backends(backends)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with fresh_session() as session:
        yield session


# ============================================================================ Lua unit tests

LUA_TEST_FILES = sorted(p.name for p in (LUA_SRC / "tests").glob("test_*.lua"))


@pytest.mark.nginx
@pytest.mark.parametrize("lua_file", LUA_TEST_FILES)
async def test_lua_unit(lua_nginx: Nginx, lua_file: str) -> None:
    """Every case of one lua/tests/test_*.lua file passes inside nginx."""
    async with fresh_session() as session:
        reply = await fetch(session, "GET", f"{lua_nginx.http}/lua-tests?file={lua_file}")
    assert reply.status == 200, reply.body + lua_nginx.error_log()[-3000:]
    results: list[dict[str, Any]] = json.loads(reply.body)["results"] or []
    assert results, f"{lua_file}: no test cases ran"
    failures = [f"{r['name']}: {r.get('err')}" for r in results if not r["ok"]]
    assert not failures, f"{lua_file}: {len(failures)}/{len(results)} Lua cases failed:\n" + (
        "\n\n".join(failures)
    )


@pytest.mark.nginx
async def test_lua_runner_finds_every_file(lua_nginx: Nginx) -> None:
    async with fresh_session() as session:
        reply = await fetch(session, "GET", f"{lua_nginx.http}/lua-tests")
    data = json.loads(reply.body)
    assert data["files"] == LUA_TEST_FILES
    assert len(data["results"]) >= 40
    assert all(r["ok"] for r in data["results"])


# ============================================================================ protocol


@pytest.mark.nginx
async def test_empty_set_is_an_empty_array_at_version_0(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/backends")
    assert (reply.status, reply.body) == (200, "[]")
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/version")
    assert (reply.status, reply.body) == (200, "0")


@pytest.mark.nginx
async def test_post_upserts_and_get_returns_everything_sorted_and_unchanged(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/backends"
    extra: dict[str, Any] = {
        "load-balance": "round_robin",
        "sessionAffinityConfig": {"name": "", "mode": "", "cookieSessionAffinity": {"name": ""}},
        "upstreamHashByConfig": {"upstream-hash-by-subset-size": 3},
        "trafficShapingPolicy": {"weight": 0, "weightTotal": 0, "header": "", "cookie": ""},
        "alternativeBackends": [],
    }
    c = {"name": "c", "endpoints": [{"address": "10.0.0.1", "port": 8080}], **extra}
    a = {"name": "a", "endpoints": [], "port": "80"}
    reply = await fetch(session, "POST", url, [c, a])
    assert reply.status == 201
    assert json.loads(reply.body) == {"version": 1, "changed": 2}

    b = {"name": "b", "endpoints": [{"address": "10.0.0.2", "port": "80"}]}
    a2 = {**a, "endpoints": [{"address": "10.0.0.3", "port": "80"}]}
    reply = await fetch(session, "POST", url, [b, a2])
    assert json.loads(reply.body) == {"version": 2, "changed": 2}

    reply = await fetch(session, "GET", url)
    assert reply.status == 200
    assert json.loads(reply.body) == [a2, b, c]

    # the same backends again: nothing changes, the version stays
    reply = await fetch(session, "POST", url, [c])
    assert json.loads(reply.body) == {"version": 2, "changed": 0}
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/version")
    assert reply.body == "2"


@pytest.mark.nginx
async def test_put_replaces_the_whole_set(nginx: Nginx, session: aiohttp.ClientSession) -> None:
    url = f"{nginx.control}/configuration/backends"
    await fetch(session, "POST", url, [{"name": n} for n in ("a", "b", "c")])
    reply = await fetch(session, "PUT", url, [{"name": "b"}, {"name": "d", "x": [1]}])
    assert reply.status == 201
    assert json.loads(reply.body) == {"version": 2, "changed": 3}
    assert json.loads((await fetch(session, "GET", url)).body) == [
        {"name": "b"},
        {"name": "d", "x": [1]},
    ]
    reply = await fetch(session, "PUT", url, [])
    assert reply.status == 201
    assert (await fetch(session, "GET", url)).body == "[]"


@pytest.mark.nginx
async def test_delete_removes_the_named_backends_and_only_them(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/backends"
    await fetch(session, "POST", url, [{"name": n} for n in ("a", "b", "c")])
    reply = await fetch(session, "DELETE", url, ["a", "c", "never-sent"])
    assert reply.status == 200
    assert json.loads(reply.body) == {"version": 2, "changed": 2}
    assert json.loads((await fetch(session, "GET", url)).body) == [{"name": "b"}]
    for body, message in [
        (b'{"name": "b"}', "must be a JSON array of backend names"),
        (b'["b", 7]', "names[2] must be a string"),
        (b'[""]', "names[1] must be a string"),
        (b"", "empty body"),
    ]:
        reply = await fetch(session, "DELETE", url, data=body)
        assert (reply.status, message in reply.body) == (400, True), body
    assert json.loads((await fetch(session, "GET", url)).body) == [{"name": "b"}]
    assert (await fetch(session, "GET", f"{nginx.control}/configuration/version")).body == "2"


BAD_BODIES = [
    ("not json", b"{oops", "must be a JSON array"),
    ("empty", b"", "empty body"),
    ("object", b'{"name": "a"}', "must be a JSON array"),
    ("broken element", b'[{"name": "a"}, {"name": "b",}]', "backend #2: invalid JSON"),
    ("no name", b'[{"name": "a"}, {"port": "80"}]', 'backend #2: "name" must be'),
    ("name not string", b'[{"name": 7}]', 'backend #1: "name" must be'),
    (
        "endpoints object",
        b'[{"name": "a", "endpoints": {"address": "x"}}]',
        'backend #1 "a": "endpoints" must be an array',
    ),
    (
        "bad port",
        b'[{"name": "a", "endpoints": [{"address": "x", "port": "http"}]}]',
        'backend #1 "a": endpoints[1].port "http" is not a port number',
    ),
    (
        "no address",
        b'[{"name": "a", "endpoints": [{"port": "80"}]}]',
        'backend #1 "a": endpoints[1].address',
    ),
]


@pytest.mark.nginx
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_bad_bodies_are_rejected_and_nothing_is_stored(
    nginx: Nginx, session: aiohttp.ClientSession, method: str
) -> None:
    url = f"{nginx.control}/configuration/backends"
    await fetch(session, "POST", url, [{"name": "keep"}])
    for label, body, message in BAD_BODIES:
        reply = await fetch(session, method, url, data=body)
        assert reply.status == 400, label
        assert message in reply.body, label
    assert json.loads((await fetch(session, "GET", url)).body) == [{"name": "keep"}]
    assert (await fetch(session, "GET", f"{nginx.control}/configuration/version")).body == "1"


@pytest.mark.nginx
async def test_other_methods_and_paths(nginx: Nginx, session: aiohttp.ClientSession) -> None:
    reply = await fetch(session, "PATCH", f"{nginx.control}/configuration/backends")
    assert reply.status == 405
    assert reply.allow == "GET, POST, PUT, DELETE"
    reply = await fetch(session, "POST", f"{nginx.control}/configuration/version", [])
    assert reply.status == 405
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/nope")
    assert reply.status == 404


@pytest.mark.nginx
async def test_body_buffered_to_a_file_is_read(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    many = [
        {
            "name": f"default-svc-{i:04d}",
            "endpoints": [{"address": f"10.1.{i // 250}.{i % 250}", "port": "8080"}],
        }
        for i in range(500)
    ]
    reply = await fetch(session, "POST", f"{nginx.small_buffer}/configuration/backends", many)
    assert reply.status == 201, reply.body
    assert "buffered to a temporary file" in nginx.error_log()
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/backends")
    assert json.loads(reply.body) == many


@pytest.mark.nginx
async def test_full_shared_dict_is_a_500_and_keeps_the_old_set(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.small_dict}/configuration/backends"
    assert (await fetch(session, "POST", url, [{"name": "keep"}])).status == 201
    big = [{"name": f"big-{i}", "pad": "x" * 1000} for i in range(100)]
    reply = await fetch(session, "POST", url, big)
    assert reply.status == 500
    assert "shared dict is full" in reply.body
    assert json.loads((await fetch(session, "GET", url)).body) == [{"name": "keep"}]


# ============================================================================ proxying


@pytest.mark.nginx
async def test_round_robin_spreads_over_every_endpoint(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    reply = await fetch(
        session, "POST", f"{nginx.control}/configuration/backends", [backends.backend("svc-a")]
    )
    assert reply.status == 201
    replies = [await fetch(session, "GET", f"{nginx.http}/x") for _ in range(80)]
    assert {r.status for r in replies} == {200}
    served = Counter(r.body for r in replies)
    assert set(served) == set(backends.addresses)
    # round robin per worker: each worker is off by at most one per endpoint
    assert max(served.values()) - min(served.values()) <= 2, served
    assert len({r.pid for r in replies}) == 2


@pytest.mark.nginx
async def test_a_post_is_seen_by_the_next_request_in_every_worker(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/backends"
    sets = [backends.addresses[:2], backends.addresses[2:]]
    for round_ in range(12):
        current = sets[round_ % 2]
        method = "PUT" if round_ % 3 == 2 else "POST"
        reply = await fetch(session, method, url, [backends.backend("svc-a", current)])
        assert reply.status == 201
        replies = await asyncio.gather(
            *(fetch(session, "GET", f"{nginx.http}/r{round_}") for _ in range(40))
        )
        assert {r.status for r in replies} == {200}
        served = {r.body for r in replies}
        assert served <= set(current), f"round {round_} ({method}): old endpoints in {served}"
        assert len({r.pid for r in replies}) == 2, "every worker must have answered"


@pytest.mark.nginx
async def test_backends_are_independent_and_missing_ones_are_503(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [
            backends.backend("svc-a", backends.addresses[:1]),
            backends.backend("svc-b", backends.addresses[1:2]),
        ],
    )
    assert (await fetch(session, "GET", f"{nginx.http}/a")).body == "127.0.1.1"
    assert (await fetch(session, "GET", f"{nginx.http}/b/x")).body == "127.0.1.2"
    assert (await fetch(session, "GET", f"{nginx.http}/unknown/x")).status == 503
    plain = await fetch(session, "GET", f"{nginx.http}/plain")
    assert (plain.status, plain.body) == (200, "plain\n")
    # zero endpoints -> 503 as well
    await fetch(
        session, "POST", f"{nginx.control}/configuration/backends", [backends.backend("svc-b", [])]
    )
    for _ in range(6):
        assert (await fetch(session, "GET", f"{nginx.http}/b/x")).status == 503
        assert (await fetch(session, "GET", f"{nginx.http}/a")).status == 200


@pytest.mark.nginx
async def test_retries_skip_failed_endpoints(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    dead = ["127.0.1.200", "127.0.1.201"]  # nothing listens there: connection refused
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [
            backends.backend(
                "svc-a", [dead[0], backends.addresses[0], dead[1], backends.addresses[1]]
            ),
        ],
    )
    replies = [await fetch(session, "GET", f"{nginx.http}/x") for _ in range(40)]
    assert {r.status for r in replies} == {200}
    assert {r.body for r in replies} == set(backends.addresses[:2])


@pytest.mark.nginx
async def test_tries_are_bounded_and_go_to_distinct_endpoints(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    dead = [f"127.0.1.{i}" for i in range(200, 205)]
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [backends.backend("svc-a", dead)],
    )
    for _ in range(4):
        marker = uuid.uuid4().hex
        reply = await fetch(session, "GET", f"{nginx.http}/{marker}")
        assert reply.status == 502
        tries = [
            line
            for line in nginx.error_log().splitlines()
            if marker in line and "connect() failed" in line
        ]
        peers = {line.split('upstream: "http://')[1].split("/")[0] for line in tries}
        assert len(tries) == 3, tries
        assert len(peers) == 3, peers


@pytest.mark.nginx
async def test_backends_survive_a_reload(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [backends.backend("svc-a", backends.addresses[:3])],
    )
    before = [await fetch(session, "GET", f"{nginx.http}/x") for _ in range(20)]
    old_pids = {r.pid for r in before}
    nginx.reload()
    deadline = asyncio.get_running_loop().time() + 10
    new_pids: set[str] = set()
    while len(new_pids) < 2:
        assert asyncio.get_running_loop().time() < deadline, "new workers did not answer"
        reply = await fetch(session, "GET", f"{nginx.http}/x")
        assert reply.status == 200 and reply.body in backends.addresses[:3]
        if reply.pid not in old_pids:
            new_pids.add(reply.pid)
    after = [await fetch(session, "GET", f"{nginx.http}/x") for _ in range(30)]
    assert {r.status for r in after} == {200}
    assert {r.body for r in after} == set(backends.addresses[:3])
    assert (await fetch(session, "GET", f"{nginx.control}/configuration/version")).body == "1"


# ============================================================================ routes: protocol


def route(host: str, *locations: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A route table entry (docs/routing.md)."""
    return {"host": host, "locations": list(locations), **extra}


def loc(
    path: str,
    backend: str | None = "svc-a",
    type_: str = "prefix",
    class_: str = "ca0",
    **extra: Any,
) -> dict[str, Any]:
    return {"path": path, "type": type_, "class": class_, "backend": backend, **extra}


async def versions(nginx: Nginx) -> dict[str, int]:
    async with fresh_session() as session:
        reply = await fetch(session, "GET", f"{nginx.control}/configuration/versions")
    assert reply.status == 200
    return json.loads(reply.body)  # type: ignore[no-any-return]


@pytest.mark.nginx
async def test_routes_are_upserted_replaced_deleted_and_listed(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/routes"
    assert (await fetch(session, "GET", url)).body == "[]"
    b = route("b.com", loc("/"), hsts="max-age=1", extra={"kept": [1, {}]})
    a = route("a.com", loc("/x", None, status=404))
    reply = await fetch(session, "POST", url, [b, a])
    assert (reply.status, json.loads(reply.body)) == (201, {"version": 1, "changed": 2})
    assert json.loads((await fetch(session, "GET", url)).body) == [a, b]
    reply = await fetch(session, "POST", url, [a])
    assert json.loads(reply.body) == {"version": 1, "changed": 0}
    c = route("*.c.com", aliases=["c.com"])
    reply = await fetch(session, "PUT", url, [c, a])
    assert json.loads(reply.body) == {"version": 2, "changed": 2}
    assert json.loads((await fetch(session, "GET", url)).body) == [c, a]
    reply = await fetch(session, "DELETE", url, ["*.c.com", "nope.com"])
    assert (reply.status, json.loads(reply.body)) == (200, {"version": 3, "changed": 1})
    assert json.loads((await fetch(session, "GET", url)).body) == [a]
    assert await versions(nginx) == {"backends": 0, "routes": 3, "certificates": 0}
    reply = await fetch(session, "PATCH", url, [])
    assert (reply.status, reply.allow) == (405, "GET, POST, PUT, DELETE")


@pytest.mark.nginx
async def test_a_large_table_pauses_for_other_requests_without_sleep_0(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    """Validating thousands of entries pauses with a real timer: Debian's module warns on
    every ngx.sleep(0) (it lacks the patch), which flooded the error log."""
    url = f"{nginx.control}/configuration/routes"
    many = [route(f"h{i}.many.test", loc("/"), loc("/api")) for i in range(5000)]
    reply = await fetch(session, "PUT", url, many)
    assert reply.status == 201, reply.body
    assert json.loads(reply.body)["changed"] == 5000
    assert "delayed events patch" not in nginx.error_log()


BAD_ROUTE_BODIES = [
    ("not an array", b'{"host": "a.com"}', "body must be a JSON array of routes"),
    ("bad host", b'[{"host": "a.com"}, {"host": "A.com"}]', 'route #2: "host" "A.com" must be'),
    (
        "bad class",
        json.dumps([route("a.com", loc("/", class_="x"))]).encode(),
        'route #1 "a.com": locations[1].class "x" must match ^c[0-9a-f]+$',
    ),
    (
        "bad type",
        json.dumps([route("a.com", loc("/", type_="Prefix"))]).encode(),
        'locations[1].type "Prefix"',
    ),
    (
        "bad regex",
        json.dumps([route("a.com", loc("/a(", type_="regex"))]).encode(),
        'route #1 "a.com": locations[1].path "/a(" is not a valid regex',
    ),
]


@pytest.mark.nginx
@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_bad_route_bodies_are_refused_and_nothing_is_stored(
    nginx: Nginx, session: aiohttp.ClientSession, method: str
) -> None:
    url = f"{nginx.control}/configuration/routes"
    keep = [route("keep.com", loc("/"))]
    assert (await fetch(session, "POST", url, keep)).status == 201
    for label, body, message in BAD_ROUTE_BODIES:
        reply = await fetch(session, method, url, data=body)
        assert reply.status == 400, label
        assert message in reply.body, (label, reply.body)
        if body.startswith(b"["):
            # after a valid entry: the whole body is refused, not only the bad entry
            good_first = b"[" + json.dumps(route("new.com")).encode() + b"," + body[1:]
            reply = await fetch(session, method, url, data=good_first)
            assert reply.status == 400, label
    assert json.loads((await fetch(session, "GET", url)).body) == keep
    assert (await versions(nginx))["routes"] == 1


async def raw_request(path: Path, head: str) -> tuple[int, str]:
    """Send a request head (no body) over a Unix socket; (status, body) of the answer."""
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(head.encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    status_line, _, rest = data.decode(errors="replace").partition("\r\n")
    return int(status_line.split()[1]), rest.partition("\r\n\r\n")[2]


@pytest.mark.nginx
async def test_bodies_over_the_limit_are_413_before_they_are_read(nginx: Nginx) -> None:
    for uri in ("/configuration/routes", "/configuration/backends", "/configuration/certificates"):
        status, body = await raw_request(
            nginx.root / "control.sock",
            f"POST {uri} HTTP/1.1\r\nHost: x\r\nContent-Length: {200 * 1024 * 1024}\r\n"
            "Connection: close\r\n\r\n",
        )
        assert status == 413, uri
        assert "request body over" in body


# ============================================================================ routes: serving


async def post_routes(nginx: Nginx, routes: list[dict[str, Any]], method: str = "POST") -> None:
    async with fresh_session() as session:
        reply = await fetch(session, method, f"{nginx.control}/configuration/routes", routes)
    assert reply.status == 201, reply.body


async def get(
    session: aiohttp.ClientSession, url: str, host: str, **kwargs: Any
) -> tuple[int, dict[str, Any] | str, Any]:
    async with session.get(url, headers={"Host": host}, allow_redirects=False, **kwargs) as resp:
        text = await resp.text()
        body: dict[str, Any] | str = text
        if resp.headers.get("Content-Type") == "application/json":
            body = json.loads(text)
        return resp.status, body, resp.headers


@pytest.mark.nginx
async def test_the_router_picks_host_and_location_and_sets_the_variables(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    await post_routes(
        nginx,
        [
            route("_", loc("/", None, class_="c404", status=404)),
            route(
                "www.a.com",
                loc("/", "root", namespace="ns", ingress="ing", defaultBackend="fallback"),
                loc("/api", "api"),
                loc("/api", "api-exact", type_="exact"),
                loc("/api/v[0-9]+/", "api-regex", type_="regex"),
                loc("/deny", None, class_="c403", status=403),
                aliases=["a.com"],
                appRoot="/app/",
            ),
            route("*.w.com", loc("/", "wildcard")),
        ],
    )
    cases = [
        ("www.a.com", "/x", 200, "root"),
        ("WWW.A.COM:80", "/x", 200, "root"),
        ("a.com", "/api/x", 200, "api"),
        ("a.com", "/api", 200, "api-exact"),
        ("a.com", "/API/V2/x", 200, "api-regex"),
        ("a.com", "/deny/x", 403, None),
        ("x.w.com", "/anything", 200, "wildcard"),
        ("y.x.w.com", "/", 404, None),
        ("unknown.org", "/", 404, None),
    ]
    for host, path, status, backend in cases:
        got, body, _ = await get(session, f"{nginx.router}{path}", host)
        assert got == status, (host, path, body)
        if backend is not None:
            assert isinstance(body, dict)
            assert (body["class"], body["backend"], body["uri"]) == ("ca0", backend, path)
    _, body, _ = await get(session, f"{nginx.router}/", "www.a.com")
    assert isinstance(body, dict) is False  # appRoot: a redirect, not the class
    got, _, headers = await get(session, f"{nginx.router}/", "a.com")
    assert (got, headers["Location"]) == (302, "http://a.com/app/")
    _, body, _ = await get(session, f"{nginx.router}/y", "www.a.com")
    assert isinstance(body, dict)
    assert (body["namespace"], body["ingress"], body["default_backend"], body["hsts"]) == (
        "ns",
        "ing",
        "fallback",
        "",
    )
    # without the catch-all entry, an unknown host is 404 too
    await post_routes(nginx, [route("www.a.com", loc("/", "root"))], method="PUT")
    assert (await get(session, f"{nginx.router}/", "unknown.org"))[0] == 404
    assert (await get(session, f"{nginx.router}/z", "www.a.com"))[0] == 200


@pytest.mark.nginx
async def test_a_route_change_is_seen_by_the_next_request_in_every_worker(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    for round_ in range(10):
        backend = f"svc-{round_}"
        method = "PUT" if round_ % 3 == 2 else "POST"
        await post_routes(
            nginx,
            [
                route("r.com", loc("/", backend)),
                route(f"new{round_}.com", loc(f"/p{round_}", backend)),
            ],
            method=method,
        )
        replies = await asyncio.gather(
            *(
                get(session, f"{nginx.router}/p{round_}/x", host)
                for host in ("r.com", f"new{round_}.com")
                for _ in range(20)
            )
        )
        assert {r[0] for r in replies} == {200}, replies[:3]
        assert {r[1]["backend"] for r in replies} == {backend}  # type: ignore[index]
        assert len({r[2]["X-Worker-Pid"] for r in replies}) == 2, "every worker answered"


@pytest.mark.nginx
async def test_content_length_over_the_class_limit_is_413(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    await post_routes(
        nginx, [route("b.com", loc("/small", maxBody=10), loc("/free", maxBody=0), loc("/default"))]
    )

    async def post(path: str, data: Any) -> tuple[int, Any]:
        async with session.post(
            f"{nginx.router}{path}", data=data, headers={"Host": "b.com"}
        ) as resp:
            text = await resp.text()
            return resp.status, json.loads(text) if resp.status == 200 else text

    status, body = await post("/small", b"x" * 10)
    assert (status, body["body"]) == (200, 10)
    assert (await post("/small", b"x" * 11))[0] == 413
    assert (await post("/default", io.BytesIO(b"x" * 1048577)))[0] == 413, "1m by default"
    # maxBody 0: no limit from the router; the named location reads what Content-Length says
    status, body = await post("/free", b"x" * 5000)
    assert (status, body["body"]) == (200, 5000)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 1000

    # a chunked body is checked by the class's own client_max_body_size (1k) while read
    assert (await post("/free", chunks()))[0] == 413


@pytest.mark.nginx
async def test_a_class_proxies_through_the_balancer(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [backends.backend("svc-a", backends.addresses[:2])],
    )
    await post_routes(
        nginx,
        [
            route(
                "p.com", loc("/", "svc-a", class_="cb1"), loc("/none", "svc-unknown", class_="cb1")
            )
        ],
    )
    served = set()
    for _ in range(8):
        status, body, headers = await get(session, f"{nginx.router}/x", "p.com")
        assert (status, headers["X-Class"]) == (200, "cb1")
        served.add(body)
    assert served == set(backends.addresses[:2])
    assert (await get(session, f"{nginx.router}/none", "p.com"))[0] == 503


@pytest.mark.nginx
async def test_the_router_balances_the_routes_of_a_listed_class_before_handing_them_over(
    nginx: Nginx, backends: Backends, session: aiohttp.ClientSession
) -> None:
    """@cb2 runs no Lua: the router picks the endpoints' backend, falls back to the route's
    default backend, or answers 503 itself (no X-Class: the class never saw the request)."""
    await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/backends",
        [
            backends.backend("svc-a", backends.addresses[:1]),
            backends.backend("svc-b", backends.addresses[1:2]),
            backends.backend("svc-empty", []),
        ],
    )
    await post_routes(
        nginx,
        [
            route(
                "q.com",
                loc("/", "svc-a", class_="cb2"),
                loc("/empty", "svc-empty", class_="cb2"),
                loc("/unknown", "svc-unknown", class_="cb2"),
                loc("/fallback", "svc-empty", class_="cb2", defaultBackend="svc-b"),
            )
        ],
    )
    status, body, headers = await get(session, f"{nginx.router}/x", "q.com")
    assert (status, body, headers["X-Class"]) == (200, backends.addresses[0], "cb2")
    for path in ("/empty", "/unknown"):
        status, _, headers = await get(session, f"{nginx.router}{path}", "q.com")
        assert (status, headers.get("X-Class")) == (503, None), path
    status, body, headers = await get(session, f"{nginx.router}/fallback", "q.com")
    assert (status, body, headers["X-Class"]) == (200, backends.addresses[1], "cb2")


# ============================================================================ certificates


def peer_der(port: int, server_name: str | None) -> bytes:
    """The DER certificate nginx presents in a handshake with SNI ``server_name`` (or none)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der_of(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


async def handshakes(nginx: Nginx, server_name: str | None, count: int = 10) -> set[bytes]:
    """The certificates seen in ``count`` handshakes (fresh connections: both workers)."""
    loop = asyncio.get_running_loop()
    return set(
        await asyncio.gather(
            *(
                loop.run_in_executor(None, peer_der, nginx.tls_port, server_name)
                for _ in range(count)
            )
        )
    )


@pytest.mark.nginx
async def test_sni_gets_the_hosts_certificate_the_wildcards_or_the_default(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    exact, wildcard = ec_pem("a.test"), rsa_pem("*.w.test")
    default = der_of(_fixture_pems()["default.pem"])
    reply = await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/certificates",
        {
            "certificates": {"uid-a": exact, "uid-w": wildcard},
            "servers": {"a.test": "uid-a", "*.w.test": "uid-w"},
        },
    )
    assert (reply.status, json.loads(reply.body)) == (201, {"version": 1, "changed": 4})
    assert await handshakes(nginx, "a.test") == {der_of(exact)}
    assert await handshakes(nginx, "A.Test") == {der_of(exact)}
    assert await handshakes(nginx, "x.w.test") == {der_of(wildcard)}
    assert await handshakes(nginx, "y.x.w.test", 4) == {default}
    assert await handshakes(nginx, "other.test", 4) == {default}
    assert await handshakes(nginx, None, 4) == {default}
    reply = await fetch(session, "GET", f"{nginx.control}/configuration/certificates")
    assert json.loads(reply.body) == {
        "version": 1,
        "servers": {"*.w.test": "uid-w", "a.test": "uid-a"},
        "certificates": ["uid-a", "uid-w"],
    }
    assert "PRIVATE" not in reply.body


@pytest.mark.nginx
async def test_a_routed_host_without_a_certificate_gets_the_default_not_the_wildcards(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    """As a server block without a certificate in --routing nginx, and as ingress-nginx (whose
    host -> certificate map names every server): the wildcard's certificate is for names the
    route table does not name itself (its hosts and aliases)."""
    wildcard = rsa_pem("*.w.test")
    default = der_of(_fixture_pems()["default.pem"])
    reply = await fetch(
        session,
        "POST",
        f"{nginx.control}/configuration/certificates",
        {"certificates": {"uid-w": wildcard}, "servers": {"*.w.test": "uid-w"}},
    )
    assert reply.status == 201, reply.body
    assert await handshakes(nginx, "c.w.test") == {der_of(wildcard)}, "not routed yet"
    routes_url = f"{nginx.control}/configuration/routes"
    reply = await fetch(
        session,
        "POST",
        routes_url,
        [route("c.w.test", loc("/")), route("d.test", loc("/"), aliases=["e.w.test"])],
    )
    assert reply.status == 201, reply.body
    assert await handshakes(nginx, "c.w.test", 4) == {default}, "a routed host"
    assert await handshakes(nginx, "e.w.test", 4) == {default}, "a routed alias"
    assert await handshakes(nginx, "x.w.test", 4) == {der_of(wildcard)}, "not routed"
    reply = await fetch(session, "DELETE", routes_url, ["c.w.test"])
    assert reply.status == 200, reply.body
    assert await handshakes(nginx, "c.w.test", 4) == {der_of(wildcard)}, "no longer routed"


@pytest.mark.nginx
async def test_a_rotated_certificate_is_served_on_the_next_handshake(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/certificates"
    old, new = ec_pem("r.test"), ec_pem("r.test")
    await fetch(session, "POST", url, {"certificates": {"v1": old}, "servers": {"r.test": "v1"}})
    assert await handshakes(nginx, "r.test") == {der_of(old)}  # both workers cached v1
    reply = await fetch(
        session, "POST", url, {"certificates": {"v2": new}, "servers": {"r.test": "v2"}}
    )
    assert reply.status == 201
    assert await handshakes(nginx, "r.test", 16) == {der_of(new)}
    assert json.loads((await fetch(session, "GET", url)).body)["certificates"] == ["v2"]
    # PUT without the host: the default again
    await fetch(session, "PUT", url, {"certificates": {}, "servers": {}})
    assert await handshakes(nginx, "r.test") == {der_of(_fixture_pems()["default.pem"])}


@pytest.mark.nginx
async def test_bad_certificate_bodies_are_refused_naming_the_uid(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    url = f"{nginx.control}/configuration/certificates"
    good = ec_pem("g.test")
    cert_only = good.split("-----BEGIN PRIVATE KEY-----")[0]
    reply = await fetch(
        session,
        "POST",
        url,
        {"certificates": {"ok": good, "bad": cert_only}, "servers": {"g.test": "ok"}},
    )
    assert reply.status == 400
    assert 'certificates["bad"]: no private key that parses' in reply.body
    reply = await fetch(session, "POST", url, {"servers": {"g.test": "missing"}})
    assert reply.status == 400
    assert 'certificate "missing" is neither in the body nor stored' in reply.body
    assert (await versions(nginx))["certificates"] == 0
    reply = await fetch(session, "DELETE", url)
    assert (reply.status, reply.allow) == (405, "GET, POST, PUT")


@pytest.mark.nginx
async def test_certificate_bodies_never_go_to_a_file(
    nginx: Nginx, session: aiohttp.ClientSession
) -> None:
    # small-buffer.sock keeps 1k in memory: nginx writes a larger body to a temp file
    reply = await fetch(
        session,
        "POST",
        f"{nginx.small_buffer}/configuration/certificates",
        {"certificates": {"u": rsa_pem("f.test")}, "servers": {"f.test": "u"}},
    )
    assert reply.status == 413
    assert "never written to a file" in reply.body
    assert (await versions(nginx))["certificates"] == 0


@pytest.mark.nginx
async def test_hsts_is_sent_on_https_only(nginx: Nginx, session: aiohttp.ClientSession) -> None:
    await post_routes(nginx, [route("h.test", loc("/"), hsts="max-age=31536000")])
    _, body, headers = await get(session, f"{nginx.https}/x", "h.test", ssl=False)
    assert isinstance(body, dict) and body["hsts"] == "max-age=31536000"
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    _, body, headers = await get(session, f"{nginx.router}/x", "h.test")
    assert isinstance(body, dict) and body["hsts"] == ""
    assert "Strict-Transport-Security" not in headers


@pytest.mark.nginx
async def test_a_whole_set_sent_in_chunks_arrives_whole(nginx: Nginx) -> None:
    """The controller streams a body of more than CHUNK_ITEMS backends (chunked transfer
    encoding); the endpoint reads it as one array, and a DELETE by name prunes some."""
    count = 2 * CHUNK_ITEMS + 7
    sent = [
        Backend(
            BackendName(f"b{i:04d}"), "default", f"svc{i}", "80", (Endpoint("10.0.0.1", i + 1),)
        )
        for i in range(count)
    ]
    endpoint = LuaEndpoint(socket_path=str(nginx.root / "control.sock"))
    try:
        assert await endpoint.put_backends(sent) == count
        held = await endpoint.get_backends()
        assert [b["name"] for b in held] == [b.name for b in sent]
        assert held[-1] == json.loads(json.dumps(sent[-1].to_lua()))
        assert await endpoint.delete_backends([b.name for b in sent[1:]]) == count - 1
        assert [b["name"] for b in await endpoint.get_backends()] == ["b0000"]
    finally:
        await endpoint.close()
