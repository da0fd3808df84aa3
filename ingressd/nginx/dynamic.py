"""Dynamic updates: backends sent to the Lua configuration endpoint inside nginx.

    sync worker --changed backends--> POST /configuration/backends   (upsert, answer 201)
                --whole set--------> PUT  /configuration/backends   (replace, answer 201)
                --changed routes---> POST /configuration/routes     (--routing lua, by host)
                --whole table------> PUT  /configuration/routes
                --hosts gone-------> DELETE /configuration/routes
                --certificates-----> POST|PUT /configuration/certificates
    admin / tests <------------------ GET  /configuration/backends, /configuration/routes

The endpoint listens on a Unix socket only (``NginxPaths.control_socket``): no request nginx
proxies can reach it.  Workers pick a new set up on their next request: the Lua side bumps a
version in the shared dict that every request checks.

Bodies are made one backend at a time from JSON texts kept per Backend object (the builder hands
on an unchanged backend as the same object): sending every backend after a reload costs a
join, not an encoding of each and their dicts all at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import aiohttp

from ingressd.model import Backend


class DynamicUpdateError(RuntimeError):
    """The Lua endpoint refused or did not answer."""


class _BackendTexts:
    """``json.dumps(backend.to_lua())`` of each Backend object sent lately, by identity.

    The whole set sent last (``whole``) is what is kept; backends posted since come on top,
    up to as many again before the rest is dropped.
    """

    def __init__(self) -> None:
        self._texts: dict[int, tuple[Backend, bytes]] = {}
        self._whole = 0

    def body(self, backends: Iterable[Backend], *, whole: bool = False) -> tuple[int, bytes]:
        """The number of backends and the JSON array of them (as ``json.dumps`` writes it
        with ``separators=(",", ":")``, ASCII)."""
        texts = self._texts
        used: dict[int, tuple[Backend, bytes]] = {}
        parts: list[bytes] = []
        for backend in backends:
            found = texts.get(id(backend))
            if found is None or found[0] is not backend:
                text = json.dumps(backend.to_lua(), separators=(",", ":"))
                found = (backend, text.encode("ascii"))
            used[id(backend)] = found
            parts.append(found[1])
        if whole:
            self._texts, self._whole = used, len(used)
        else:
            if len(texts) + len(used) > 2 * self._whole + 1000:
                texts.clear()
            texts.update(used)
        return len(parts), b"[" + b",".join(parts) + b"]"


def _array(texts: list[str]) -> bytes:
    return ("[" + ",".join(texts) + "]").encode()


class LuaEndpoint:
    """HTTP client of one nginx's configuration endpoint, over its Unix socket ``socket_path``."""

    def __init__(self, *, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.base = "http://localhost/configuration"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._texts = _BackendTexts()

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(self.socket_path), timeout=self._timeout
            )
        return self._session

    async def post_backends(self, backends: Iterable[Backend]) -> int:
        """Upsert ``backends``; returns the number sent."""
        count, data = self._texts.body(backends)
        await self._send("POST", data)
        return count

    async def put_backends(self, backends: Iterable[Backend]) -> int:
        """Replace the whole backend set with ``backends``; returns the number sent."""
        count, data = self._texts.body(backends, whole=True)
        await self._send("PUT", data)
        return count

    async def post_routes(self, entries: Iterable[str]) -> int:
        """Upsert route entries (their JSON texts, ``ingressd.nginx.routes``) by host; returns
        the number sent."""
        texts = list(entries)
        await self._send("POST", _array(texts), "routes")
        return len(texts)

    async def put_routes(self, entries: Iterable[str]) -> int:
        """Replace the whole route table with ``entries``; returns the number sent."""
        texts = list(entries)
        await self._send("PUT", _array(texts), "routes")
        return len(texts)

    async def delete_routes(self, hosts: Iterable[str]) -> int:
        """Remove the entries of ``hosts``; returns how many were named."""
        names = list(hosts)
        await self._send("DELETE", json.dumps(names).encode(), "routes", ok=(200, 201))
        return len(names)

    async def send_certificates(
        self,
        certificates: dict[str, str],
        servers: Mapping[str, str | None],
        *,
        whole: bool,
    ) -> None:
        """``certificates`` (uid -> PEM chain and key) and ``servers`` (host -> uid, or None to
        remove the host): upserted, or replacing what Lua holds when ``whole``."""
        data = json.dumps({"certificates": certificates, "servers": servers}).encode()
        await self._send("PUT" if whole else "POST", data, "certificates")

    async def _send(
        self, method: str, data: bytes, what: str = "backends", ok: tuple[int, ...] = (201,)
    ) -> None:
        path = f"/configuration/{what}"
        try:
            async with self._client().request(
                method,
                f"{self.base}/{what}",
                data=data,
                headers={"Content-Type": "application/json"},
            ) as resp:
                text = await resp.text()
                if resp.status not in ok:
                    raise DynamicUpdateError(
                        f"{method} {path} answered {resp.status}: {text.strip()}"
                    )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DynamicUpdateError(f"{method} {path} failed: {exc!r}") from exc

    async def get_backends(self) -> list[dict[str, Any]]:
        """What the Lua side holds now."""
        return await self._get("backends")

    async def get_routes(self) -> list[dict[str, Any]]:
        """The route table the Lua side holds now."""
        return await self._get("routes")

    async def _get(self, what: str) -> list[dict[str, Any]]:
        try:
            async with self._client().get(f"{self.base}/{what}") as resp:
                if resp.status != 200:
                    raise DynamicUpdateError(f"GET /configuration/{what} answered {resp.status}")
                result: list[dict[str, Any]] = json.loads(await resp.text())
                return result
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise DynamicUpdateError(f"GET /configuration/{what} failed: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
