"""Scale: model build, render, nginx.conf size, nginx -t, reload, RSS, incremental sync.

    N Ingresses (one host, two paths each, TLS on 10%) + N Services + N EndpointSlices
        --Store--> snapshot --build--> Configuration --render--> nginx.conf
        --nginx -t--> --start + SIGHUP reload--> serving
    then one Ingress changes (a path added): the sync worker's own time (build + diff + render,
    nginx excluded) for that one change at that size

Each size runs in a fresh subprocess, so the controller's RSS is that size's alone.
Targets at 10k: build + render <= 1 s, conf <= 25 MB, RSS <= 200 MB, incremental <= 50 ms.

    python -m benchmarks.scale [--sizes 1000,5000,10000] [--json FILE]
    python -m benchmarks.scale --one N        (one size, JSON on stdout)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import free_port, machine, temp_root
from ingressd.build import BuildCache, BuildOptions, build_configuration
from ingressd.nginx.applying import Nginx
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.diffing import decide
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.store import Store
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    self_signed_certificate,
    service,
    service_port,
    tls,
    tls_secret,
)


@dataclass
class ScaleResult:
    ingresses: int
    tls_hosts: int
    build_seconds: float
    render_seconds: float
    conf_bytes: int
    nginx_test_seconds: float
    nginx_start_seconds: float
    reload_seconds: float
    rss_mb: float
    incremental_sync_seconds: float
    problems: int
    #: RSS before any object is loaded: the interpreter and the controller's code (all of
    #: ``ingressd run``'s imports, kubernetes-asyncio's generated models among them).
    rss_code_mb: float = 0.0


def objects(n: int) -> list[dict[str, Any]]:
    certs = [self_signed_certificate(f"cert{i}.test") for i in range(4)]
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append(service(f"svc{i}", ports=[service_port(80, "http", target_port=8080)]))
        out.append(
            endpoint_slice(
                f"svc{i}",
                endpoints=[f"10.{i // 250 % 250}.{i % 250}.{k + 1}" for k in range(3)],
                port=8080,
                port_name="http",
            )
        )
        host = f"host{i}.example.com"
        tls_entries = []
        if i % 10 == 0:
            cert, key = certs[i // 10 % 4]
            out.append(tls_secret(f"tls{i}", cert_pem=cert, key_pem=key))
            tls_entries = [tls(host, secret_name=f"tls{i}")]
        out.append(
            ingress(
                f"ing{i}",
                rules=[rule(host, path("/", f"svc{i}"), path("/api", f"svc{i}"))],
                tls_entries=tls_entries,
            )
        )
    return out


def proc_rss_mb(field: str = "VmRSS") -> float:
    """This process's resident set now (``VmRSS``) or at its peak (``VmHWM``), in MB.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across ``execve``, so a process
    started by a big parent (``make bench``) reports at least the parent's RSS at fork time.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def measure(n: int) -> ScaleResult:
    root = temp_root(f"ingressd-scale-{n}-")
    # The RSS target is the controller's: load what ``ingressd run`` loads before measuring.
    importlib.import_module("ingressd.cli.commands")

    rss_code_mb = proc_rss_mb()
    try:
        store = Store(channel=UpdateChannel(maxsize=1 << 30))
        for obj in objects(n):
            store.apply(WatchEvent(EventType.ADDED, obj))
        options = BuildOptions()
        cache = BuildCache()  # the sync worker's: the next build is made from this one
        gc.collect()
        t0 = time.perf_counter()
        result = build_configuration(store.snapshot(), options, cache=cache)
        t1 = time.perf_counter()
        # A server block per host: the mode whose nginx.conf grows with the cluster
        # (benchmarks/routing.py puts --routing lua beside it).
        settings = RenderSettings(
            routing="nginx",
            http_port=free_port(),
            https_port=free_port(),
            worker_processes="2",
            worker_user="nobody nogroup",
        )
        paths = NginxPaths(root / "work")
        conf_bytes = len(
            render(result.configuration, settings=settings, paths=paths, generation=1)
        )  # not kept: the controller keeps no copy
        t2 = time.perf_counter()

        nginx = Nginx(settings=settings, paths=paths)
        t_start = time.perf_counter()
        await nginx.start()
        nginx_start = time.perf_counter() - t_start
        outcome = await nginx.apply_reload(result.configuration, settings)
        test_seconds = outcome.test_seconds
        reload_seconds = outcome.reload_seconds

        # One Ingress changes: the controller's own time for that sync.
        changed = ingress(
            "ing1",
            rules=[
                rule(
                    "host1.example.com",
                    path("/", "svc1"),
                    path("/api", "svc1"),
                    path("/new", "svc1"),
                )
            ],
        )
        store.apply(WatchEvent(EventType.MODIFIED, changed))
        t3 = time.perf_counter()
        new = build_configuration(store.snapshot(), options, cache=cache).configuration
        decide(new, result.configuration)
        render(new, settings=settings, paths=paths, generation=2)
        incremental = time.perf_counter() - t3
        await nginx.stop()
        peak_mb = proc_rss_mb("VmHWM")
        return ScaleResult(
            ingresses=n,
            tls_hosts=sum(1 for s in result.configuration.servers if s.certificate),
            build_seconds=round(t1 - t0, 3),
            render_seconds=round(t2 - t1, 3),
            conf_bytes=conf_bytes,
            nginx_test_seconds=round(test_seconds, 3),
            nginx_start_seconds=round(nginx_start, 3),
            reload_seconds=round(reload_seconds, 3),
            rss_mb=round(peak_mb, 1),
            incremental_sync_seconds=round(incremental, 3),
            problems=len(result.problems),
            rss_code_mb=round(rss_code_mb, 1),
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_sizes(sizes: list[int]) -> list[ScaleResult]:
    results = []
    for n in sizes:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale", "--one", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(ScaleResult(**json.loads(proc.stdout.strip().splitlines()[-1])))
    return results


def describe(r: ScaleResult) -> str:
    return (
        f"{r.ingresses:>6} Ingresses ({r.tls_hosts} TLS): build {r.build_seconds:.3f}s + render "
        f"{r.render_seconds:.3f}s = {r.build_seconds + r.render_seconds:.3f}s, conf "
        f"{r.conf_bytes / 1e6:.1f} MB, nginx -t {r.nginx_test_seconds:.3f}s, reload "
        f"{r.reload_seconds:.3f}s, RSS {r.rss_mb:.0f} MB ({r.rss_code_mb:.0f} MB before any "
        f"object), one-Ingress sync "
        f"{r.incremental_sync_seconds * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Scale figures at several Ingress counts.")
    parser.add_argument("--sizes", default="1000,5000,10000")
    parser.add_argument("--one", type=int)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.one:
        from ingressd.logs import configure

        configure(level="error")
        print(json.dumps(asdict(asyncio.run(measure(args.one)))))
        return
    print(f"machine: {machine()}")
    results = run_sizes([int(x) for x in args.sizes.split(",")])
    for r in results:
        print(describe(r))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
