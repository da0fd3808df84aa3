"""Dynamic updates: backends sent to the Lua configuration endpoint inside nginx.

    sync worker --changed backends--> POST /configuration/backends   (upsert, answer 201)
                --whole set--------> PUT  /configuration/backends   (replace, answer 201)
    admin / tests <------------------ GET  /configuration/backends

The endpoint listens on loopback only (the control port).  Workers pick a new set up on their
next request: the Lua side bumps a version in the shared dict that every request checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import aiohttp

from ingressd.model import Backend


class DynamicUpdateError(RuntimeError):
    """The Lua endpoint refused or did not answer."""


class LuaEndpoint:
    """HTTP client of one nginx's configuration endpoint."""

    def __init__(self, *, control_port: int, timeout: float = 10.0) -> None:
        self.base = f"http://127.0.0.1:{control_port}/configuration"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post_backends(self, backends: Iterable[Backend]) -> int:
        """Upsert ``backends``; returns the number sent."""
        body = [b.to_lua() for b in backends]
        await self._send("POST", body)
        return len(body)

    async def put_backends(self, backends: Iterable[Backend]) -> int:
        """Replace the whole backend set with ``backends``; returns the number sent."""
        body = [b.to_lua() for b in backends]
        await self._send("PUT", body)
        return len(body)

    async def _send(self, method: str, body: list[dict[str, Any]]) -> None:
        data = json.dumps(body, separators=(",", ":"))
        try:
            async with self._client().request(
                method,
                f"{self.base}/backends",
                data=data,
                headers={"Content-Type": "application/json"},
            ) as resp:
                text = await resp.text()
                if resp.status != 201:
                    raise DynamicUpdateError(
                        f"{method} /configuration/backends answered {resp.status}: {text.strip()}"
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DynamicUpdateError(f"{method} /configuration/backends failed: {exc!r}") from exc

    async def get_backends(self) -> list[dict[str, Any]]:
        """What the Lua side holds now."""
        try:
            async with self._client().get(f"{self.base}/backends") as resp:
                if resp.status != 200:
                    raise DynamicUpdateError(f"GET /configuration/backends answered {resp.status}")
                result: list[dict[str, Any]] = json.loads(await resp.text())
                return result
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DynamicUpdateError(f"GET /configuration/backends failed: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
