"""``make demo``: the seed's example served for real, no cluster needed.

    3 pods of nginx-svc (127.0.1.1-3:8000, aiohttp servers in this process: JSON with their name)
    ingressd run --manifests manifests/demo --http-port 8080 ...   (a real nginx as its child)
    curl -H 'Host: www.zkj.com' http://127.0.0.1:8080/backend       -> the three pods in turn

Runs until Ctrl-C (or SIGTERM), then stops everything it started, ingressd (and its nginx)
first, then the pods.  Self-contained: an installed package runs it too (the tests' fake pods,
``tests.support.backends``, are not shipped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import urllib.request
from pathlib import Path

from aiohttp import web

from ingressd.nginx.rendering import PROJECT_ROOT

PODS = {
    "nginx-deploy-5c689d88bb-8hx2w": "127.0.1.1",
    "nginx-deploy-5c689d88bb-qz7mn": "127.0.1.2",
    "nginx-deploy-5c689d88bb-tl4rv": "127.0.1.3",
}
POD_PORT = 8000


def _get(url: str, host: str | None = None, timeout: float = 2.0) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), ""
    except OSError:
        return 0, ""


async def _wait_healthy(status_port: int, proc: asyncio.subprocess.Process) -> bool:
    for _ in range(300):
        if proc.returncode is not None:
            return False
        code, _ = await asyncio.to_thread(_get, f"http://127.0.0.1:{status_port}/healthz")
        if code == 200:
            return True
        await asyncio.sleep(0.1)
    return False


def _pod(name: str) -> web.Application:
    """One pod: answers every request with its name and what it received, as JSON."""

    async def answer(request: web.Request) -> web.Response:
        payload = {
            "pod": name,
            "method": request.method,
            "path": request.path_qs,
            "headers": dict(request.headers),
        }
        return web.Response(
            text=json.dumps(payload) + "\n",
            content_type="application/json",
            headers={"X-Pod": name},
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    return app


async def _start_pods() -> list[web.AppRunner]:
    runners: list[web.AppRunner] = []
    for name, address in PODS.items():
        runner = web.AppRunner(_pod(name), handle_signals=False, access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, address, POD_PORT, reuse_address=True).start()
    return runners


async def demo(args: argparse.Namespace) -> int:
    pods = await _start_pods()
    ingressd = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingressd.cli",
        "--log-format",
        "console",
        "run",
        "--manifests",
        str(args.manifests),
        "--http-port",
        str(args.http_port),
        "--https-port",
        str(args.https_port),
        "--status-port",
        str(args.status_port),
        "--work-dir",
        str(args.work_dir),
        "--allow-loopback-endpoints",  # the pods are on 127.0.1.1-3
        start_new_session=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    code = 0
    try:
        if not await _wait_healthy(args.status_port, ingressd):
            print("ingressd did not become healthy; see the log above", file=sys.stderr)
            return 1
        url = f"http://127.0.0.1:{args.http_port}/backend"
        print("\n=== ingressd demo: www.zkj.com/backend -> nginx-svc (3 pods) ===")
        for _ in range(3):
            status, body = await asyncio.to_thread(_get, url, "www.zkj.com")
            pod = json.loads(body)["pod"] if status == 200 else "-"
            print(f"  GET www.zkj.com/backend -> {status} from {pod}")
        print(
            f"\nTry it:\n  curl -H 'Host: www.zkj.com' {url}\n"
            f"Metrics: curl http://127.0.0.1:{args.status_port}/metrics\n"
            f"Model:   curl http://127.0.0.1:{args.status_port}/debug/configuration\n"
            f"Edit {args.manifests}/*.yaml and watch the log: endpoint changes apply with no "
            "reload.\nCtrl-C stops everything.\n",
            flush=True,
        )
        waiter = asyncio.create_task(stop.wait())
        died = asyncio.create_task(ingressd.wait())
        await asyncio.wait({waiter, died}, return_when=asyncio.FIRST_COMPLETED)
        if died.done():
            print("ingressd exited", file=sys.stderr)
            code = 1
        waiter.cancel()
        died.cancel()
    finally:
        if ingressd.returncode is None:
            ingressd.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ingressd.wait(), 30)
        except TimeoutError:
            ingressd.kill()
            await ingressd.wait()
        for runner in pods:
            await runner.cleanup()
        print("demo stopped: ingressd, nginx and the three pods are gone")
    return code


def main() -> int:
    parser = argparse.ArgumentParser(description="Serve the seed's example through a real nginx.")
    parser.add_argument("--manifests", type=Path, default=PROJECT_ROOT / "manifests" / "demo")
    parser.add_argument("--http-port", type=int, default=8080)
    parser.add_argument("--https-port", type=int, default=8443)
    parser.add_argument("--status-port", type=int, default=10254)
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/ingressd-demo"))
    return asyncio.run(demo(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
