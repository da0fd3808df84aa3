"""Dynamic updates: backends sent to the Lua configuration endpoint inside nginx.

    sync worker --changed backends--> POST /configuration/backends   (upsert, answer 201)
                --whole set--------> PUT  /configuration/backends   (replace, answer 201)
                --backends gone----> DELETE /configuration/backends (by name, answer 200)
                --changed routes---> POST /configuration/routes     (--routing lua, by host)
                --whole table------> PUT  /configuration/routes
                --hosts gone-------> DELETE /configuration/routes
                --certificates-----> POST|PUT /configuration/certificates
    admin / tests <------------------ GET  /configuration/backends, /configuration/routes

The endpoint listens on a Unix socket only (``NginxPaths.control_socket``): no request nginx
proxies can reach it.  Workers pick a new set up on their next request: the Lua side bumps a
version in the shared dict that every request checks.

The whole set is PUT only when Lua holds nothing the controller knows of (nginx started or
restarted); after that, changed backends are POSTed and those gone are DELETEd by name, so no
encoded copy of every backend is kept between syncs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from typing import Any

import aiohttp

from ingressd.model import Backend


class DynamicUpdateError(RuntimeError):
    """The Lua endpoint refused or did not answer."""


#: A body of more items than this is streamed (chunked transfer encoding), this many items
#: encoded at a time: the JSON of a whole set (10,000 backends: ~5 MB, once as text and once
#: as bytes) is never held at once, and the event loop is never held for the whole encoding.
CHUNK_ITEMS = 256

#: A request body: bytes, or chunks made as they are sent.
Body = bytes | AsyncIterator[bytes]


def backends_body(backends: Sequence[Backend]) -> Body:
    """The JSON array of ``backends``, as ``json.dumps`` writes it with
    ``separators=(",", ":")``."""
    return _array((json.dumps(b.to_lua(), separators=(",", ":")) for b in backends), len(backends))


def _array(texts: Iterable[str], count: int) -> Body:
    """The JSON array of ``count`` JSON ``texts``."""
    if count <= CHUNK_ITEMS:
        return ("[" + ",".join(texts) + "]").encode()
    return _chunked_array(iter(texts))


async def _chunked_array(texts: Iterator[str]) -> AsyncIterator[bytes]:
    opening = "["
    while batch := list(itertools.islice(texts, CHUNK_ITEMS)):
        yield (opening + ",".join(batch)).encode()
        opening = ","
    yield b"[]" if opening == "[" else b"]"


def certificates_body(certificates: Mapping[str, str], servers: Mapping[str, str | None]) -> Body:
    """``{"certificates": certificates, "servers": servers}`` as JSON."""
    if len(certificates) <= CHUNK_ITEMS:
        return json.dumps({"certificates": certificates, "servers": servers}).encode()
    return _chunked_certificates(certificates, servers)


async def _chunked_certificates(
    certificates: Mapping[str, str], servers: Mapping[str, str | None]
) -> AsyncIterator[bytes]:
    entries = (f"{json.dumps(uid)}:{json.dumps(pem)}" for uid, pem in certificates.items())
    opening = '{"certificates":{'
    while batch := list(itertools.islice(entries, CHUNK_ITEMS)):
        yield (opening + ",".join(batch)).encode()
        opening = ","
    yield (
        ("" if opening == "," else opening) + '},"servers":' + json.dumps(servers) + "}"
    ).encode()


class LuaEndpoint:
    """HTTP client of one nginx's configuration endpoint, over its Unix socket ``socket_path``."""

    def __init__(self, *, socket_path: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.base = "http://localhost/configuration"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(self.socket_path), timeout=self._timeout
            )
        return self._session

    async def post_backends(self, backends: Sequence[Backend]) -> int:
        """Upsert ``backends``; returns the number sent."""
        await self._send("POST", backends_body(backends))
        return len(backends)

    async def put_backends(self, backends: Sequence[Backend]) -> int:
        """Replace the whole backend set with ``backends``; returns the number sent."""
        await self._send("PUT", backends_body(backends))
        return len(backends)

    async def delete_backends(self, names: Iterable[str]) -> int:
        """Remove the backends named ``names``; returns how many were named."""
        listed = list(names)
        await self._send("DELETE", json.dumps(listed).encode(), ok=(200,))
        return len(listed)

    async def post_routes(self, entries: Iterable[str]) -> int:
        """Upsert route entries (their JSON texts, ``ingressd.nginx.routes``) by host; returns
        the number sent."""
        texts = list(entries)
        await self._send("POST", _array(texts, len(texts)), "routes")
        return len(texts)

    async def put_routes(self, entries: Iterable[str]) -> int:
        """Replace the whole route table with ``entries``; returns the number sent."""
        texts = list(entries)
        await self._send("PUT", _array(texts, len(texts)), "routes")
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
        body = certificates_body(certificates, servers)
        await self._send("PUT" if whole else "POST", body, "certificates")

    async def _send(
        self, method: str, data: Body, what: str = "backends", ok: tuple[int, ...] = (201,)
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
