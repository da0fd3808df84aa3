"""The admin server (aiohttp, ``--status-port``): health, metrics, debug views.

    GET /healthz              200 when nginx answers, the first sync has been applied, every
                              background task runs and no change waits longer than the stall
                              limit for a successful sync
    GET /metrics              Prometheus text from the controller's own registry
    GET /debug/configuration  the running model as JSON
    GET /debug/problems       what the last build skipped, and why
    GET /debug/syncs          the last syncs: decision, reasons, timings
    GET /debug/backends       what the Lua side holds now, fetched from nginx
    GET /debug/routes         the route table the Lua side holds (``--routing lua``)

It reads the controller's state; it never changes it.  ``/debug/*`` answers loopback peers
only unless ``--expose-debug-endpoints`` is given: it shows every tenant's configuration.
Embedded in the controller's event loop
with ``AppRunner(handle_signals=False)``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST

from ingressd.nginx.dynamic import DynamicUpdateError

if TYPE_CHECKING:
    from ingressd.app.runtime import Ingressd

CONTROLLER: web.AppKey[Ingressd] = web.AppKey("controller")


async def healthz(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    if not controller.worker.first_sync_applied:
        return web.Response(status=503, text="waiting for the first sync\n")
    if not await controller.nginx.process.healthy():
        return web.Response(status=503, text="nginx is not answering\n")
    why = controller.unhealthy()
    if why is not None:
        return web.Response(status=503, text=why + "\n")
    return web.Response(text="ok\n")


async def metrics(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    controller.refresh_gauges()
    body = controller.metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def debug_configuration(request: web.Request) -> web.Response:
    running = request.app[CONTROLLER].worker.running
    return web.json_response(running.to_json() if running else None)


async def debug_problems(request: web.Request) -> web.Response:
    build = request.app[CONTROLLER].worker.last_build
    problems = build.problems if build else ()
    return web.json_response([dataclasses.asdict(p) for p in problems])


async def debug_syncs(request: web.Request) -> web.Response:
    records: list[dict[str, Any]] = []
    for record in request.app[CONTROLLER].worker.records:
        item = dataclasses.asdict(record)
        item.pop("event_latencies")
        records.append(item)
    return web.json_response(records)


async def debug_backends(request: web.Request) -> web.Response:
    try:
        backends = await request.app[CONTROLLER].nginx.endpoint.get_backends()
    except DynamicUpdateError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(backends)


async def debug_routes(request: web.Request) -> web.Response:
    """``--routing lua``: the route table the Lua side holds now, fetched from nginx."""
    try:
        routes = await request.app[CONTROLLER].nginx.endpoint.get_routes()
    except DynamicUpdateError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    return web.json_response(routes)


@web.middleware
async def debug_on_loopback(request: web.Request, handler: Handler) -> web.StreamResponse:
    """``/debug/*`` shows every tenant's configuration: it answers loopback peers only, unless
    the controller runs with ``--expose-debug-endpoints``; /healthz and /metrics answer all."""
    if request.path.startswith("/debug/") and not request.app[CONTROLLER].options.expose_debug:
        if not _is_loopback(request.remote):
            return web.Response(
                status=403,
                text="the /debug endpoints answer on loopback only "
                "(start ingressd with --expose-debug-endpoints to serve them to all)\n",
            )
    return await handler(request)


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False  # a Unix socket peer has no address: not loopback by our definition


def make_app(controller: Ingressd) -> web.Application:
    app = web.Application(middlewares=[debug_on_loopback])
    app[CONTROLLER] = controller
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/configuration", debug_configuration)
    app.router.add_get("/debug/problems", debug_problems)
    app.router.add_get("/debug/syncs", debug_syncs)
    app.router.add_get("/debug/backends", debug_backends)
    app.router.add_get("/debug/routes", debug_routes)
    return app


async def start_admin(controller: Ingressd, *, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(make_app(controller), handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
