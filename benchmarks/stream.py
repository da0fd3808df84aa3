"""Stream peer picking: what choosing the peer per connection in njs costs.

    client --TCP--> nginx stream server --proxy_pass--> a stream "pod" that answers and closes
        static   proxy_pass to a fixed address (no njs): the floor
        file     lua/njs/stream.js: read the backend's peer file, pick by connection serial
                 (what ingressd renders)
        fetch    njs asks an HTTP endpoint on 127.0.0.1 for the peer (ngx.fetch): the
                 alternative that would reuse the Lua balancer, for comparison

Each way gets ``rounds`` interleaved runs of ``connections`` sequential connections; the median
microseconds per connection is printed.  ``python -m benchmarks.stream [connections] [rounds]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingressd.nginx.rendering import PROJECT_ROOT

_FETCH_JS = """
async function pick(s) {
    try {
        var r = await ngx.fetch('http://127.0.0.1:%(http)d/peer');
        s.variables.ingressd_peer = await r.text();
        s.done();
    } catch (e) {
        s.deny();
    }
}
export default { pick: pick };
"""

_CONF = """
load_module /usr/share/nginx/modules/ngx_stream_module.so;
load_module /usr/share/nginx/modules/ngx_stream_js_module.so;
daemon off;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log error;
worker_processes 1;
events {}
http {
    access_log off;
    server { listen 127.0.0.1:%(http)d; return 200 "127.0.0.1:%(pod)d"; }
}
stream {
    js_import ingressd_stream from %(dir)s/stream.js;
    js_import fetcher from %(dir)s/fetch.js;
    js_var $ingressd_peer;
    server { listen 127.0.0.1:%(pod)d; return "ok\\n"; }
    server { listen 127.0.0.1:%(static)d; proxy_pass 127.0.0.1:%(pod)d; }
    server {
        listen 127.0.0.1:%(file)d;
        set $ingressd_peers %(dir)s/peers.json;
        js_preread ingressd_stream.preread;
        proxy_pass $ingressd_peer;
    }
    server { listen 127.0.0.1:%(fetch)d; js_preread fetcher.pick; proxy_pass $ingressd_peer; }
}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _per_connection(port: int, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            if conn.recv(16) != b"ok\n":
                raise RuntimeError(f"port {port}: wrong answer")
    return (time.perf_counter() - start) / count * 1e6


def run(connections: int = 1000, rounds: int = 5) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="ingressd-bench-stream-"))
    directory.chmod(0o755)  # the workers (nobody, when run as root) read the peer file
    ports = {k: _free_port() for k in ("http", "pod", "static", "file", "fetch")}
    shutil.copy(PROJECT_ROOT / "lua" / "njs" / "stream.js", directory / "stream.js")
    (directory / "fetch.js").write_text(_FETCH_JS % ports)
    (directory / "peers.json").write_text(f'["127.0.0.1:{ports["pod"]}"]')
    (directory / "nginx.conf").write_text(_CONF % {**ports, "dir": directory})
    proc = subprocess.Popen(["nginx", "-p", str(directory), "-c", str(directory / "nginx.conf")])
    try:
        time.sleep(0.5)
        samples: dict[str, list[float]] = {"static": [], "file": [], "fetch": []}
        for _ in range(rounds):
            for way in samples:
                samples[way].append(_per_connection(ports[way], connections))
        return {way: statistics.median(values) for way, values in samples.items()}
    finally:
        proc.send_signal(signal.SIGQUIT)
        proc.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    connections = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    load = os.getloadavg()[0]
    result = run(connections, rounds)
    print(f"stream peer picking, {connections} connections x {rounds} rounds, load {load:.2f}")
    for way, micros in result.items():
        print(f"  {way:7} {micros:8.0f} us per connection (median of rounds)")


if __name__ == "__main__":
    main()
