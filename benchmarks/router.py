"""Router cost: requests/s through ``ingressd.router`` against a plain location, same nginx.

    wrk -> nginx, 1 worker
             :plain    location / { return 200 }                       (no Lua)
             :exec     location / { rewrite_by_lua ngx.exec("@c1") }   (the hand-over alone)
             :routed   location / { rewrite_by_lua router.route() }    -> ngx.exec("@c1")
                       location @c1 { return 200 }
             :proxied  the same two, each in front of a fast pod (PodNginx) through the Lua
                       balancer: `plain` sets $proxy_upstream_name itself, `routed` gets it
                       from the router

The route table holds N hosts (``h<i>.team<i % 37>.bench.test``: Prefix /, Prefix /api,
Prefix /api/v1, Exact /health, one regex shared by every host), PUT on the control socket
before the runs. wrk asks ``/api/v1/users/42`` of one host in the middle (``--rotate``: of
every host in turn, through a wrk script). Plain and routed are measured in alternating
rounds; the report gives the medians, their ratio and the difference in microseconds per
request (1/rps).

    python -m benchmarks.router [--hosts 10,10000] [--seconds 5] [--rounds 3]
                                [--connections 32] [--rotate] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import (
    PodNginx,
    WrkResult,
    free_port,
    machine,
    nginx_workers_cpu_seconds,
    parse_wrk,
    temp_root,
)

LUA_SRC = Path(__file__).resolve().parent.parent / "lua"

CONF = """
load_module /usr/share/nginx/modules/ndk_http_module.so;
load_module /usr/share/nginx/modules/ngx_http_lua_module.so;
daemon off;
worker_processes 1;
pid @ROOT@/nginx.pid;
error_log @ROOT@/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    keepalive_requests 1000000;
    client_body_temp_path @ROOT@/tmp/client_body;
    proxy_temp_path @ROOT@/tmp/proxy;
    fastcgi_temp_path @ROOT@/tmp/fastcgi;
    uwsgi_temp_path @ROOT@/tmp/uwsgi;
    scgi_temp_path @ROOT@/tmp/scgi;
    lua_package_path "@ROOT@/lua/?.lua;/usr/share/lua/5.1/?.lua;;";
    lua_shared_dict ingressd_configuration 256m;
    # as templates/nginx.conf.j2 in --routing lua: the router balances @c2's routes, no
    # rewrite_by_lua at http level
    init_by_lua_block {
        require("ingressd.configuration"); require("ingressd.router").init({"c2"})
    }
    init_worker_by_lua_block {
        require("ingressd.balancer").init_worker(); require("ingressd.router").init_worker()
    }
    upstream upstream_balancer {
        server 0.0.0.1;
        balancer_by_lua_block { require("ingressd.balancer").balance() }
        keepalive 320;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    server {
        listen 127.0.0.1:@PLAIN@ backlog=4096;
        set $proxy_upstream_name "";
        location / { return 200 "ok\\n"; }
    }
    server {
        listen 127.0.0.1:@ROUTED@ backlog=4096;
        set $proxy_upstream_name "";
        set $namespace "";
        set $ingress_name "";
        set $ingressd_default_backend "";
        set $ingressd_hsts "";
        client_max_body_size 0;
        location / { rewrite_by_lua_block { require("ingressd.router").route() } }
        location @c1 {
            rewrite_by_lua_block { require("ingressd.balancer").rewrite() }
            return 200 "ok\\n";
        }
        location @c2 { proxy_pass http://upstream_balancer; }
    }
    server {
        listen 127.0.0.1:@EXEC@ backlog=4096;
        location / { rewrite_by_lua_block { ngx.exec("@c1") } }
        location @c1 { return 200 "ok\\n"; }
    }
    server {
        listen 127.0.0.1:@PLAIN_PROXY@ backlog=4096;
        rewrite_by_lua_block { require("ingressd.balancer").rewrite() }
        set $proxy_upstream_name "";
        location / { set $proxy_upstream_name "@BACKEND@"; proxy_pass http://upstream_balancer; }
    }
    server {
        listen unix:@ROOT@/control.sock;
        client_max_body_size 0;
        client_body_buffer_size 64m;
        location /configuration {
            content_by_lua_block { require("ingressd.configuration").call() }
        }
    }
}
"""

ROTATE_SCRIPT = """
local n, i = @HOSTS@, 0
request = function()
    i = i %% n + 1
    local host = "h" .. i .. ".team" .. (i %% 37) .. ".bench.test"
    return wrk.format("GET", "/api/v1/users/42", { Host = host })
end
"""


def host_name(i: int) -> str:
    return f"h{i}.team{i % 37}.bench.test"


def backend_name(i: int) -> str:
    return f"ns{i % 50}-svc{i}-80"


def table(hosts: int, class_: str) -> list[dict[str, Any]]:
    """N entries whose texts differ as real ones do (names of services, namespaces, Ingresses):
    entries that differ only in the host number make LuaJIT's sparse string hash collide."""

    def loc(i: int, path: str, type_: str = "prefix") -> dict[str, Any]:
        return {
            "path": path,
            "type": type_,
            "class": class_,
            "backend": backend_name(i),
            "namespace": f"ns{i % 50}",
            "ingress": f"ing-{i}",
            "maxBody": 1048576,
        }

    return [
        {
            "host": host_name(i),
            "hsts": False,
            "appRoot": None,
            "locations": [
                loc(i, "/"),
                loc(i, "/api"),
                loc(i, "/api/v1"),
                loc(i, "/health", "exact"),
                loc(i, "/static/.*\\.(css|js)$", "regex"),
            ],
        }
        for i in range(1, hosts + 1)
    ]


@dataclass
class RouterResult:
    hosts: int
    rotate: bool
    plain_rps: list[float]
    exec_rps: list[float]
    routed_rps: list[float]
    plain_proxy_rps: list[float]
    routed_proxy_rps: list[float]
    ratio: float
    proxy_ratio: float
    cost_us: float
    post_seconds: float
    first_request_after_put_ms: float
    errors: int
    #: CPU time of the nginx worker per request (utime + stime over the requests wrk made):
    #: what the machine's load does not change, unlike requests/s.
    plain_proxy_cpu_us: float = 0.0
    routed_proxy_cpu_us: float = 0.0


async def control(root: Path, method: str, uri: str, body: Any) -> str:
    connector = aiohttp.UnixConnector(str(root / "control.sock"))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(method, f"http://localhost{uri}", json=body) as resp:
            text = await resp.text()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {uri}: {resp.status} {text}")
            return text


async def wrk(
    url: str, host: str, seconds: float, connections: int, script: Path | None
) -> WrkResult:
    args = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Host: {host}",
    ]
    if script is not None:
        args += ["-s", str(script)]
    proc = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    return parse_wrk(out.decode())


async def measure(
    hosts: int, *, seconds: float, rounds: int, connections: int, rotate: bool
) -> RouterResult:
    root = temp_root("ingressd-router-bench-")
    shutil.copytree(LUA_SRC, root / "lua")
    (root / "tmp").mkdir(mode=0o777)
    ports = {name: free_port() for name in ("PLAIN", "EXEC", "ROUTED", "PLAIN_PROXY")}
    text = CONF.replace("@ROOT@", str(root)).replace("@BACKEND@", backend_name(hosts // 2 + 1))
    for name, port in ports.items():
        text = text.replace(f"@{name}@", str(port))
    (root / "nginx.conf").write_text(text)
    for path in root.rglob("*"):
        path.chmod(0o777 if path.is_dir() else 0o644)
    pod_port = free_port()
    pods = PodNginx(["127.0.2.1"], pod_port, root)
    pods.start()
    nginx = subprocess.Popen(
        ["nginx", "-p", str(root), "-c", str(root / "nginx.conf"), "-e", str(root / "error.log")],
        start_new_session=True,
    )
    try:
        for _ in range(200):
            if (root / "control.sock").exists():
                break
            await asyncio.sleep(0.05)
        pod = [{"address": "127.0.2.1", "port": str(pod_port)}]
        await control(
            root,
            "PUT",
            "/configuration/backends",
            [{"name": backend_name(i), "endpoints": pod} for i in range(1, hosts + 1)],
        )
        started = time.monotonic()
        await control(root, "PUT", "/configuration/routes", table(hosts, "c1"))
        post_seconds = time.monotonic() - started
        host = host_name(hosts // 2 + 1)
        routed = f"http://127.0.0.1:{ports['ROUTED']}/api/v1/users/42"
        # the first request after a PUT of new entries decodes the whole table in the worker
        async with aiohttp.ClientSession() as session:
            started = time.monotonic()
            async with session.get(routed, headers={"Host": host}) as resp:
                assert resp.status == 200, await resp.text()
            first_ms = (time.monotonic() - started) * 1000
        script = None
        if rotate:
            script = root / "rotate.lua"
            script.write_text(ROTATE_SCRIPT.replace("@HOSTS@", str(hosts)).replace("%%", "%"))
        plain_url = f"http://127.0.0.1:{ports['PLAIN']}/api/v1/users/42"
        exec_url = f"http://127.0.0.1:{ports['EXEC']}/api/v1/users/42"
        plain_proxy_url = f"http://127.0.0.1:{ports['PLAIN_PROXY']}/api/v1/users/42"
        plain: list[float] = []
        exec_rps: list[float] = []
        routed_rps: list[float] = []
        plain_proxy: list[float] = []
        routed_proxy: list[float] = []
        errors = 0
        for _ in range(rounds):
            for url, out in ((plain_url, plain), (exec_url, exec_rps), (routed, routed_rps)):
                r = await wrk(url, host, seconds, connections, script)
                out.append(r.requests_per_second)
                errors += r.non_2xx + r.socket_errors
        await control(root, "PUT", "/configuration/routes", table(hosts, "c2"))
        cpu: dict[str, list[float]] = {"plain": [], "routed": []}
        for _ in range(rounds):
            for url, out, kind in (
                (plain_proxy_url, plain_proxy, "plain"),
                (routed, routed_proxy, "routed"),
            ):
                before = nginx_workers_cpu_seconds(nginx.pid)
                r = await wrk(url, host, seconds, connections, script)
                used = nginx_workers_cpu_seconds(nginx.pid) - before
                out.append(r.requests_per_second)
                if r.requests:
                    cpu[kind].append(used / r.requests * 1e6)
                errors += r.non_2xx + r.socket_errors
        p, r_ = statistics.median(plain), statistics.median(routed_rps)
        return RouterResult(
            hosts=hosts,
            rotate=rotate,
            plain_rps=plain,
            exec_rps=exec_rps,
            routed_rps=routed_rps,
            plain_proxy_rps=plain_proxy,
            routed_proxy_rps=routed_proxy,
            ratio=r_ / p,
            proxy_ratio=statistics.median(routed_proxy) / statistics.median(plain_proxy),
            cost_us=(1 / r_ - 1 / p) * 1e6,
            post_seconds=post_seconds,
            first_request_after_put_ms=first_ms,
            errors=errors,
            plain_proxy_cpu_us=statistics.median(cpu["plain"]) if cpu["plain"] else 0.0,
            routed_proxy_cpu_us=statistics.median(cpu["routed"]) if cpu["routed"] else 0.0,
        )
    finally:
        nginx.terminate()
        nginx.wait()
        pods.stop()
        shutil.rmtree(root, ignore_errors=True)


def report(results: list[RouterResult]) -> str:
    lines = [
        f"machine: {machine()}",
        "| hosts | wrk Host | plain req/s | exec only req/s | routed req/s | routed/plain "
        "| router cost | proxied: routed/plain | PUT of the table | 1st request after PUT "
        "| errors | proxied: nginx CPU per request, plain / routed |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.hosts:,} | {'every host' if r.rotate else 'one'} "
            f"| {statistics.median(r.plain_rps):,.0f} | {statistics.median(r.exec_rps):,.0f} "
            f"| {statistics.median(r.routed_rps):,.0f} "
            f"| {r.ratio:.2f} | {r.cost_us:.1f} us | {r.proxy_ratio:.2f} "
            f"| {r.post_seconds * 1000:.0f} ms | {r.first_request_after_put_ms:.0f} ms "
            f"| {r.errors} | {r.plain_proxy_cpu_us:.1f} / {r.routed_proxy_cpu_us:.1f} us |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", default="10,10000")
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rotate", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = []
    for hosts in (int(h) for h in args.hosts.split(",")):
        results.append(
            asyncio.run(
                measure(
                    hosts,
                    seconds=args.seconds,
                    rounds=args.rounds,
                    connections=args.connections,
                    rotate=args.rotate,
                )
            )
        )
        print(report(results[-1:]).splitlines()[-1], flush=True)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
