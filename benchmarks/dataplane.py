"""Data plane: requests/s through the Lua balancer against static upstream blocks.

    wrk -> nginx (ingressd's nginx.conf) --balancer_by_lua--> PodNginx (N pods)
             bench.test  round robin
             ewma.test   load-balance: ewma
             hash.test   upstream-hash-by: $request_uri (consistent hashing)
    wrk -> the same nginx, extra servers --static `upstream { server ...; keepalive }`--> same pods
             round robin, and `hash $request_uri consistent`

Same nginx process, same workers, same pods, same wrk settings; all are measured in alternating
rounds and compared by the ratio of their median requests/s: Lua round robin / static round
robin (target >= 0.97), Lua EWMA / static round robin (nginx has no EWMA), Lua consistent hash /
static consistent hash.  wrk asks one URI, so both hashing setups send every request to one pod.
The static server is added through a derived template (``--template`` is a real option of
``ingressd run``); in ``--routing lua`` (the default) no ``rewrite_by_lua`` is inherited from
the http level, so it runs no Lua before proxying.

    python -m benchmarks.dataplane [--pods 10] [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import PodNginx, WrkResult, free_port, machine, run_wrk, temp_root
from ingressd.annotations import DEFAULT_PREFIX as PREFIX
from ingressd.app.runtime import Ingressd, Options
from ingressd.logs import configure
from ingressd.nginx.rendering import DEFAULT_TEMPLATE
from ingressd.store.sources.memory import MemorySource
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port


@dataclass
class DataplaneResult:
    pods: int
    rounds: int
    seconds: float
    connections: int
    lua_rps: list[float]
    static_rps: list[float]
    lua_p99_ms: list[float]
    static_p99_ms: list[float]
    errors: int
    ratio: float
    ewma_rps: list[float] = field(default_factory=list)
    chash_rps: list[float] = field(default_factory=list)
    static_hash_rps: list[float] = field(default_factory=list)
    #: Lua EWMA / static round robin; Lua consistent hash / static consistent hash.
    ewma_ratio: float = 0.0
    chash_ratio: float = 0.0


def _derived_template(
    root: Path, addresses: list[str], port: int, static_port: int, hash_port: int
) -> Path:
    servers = "\n".join(f"        server {a}:{port};" for a in addresses)
    block = f"""
    upstream static_backend {{
{servers}
        keepalive 320;
    }}
    upstream static_hash_backend {{
        hash $request_uri consistent;
{servers}
        keepalive 320;
    }}
    server {{
        listen {static_port};
        server_name _;
        location / {{
            proxy_pass http://static_backend;
        }}
    }}
    server {{
        listen {hash_port};
        server_name _;
        location / {{
            proxy_pass http://static_hash_backend;
        }}
    }}

    # Control server"""
    text = DEFAULT_TEMPLATE.read_text().replace("\n    # Control server", block, 1)
    target = root / "templates"
    target.mkdir(exist_ok=True)
    (target / "nginx.conf.j2").write_text(text)
    return target / "nginx.conf.j2"


async def run(pods: int, seconds: float, rounds: int, connections: int) -> DataplaneResult:
    root = temp_root("ingressd-dataplane-")
    addresses = [f"127.0.60.{i + 1}" for i in range(pods)]
    pod_port = free_port()
    pod_nginx = PodNginx(addresses, pod_port, root)
    pod_nginx.start()
    static_port, hash_port = free_port(), free_port()
    objects: list[dict[str, Any]] = []
    # One Service per balancer: balancing annotations apply per backend (Service port).
    for name, extra in (
        ("bench", {}),
        ("ewma", {f"{PREFIX}/load-balance": "ewma"}),
        ("hash", {f"{PREFIX}/upstream-hash-by": "$request_uri"}),
    ):
        objects += [
            service(name, ports=[service_port(80, "http", target_port=pod_port)]),
            endpoint_slice(name, endpoints=addresses, port=pod_port, port_name="http"),
            ingress(name, rules=[rule(f"{name}.test", path("/", name))], annotations=extra),
        ]
    source = MemorySource(objects)
    options = Options(
        work_dir=root / "work",
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        status_address="127.0.0.1",
        worker_processes="2",
        allow_loopback_endpoints=True,  # the pods are on 127.0.60.x
        template=_derived_template(root, addresses, pod_port, static_port, hash_port),
    )
    controller = Ingressd(options, source=source)
    await controller.start()
    lua_url = f"http://127.0.0.1:{options.http_port}/"
    setups = {  # name -> (url, Host)
        "lua": (lua_url, "bench.test"),
        "static": (f"http://127.0.0.1:{static_port}/", "bench.test"),
        "ewma": (lua_url, "ewma.test"),
        "chash": (lua_url, "hash.test"),
        "static_hash": (f"http://127.0.0.1:{hash_port}/", "bench.test"),
    }
    runs: dict[str, list[WrkResult]] = {name: [] for name in setups}
    try:
        await controller.wait_until_synced()
        for url, host in setups.values():  # warm-up: connections, Lua caches
            await run_wrk(url, host=host, seconds=1)
        for _ in range(rounds):
            for name, (url, host) in setups.items():
                runs[name].append(
                    await run_wrk(url, host=host, seconds=seconds, connections=connections)
                )
    finally:
        await controller.stop()
        pod_nginx.stop()
        shutil.rmtree(root, ignore_errors=True)
    rps = {name: [r.requests_per_second for r in found] for name, found in runs.items()}
    lua, static = runs["lua"], runs["static"]
    lua_rps, static_rps = rps["lua"], rps["static"]
    return DataplaneResult(
        pods=pods,
        rounds=rounds,
        seconds=seconds,
        connections=connections,
        lua_rps=lua_rps,
        static_rps=static_rps,
        lua_p99_ms=[r.latency_p99_ms for r in lua],
        static_p99_ms=[r.latency_p99_ms for r in static],
        errors=sum(r.non_2xx + r.socket_errors for found in runs.values() for r in found),
        ratio=_ratio(lua_rps, static_rps),
        ewma_rps=rps["ewma"],
        chash_rps=rps["chash"],
        static_hash_rps=rps["static_hash"],
        ewma_ratio=_ratio(rps["ewma"], static_rps),
        chash_ratio=_ratio(rps["chash"], rps["static_hash"]),
    )


def _ratio(a: list[float], b: list[float]) -> float:
    return round(statistics.median(a) / statistics.median(b), 3)


def describe(r: DataplaneResult) -> str:
    def med(values: list[float]) -> str:
        return f"{statistics.median(values):.0f} req/s" if values else "n/a"

    return "\n".join(
        [
            f"- round robin: Lua balancer {med(r.lua_rps)}, static upstream {med(r.static_rps)} "
            f"(medians of {r.rounds} alternating rounds): ratio {r.ratio} (target >= 0.97)",
            f"- EWMA: Lua {med(r.ewma_rps)}, against static round robin: ratio {r.ewma_ratio}",
            f"- consistent hashing on $request_uri: Lua {med(r.chash_rps)}, static "
            f"`hash $request_uri consistent` {med(r.static_hash_rps)}: ratio {r.chash_ratio}",
            f"- errors (non-2xx and socket errors, all runs): {r.errors}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Lua balancer vs static upstream, requests/s.")
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    configure(level="warning")
    print(f"machine: {machine()}")
    result = asyncio.run(run(args.pods, args.seconds, args.rounds, args.connections))
    print(
        f"data plane, {result.pods} pods, {result.rounds} alternating rounds of "
        f"{result.seconds:g}s, {result.connections} connections:"
    )
    print(describe(result))
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
