"""Fake pods: HTTP servers on loopback addresses that answer with their own name.

    client -> nginx -> Lua balancer -> EchoPods (127.0.1.1:PORT, 127.0.1.2:PORT, ...)

Loopback is a whole /8, so each pod gets its own address on the same port, as in a cluster.
Every answer is JSON: the pod's name and what it received (method, path with query, headers),
so tests can check routing, rewriting and the forwarded headers; the ``X-Pod`` response header
carries the name too.  Query parameters shape the answer: ``status=404`` (that status),
``sleep=0.5`` (answer late), ``header_bytes=8000`` (a response header that long).  With an
``ssl_context`` the pods speak HTTPS.  Used by the test suite, the benchmarks and ``make demo``
(``python -m ingressd.testing.backends --pod NAME=ADDRESS:PORT ...``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
from collections.abc import Mapping, Sequence

from aiohttp import web

POD_NAME: web.AppKey[str] = web.AppKey("pod_name")


async def _echo(request: web.Request) -> web.StreamResponse:
    name = request.app[POD_NAME]
    body = await request.read()
    sleep = request.query.get("sleep")
    if sleep:
        await asyncio.sleep(min(float(sleep), 30.0))
    headers = {"X-Pod": name}
    header_bytes = request.query.get("header_bytes")
    if header_bytes:
        headers["X-Padding"] = "x" * min(int(header_bytes), 60000)
    payload = {
        "pod": name,
        "method": request.method,
        "path": request.path_qs,
        "headers": dict(request.headers),
        "body_bytes": len(body),
    }
    return web.Response(
        status=int(request.query.get("status", "200")),
        text=json.dumps(payload) + "\n",
        content_type="application/json",
        headers=headers,
    )


def _app(name: str) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[POD_NAME] = name
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


class EchoPods:
    """A set of fake pods, ``{address: pod name}``, all on ``port``."""

    def __init__(
        self, pods: Mapping[str, str], port: int, *, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.pods = dict(pods)
        self.port = port
        self.ssl_context = ssl_context
        self._runners: dict[str, web.AppRunner] = {}

    async def start(self) -> None:
        for address, name in self.pods.items():
            await self.add(address, name)

    async def add(self, address: str, name: str) -> None:
        """Start one more pod."""
        runner = web.AppRunner(_app(name), handle_signals=False, access_log=None)
        await runner.setup()
        site = web.TCPSite(
            runner, address, self.port, reuse_address=True, ssl_context=self.ssl_context
        )
        await site.start()
        self._runners[address] = runner
        self.pods[address] = name

    async def remove(self, address: str) -> None:
        """Stop one pod: its address refuses connections from now on."""
        runner = self._runners.pop(address)
        self.pods.pop(address, None)
        await runner.cleanup()

    async def stop(self) -> None:
        for address in list(self._runners):
            await self.remove(address)

    async def __aenter__(self) -> EchoPods:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def _parse_pod(text: str) -> tuple[str, str, int]:
    name, sep, where = text.partition("=")
    address, colon, port = where.rpartition(":")
    if not sep or not colon or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=ADDRESS:PORT")
    return name, address, int(port)


async def _serve(pods: Sequence[tuple[str, str, int]]) -> None:
    groups: dict[int, dict[str, str]] = {}
    for name, address, port in pods:
        groups.setdefault(port, {})[address] = name
    started = [EchoPods(group, port) for port, group in groups.items()]
    for pod_set in started:
        await pod_set.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for pod_set in started:
        await pod_set.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake pods that answer with their name.")
    parser.add_argument("--pod", type=_parse_pod, action="append", required=True,
                        metavar="NAME=ADDRESS:PORT")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.pod))


if __name__ == "__main__":
    main()
