"""Fake pods: HTTP servers on loopback addresses that answer with their own name.

    client -> nginx -> Lua balancer -> EchoPods (127.0.1.1:PORT, 127.0.1.2:PORT, ...)

Loopback is a whole /8, so each pod gets its own address on the same port, as in a cluster.
Every answer is JSON: the pod's name and what it received (method, path with query, headers),
so tests can check routing, rewriting and the forwarded headers; the ``X-Pod`` response header
carries the name too.  Query parameters shape the answer: ``status=404`` (that status),
``sleep=0.5`` (answer late), ``header_bytes=8000`` (a response header that long),
``location=``, ``cookie=``, ``server=`` (that ``Location``, ``Set-Cookie``, ``Server``
header).  With an ``ssl_context`` the pods speak HTTPS.  Used by the test suite and the benchmarks
(``make demo`` has its own three pods, in ``ingressd.tools.demo``).
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Mapping

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
    # response headers a test asks for: redirects, cookies, the Server header
    for query, header in (("location", "Location"), ("cookie", "Set-Cookie"), ("server", "Server")):
        value = request.query.get(query)
        if value:
            headers[header] = value
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
