"""A small auth service with oauth2-proxy's contract, for the external authentication tests.

    nginx --auth_request--> GET /oauth2/auth      202 + X-Auth-Request-User/-Email with a valid
                                                  session cookie, else 401
    browser --302--> GET /oauth2/start?rd=URL     302 to /oauth2/callback?rd=URL (the provider's
                                                  round trip, skipped)
    browser -------> GET /oauth2/callback?rd=URL  Set-Cookie: _oauth2_proxy=<new session>, 302 URL

Every subrequest is recorded (path, headers, the connection it came on) so tests can count
hits, check what nginx sent and whether it kept the connection alive.  ``fail_with`` makes
``/oauth2/auth`` answer that status (an auth service in trouble).
With an ``ssl_context`` it speaks HTTPS.
"""

from __future__ import annotations

import secrets
import ssl
from urllib.parse import urlencode

from aiohttp import web

COOKIE = "_oauth2_proxy"


class AuthService:
    def __init__(self, address: str, port: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self.address = address
        self.port = port
        self.ssl_context = ssl_context
        self.sessions: dict[str, str] = {}
        #: ``(path_qs, headers)`` of every request to ``/oauth2/auth``.
        self.checks: list[tuple[str, dict[str, str]]] = []
        #: The client address and port of every request to ``/oauth2/auth`` (its connection).
        self.peers: list[object] = []
        #: The method of every request to ``/oauth2/auth``.
        self.methods: list[str] = []
        self.fail_with: int | None = None
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.address}:{self.port}"

    def login(self, user: str) -> str:
        """A session cookie value for ``user`` (as the callback would set)."""
        token = secrets.token_hex(16)
        self.sessions[token] = user
        return token

    async def _auth(self, request: web.Request) -> web.Response:
        self.checks.append((request.path_qs, dict(request.headers)))
        self.methods.append(request.method)
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername") if transport else None)
        if self.fail_with is not None:
            return web.Response(status=self.fail_with, text="auth service trouble\n")
        user = self.sessions.get(request.cookies.get(COOKIE, ""))
        if user is None:
            return web.Response(status=401, text="unauthorized\n")
        return web.Response(
            status=202,
            headers={
                "X-Auth-Request-User": user,
                "X-Auth-Request-Email": f"{user}@example.com",
                "X-Not-Listed": "secret",
            },
        )

    async def _start(self, request: web.Request) -> web.Response:
        rd = request.query.get("rd", "/")
        raise web.HTTPFound(f"/oauth2/callback?{urlencode({'rd': rd})}")

    async def _callback(self, request: web.Request) -> web.Response:
        rd = request.query.get("rd", "/")
        response = web.HTTPFound(rd)
        response.set_cookie(COOKIE, self.login("alice"), path="/", httponly=True)
        raise response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/oauth2/auth", self._auth)
        app.router.add_get("/oauth2/start", self._start)
        app.router.add_get("/oauth2/callback", self._callback)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address, self.port, ssl_context=self.ssl_context)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
