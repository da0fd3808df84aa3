"""Data plane: requests/s through the Lua balancer against a static upstream block.

    wrk -> nginx (ingressd's nginx.conf) --balancer_by_lua, round robin--> PodNginx (N pods)
    wrk -> the same nginx, extra server --static `upstream { server ...; keepalive }`--> same pods

Same nginx process, same workers, same pods, same wrk settings; the two are measured in
alternating rounds and compared by the ratio of their median requests/s (target >= 0.97).
The static server is added through a derived template (``--template`` is a real option of
``ingressd run``); it inherits the http-level ``rewrite_by_lua`` like every server, which returns
at once there because no backend is set.

    python -m benchmarks.dataplane [--pods 10] [--seconds 5] [--rounds 3] [--connections 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import PodNginx, WrkResult, free_port, machine, run_wrk, temp_root
from ingressd.logs import configure
from ingressd.nginx.rendering import DEFAULT_TEMPLATE
from ingressd.runtime import Ingressd, Options
from ingressd.store.sources.memory import MemorySource
from ingressd.testing.objects import endpoint_slice, ingress, path, rule, service, service_port


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


def _derived_template(root: Path, addresses: list[str], port: int, static_port: int) -> Path:
    servers = "\n".join(f"        server {a}:{port};" for a in addresses)
    block = f"""
    upstream static_backend {{
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
    static_port = free_port()
    source = MemorySource(
        [
            service("bench", ports=[service_port(80, "http", target_port=pod_port)]),
            endpoint_slice("bench", endpoints=addresses, port=pod_port, port_name="http"),
            ingress("bench", rules=[rule("bench.test", path("/", "bench"))]),
        ]
    )
    options = Options(
        work_dir=root / "work",
        http_port=free_port(),
        https_port=free_port(),
        status_port=free_port(),
        status_address="127.0.0.1",
        control_port=free_port(),
        worker_processes="2",
        template=_derived_template(root, addresses, pod_port, static_port),
    )
    controller = Ingressd(options, source=source)
    await controller.start()
    lua: list[WrkResult] = []
    static: list[WrkResult] = []
    try:
        await controller.wait_until_synced()
        await run_wrk(f"http://127.0.0.1:{options.http_port}/", host="bench.test", seconds=1)
        await run_wrk(f"http://127.0.0.1:{static_port}/", host="bench.test", seconds=1)
        for _ in range(rounds):
            lua.append(await run_wrk(f"http://127.0.0.1:{options.http_port}/", host="bench.test",
                                     seconds=seconds, connections=connections))
            static.append(await run_wrk(f"http://127.0.0.1:{static_port}/", host="bench.test",
                                        seconds=seconds, connections=connections))
    finally:
        await controller.stop()
        pod_nginx.stop()
        shutil.rmtree(root, ignore_errors=True)
    lua_rps = [r.requests_per_second for r in lua]
    static_rps = [r.requests_per_second for r in static]
    return DataplaneResult(
        pods=pods,
        rounds=rounds,
        seconds=seconds,
        connections=connections,
        lua_rps=lua_rps,
        static_rps=static_rps,
        lua_p99_ms=[r.latency_p99_ms for r in lua],
        static_p99_ms=[r.latency_p99_ms for r in static],
        errors=sum(r.non_2xx + r.socket_errors for r in lua + static),
        ratio=round(statistics.median(lua_rps) / statistics.median(static_rps), 3),
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
        f"{result.seconds:g}s, {result.connections} connections:\n"
        f"  Lua balancer   {statistics.median(result.lua_rps):9.0f} req/s (median; "
        f"{', '.join(f'{x:.0f}' for x in result.lua_rps)})\n"
        f"  static upstream {statistics.median(result.static_rps):8.0f} req/s (median; "
        f"{', '.join(f'{x:.0f}' for x in result.static_rps)})\n"
        f"  ratio Lua/static = {result.ratio} (target >= 0.97); errors {result.errors}"
    )
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
