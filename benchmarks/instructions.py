"""Instructions per request of each routing mode's nginx, counted by callgrind: the data plane's
cost without the noise of a shared machine (requests/s and CPU time move with the load).

    world(--hosts) of benchmarks.routing -> one controller per mode (its Run: real nginx,
    PodNginx pods) -> per mode: a copy of its nginx.conf and lua/ as one nginx process
    (master_process off) under ``valgrind --tool=callgrind --instr-atstart=no`` -> the
    backends and routes its controller sent (GET, then PUT on the copy's control socket) ->
    warm-up requests (JIT traces, caches, keep-alive to the pods) -> instrumentation on ->
    --requests keep-alive GETs of /api/users for the data plane's host -> off -> Ir / requests

Counted: the nginx process's user-space instructions (Ir) for those requests only; not the
kernel's network work, nor wrk's or the pods' (so the ratio here is larger than the ratio of
requests/s, where those costs are shared by both modes). The same for a given build, whatever
the load. Needs valgrind.

    python -m benchmarks.instructions [--hosts 10] [--requests 2000] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from benchmarks.common import PodNginx, free_port, machine, temp_root
from benchmarks.routing import MODES, Run, host, middle_host, pod, world
from ingressd.logs import configure

#: nginx closes a keep-alive connection after ``keepalive_requests`` (1000 in the template).
PER_CONNECTION = 500
WARM_UP = 300


@dataclass
class InstructionFigures:
    hosts: int
    requests: int
    #: mode -> instructions (Ir) per request
    per_request: dict[str, float]
    #: lua / nginx
    ratio: float


def _copy(run: Run, into: Path) -> tuple[Path, int]:
    """The run's nginx prefix copied into ``into`` as a one-process nginx on fresh ports;
    returns its nginx.conf and HTTP port."""
    work = run.options.work_dir
    shutil.copytree(
        work, into, ignore=shutil.ignore_patterns("logs", "temp", "nginx.pid", "*.sock")
    )
    for sub in ("logs", "temp"):
        (into / sub).mkdir()
    for path in (into, *into.rglob("*")):
        path.chmod(0o777 if path.is_dir() else 0o644)
    text = (work / "nginx.conf").read_text().replace(str(work), str(into))
    text = text.replace("master_process on;", "master_process off;")
    http_port = free_port()
    text = re.sub(rf"listen {run.options.http_port}\b", f"listen {http_port}", text)
    text = re.sub(rf"listen {run.options.https_port}\b", f"listen {free_port()}", text)
    (into / "nginx.conf").write_text(text)
    return into / "nginx.conf", http_port


async def _control(socket_path: Path, method: str, what: str, body: bytes | None = None) -> bytes:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.request(
            method, f"http://control/configuration/{what}", data=body
        ) as resp:
            data = await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"{method} {what}: {resp.status} {data!r}")
            return data


def _requests(port: int, host_name: str, count: int) -> dict[int, int]:
    """``count`` GETs on keep-alive connections, one at a time; status -> how many."""
    statuses: dict[int, int] = {}
    request = f"GET /api/users HTTP/1.1\r\nHost: {host_name}\r\n\r\n".encode()
    while count > 0:
        batch, count = min(count, PER_CONNECTION), count - min(count, PER_CONNECTION)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            buffer = b""
            for _ in range(batch):
                s.sendall(request)
                while True:
                    end = buffer.find(b"\r\n\r\n")
                    if end >= 0:
                        head = buffer[:end].decode("latin-1")
                        length = re.search(r"(?im)^content-length:\s*(\d+)", head)
                        size = end + 4 + (int(length.group(1)) if length else 0)
                        if len(buffer) >= size:
                            status = int(head.split()[1])
                            statuses[status] = statuses.get(status, 0) + 1
                            buffer = buffer[size:]
                            break
                    chunk = s.recv(65536)
                    if not chunk:
                        raise RuntimeError("nginx closed the connection")
                    buffer += chunk
    return statuses


async def count(run: Run, root: Path, host_name: str, requests: int) -> float:
    """Instructions per request of ``run``'s nginx, copied under ``root``."""
    prefix = root / f"callgrind-{run.mode}"
    conf, port = _copy(run, prefix)
    out = prefix / "callgrind.out"
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            "--smc-check=all-non-file",  # LuaJIT's machine code
            f"--callgrind-out-file={out}",
            "nginx",
            "-p",
            str(prefix),
            "-c",
            str(conf),
            "-e",
            str(prefix / "logs" / "error.log"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(prefix / "valgrind.log").open("w"),
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"nginx under valgrind did not start: {prefix}") from None
                await asyncio.sleep(0.2)
        source = run.options.work_dir / "control" / "nginx.sock"
        target = prefix / "control" / "nginx.sock"
        for what in ("backends", "routes"):
            body = await _control(source, "GET", what)
            if json.loads(body):
                await _control(target, "PUT", what, body)
        warm = await asyncio.to_thread(_requests, port, host_name, WARM_UP)
        if set(warm) != {200}:
            raise RuntimeError(f"{run.mode}: warm-up answered {warm}")
        subprocess.run(
            ["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True
        )
        measured = await asyncio.to_thread(_requests, port, host_name, requests)
        subprocess.run(
            ["callgrind_control", "-i", "off", str(proc.pid)], check=True, capture_output=True
        )
        if set(measured) != {200}:
            raise RuntimeError(f"{run.mode}: answered {measured}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    total = 0
    for part in prefix.glob("callgrind.out*"):
        for line in part.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                total = max(total, int(line.split()[1]))
    return total / requests


async def measure(hosts: int, requests: int) -> InstructionFigures:
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (apt-get install valgrind)")
    root = temp_root("ingressd-instructions-")
    pod_port = free_port()
    pods = PodNginx([pod(0, 0)], pod_port, root, wildcard=True)
    pods.start()
    runs: list[Run] = []
    try:
        for mode in MODES:
            objects = world(hosts, port=pod_port, tls_every=0, spare=0, certs=())
            runs.append(Run(mode, hosts, root, objects, pod_port))
            await runs[-1].start(timeout=600)
        name = host(middle_host(hosts, 0))
        per_request = {r.mode: float(round(await count(r, root, name, requests))) for r in runs}
    finally:
        for r in runs:
            await r.stop()
        pods.stop()
        shutil.rmtree(root, ignore_errors=True)
    return InstructionFigures(
        hosts=hosts,
        requests=requests,
        per_request=per_request,
        ratio=round(per_request["lua"] / per_request["nginx"], 3),
    )


def describe(f: InstructionFigures) -> str:
    return (
        f"- instructions per request (callgrind, nginx's user space, {f.requests:,} keep-alive "
        f"requests at {f.hosts:,} hosts): lua {f.per_request['lua']:,.0f}, nginx "
        f"{f.per_request['nginx']:,.0f}; lua / nginx {f.ratio:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "results" / "instructions.json",
    )
    args = parser.parse_args()
    configure(level="error")
    print(f"machine: {machine()}", flush=True)
    figures = asyncio.run(measure(args.hosts, args.requests))
    print(describe(figures))
    args.json.parent.mkdir(exist_ok=True)
    args.json.write_text(json.dumps(asdict(figures), indent=2))


if __name__ == "__main__":
    main()
