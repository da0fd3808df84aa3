"""Shared pieces of the benchmarks: fast fake pods, ports, wrk, machine description.

PodNginx: one extra nginx that answers 200 on many loopback addresses (fast pods, so the
          proxy under test is the bottleneck, not the pods)
run_wrk(): wrk through the proxy, parsed into requests/s, latency and errors
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def machine() -> str:
    """One line: host, CPU model, cores, memory, load — reported with every figure."""
    model = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{platform.node()}: {model}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, "
        f"{platform.system()} {platform.release()}, load {load:.2f} at start"
    )


def nginx_workers_cpu_seconds(master: int) -> float:
    """utime + stime of the nginx master's children (its workers), in seconds."""
    total = 0
    for task in Path(f"/proc/{master}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # a worker that exited meanwhile
                continue
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def temp_root(prefix: str) -> Path:
    """A temp dir nginx's unprivileged workers can traverse."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(root, 0o755)
    return root


class PodNginx:
    """A plain nginx playing many pods: ``address:port`` each answers 200 with its address."""

    def __init__(
        self,
        addresses: list[str],
        port: int,
        root: Path,
        workers: int = 1,
        *,
        wildcard: bool = False,
    ) -> None:
        """``wildcard``: one socket on every address (``listen PORT``): any 127.x.y.z answers."""
        self.wildcard = wildcard
        self.addresses = addresses
        self.port = port
        self.root = root / "pods"
        self.workers = workers
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "logs").mkdir(exist_ok=True)
        if self.wildcard:
            listens = f"        listen {self.port} backlog=4096;"
        else:
            listens = "\n".join(
                f"        listen {a}:{self.port} backlog=4096;" for a in self.addresses
            )
        conf = f"""
daemon off;
worker_processes {self.workers};
pid {self.root}/nginx.pid;
error_log {self.root}/logs/error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {self.root}/body;
    proxy_temp_path {self.root}/proxy;
    fastcgi_temp_path {self.root}/fastcgi;
    uwsgi_temp_path {self.root}/uwsgi;
    scgi_temp_path {self.root}/scgi;
    server {{
{listens}
        location / {{ return 200 "$server_addr\\n"; }}
    }}
}}
"""
        (self.root / "nginx.conf").write_text(conf)
        self._proc = subprocess.Popen(
            [
                "nginx",
                "-p",
                str(self.root),
                "-c",
                str(self.root / "nginx.conf"),
                "-e",
                str(self.root / "logs" / "error.log"),
            ],
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.addresses[0], self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"pod nginx did not start: {(self.root / 'logs' / 'error.log')}")

    def stop(self) -> None:
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait()


@dataclass
class WrkResult:
    requests_per_second: float
    latency_p50_ms: float
    latency_p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    rps_match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count_match = re.search(r"(\d+) requests in", output)
    if rps_match is None or count_match is None:
        raise RuntimeError(f"could not read wrk's output:\n{output}")
    rps = float(rps_match.group(1))
    requests = int(count_match.group(1))
    p50 = p99 = float("nan")
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "50%":
            p50 = _ms(parts[1])
        if len(parts) == 2 and parts[0] == "99%":
            p99 = _ms(parts[1])
    non_2xx = 0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if match:
        non_2xx = int(match.group(1))
    errors = 0
    match = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if match:
        errors = sum(int(g) for g in match.groups())
    return WrkResult(rps, p50, p99, requests, non_2xx, errors)


async def run_wrk(
    url: str, *, host: str, seconds: float, connections: int = 32, threads: int = 1
) -> WrkResult:
    """wrk against ``url`` with a Host header; latency percentiles from ``--latency``."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make install)")
    proc = await asyncio.create_subprocess_exec(
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "-H",
        f"Host: {host}",
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    return parse_wrk(out.decode())
