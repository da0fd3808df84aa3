"""The fake API server's HTTP layer: requests -> ApiStore operations and watch streams.

    aiohttp request --ApiHandler.handle-->
        down? -> connection aborted (what a dead server looks like to a client)
        auth: ``Authorization: Bearer <token>`` or 401
        discovery (/api, /apis, /api/v1, /apis/G, /apis/G/V) -> answered from ``RESOURCES``
        resource path -> route() -> (Resource, namespace, name, subresource)
            (both in ``routing.py``: what a path addresses)
            -> ``requests`` += ApiRequest(verb, resource, subresource)
            -> get | list (paged) | create | update | patch | delete  (ApiStore)
            -> watch: a chunked stream, one JSON event per line, from the store's history:
               changes after ``resourceVersion`` (or the current objects as ADDED first), BOOKMARK
               every ``bookmark_interval`` s when asked, ERROR + Status 410 when the history no
               longer reaches back, a clean end after ``timeoutSeconds``
        ApiError -> its Status object with its code

``FakeApiServer`` (``server.py``) owns the handler, the listening socket and the faults.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from aiohttp import web

from tests.support.fakeapi.machinery import (
    ApiError,
    Selector,
    bad_request,
    json_patch,
    merge_patch,
    parse_field_selector,
    parse_label_selector,
    status,
)
from tests.support.fakeapi.routing import discovery, route
from tests.support.fakeapi.store import ApiStore, Change, Resource

__all__ = ["ApiHandler", "ApiRequest", "RequestLog"]

JSON = dict[str, Any]
_Objects = list[JSON]
_Selectors = list[Selector]

_MERGE_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_JSON_PATCH_TYPE = "application/json-patch+json"


class ApiRequest(NamedTuple):
    """One API call a client made.

    ``resource`` is the plural for the core group and ``plural.group`` otherwise
    (``"services"``, ``"ingresses.networking.k8s.io"``, ``"leases.coordination.k8s.io"``,
    ``"events.events.k8s.io"``); ``subresource`` is ``""`` or e.g. ``"status"``.  ``verb`` is
    the RBAC verb: get, list, watch, create, update, patch, delete.
    """

    verb: str
    resource: str
    subresource: str


class RequestLog(list[ApiRequest]):
    """The ``ApiRequest``s made; ``count`` takes plain ``(verb, resource, subresource)`` too."""

    def count(self, value: tuple[str, str, str], /) -> int:
        return sum(1 for request in self if request == value)


@dataclass(eq=False)
class _Watch:
    request: web.Request
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: bool = False


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1", "t")


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"{what}: invalid value {value!r}") from None


def _line(obj: JSON) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


class ApiHandler:
    """Serves the Kubernetes API protocol from an ApiStore; one per FakeApiServer."""

    def __init__(self, store: ApiStore, *, token: str, bookmark_interval: float) -> None:
        self.store = store
        self.token = token
        self.bookmark_interval = bookmark_interval
        #: ``host:port`` clients reach the server at (discovery tells them).
        self.address = ""
        #: While True every request's connection is aborted.
        self.down = False
        #: Every API call clients made, in order (discovery requests not included).
        self.requests = RequestLog()
        self.watches: set[_Watch] = set()
        self._pages: dict[str, _Objects] = {}
        self._page_ids = itertools.count(1)

    def cut_watches(self) -> int:
        """Abort every open watch stream (no final chunk); returns how many."""
        count = 0
        for watch in list(self.watches):
            if watch.stopped.is_set():
                continue
            watch.dropped = True
            watch.stopped.set()
            transport = watch.request.transport
            if transport is not None:
                transport.abort()
            count += 1
        return count

    @property
    def watch_count(self) -> int:
        return sum(1 for w in self.watches if not w.stopped.is_set())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.down:
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        path = request.match_info["path"].strip("/")
        if path in ("healthz", "readyz", "livez"):
            return web.Response(text="ok")
        if path == "version":
            return web.json_response(
                {
                    "major": "1",
                    "minor": "31",
                    "gitVersion": "v1.31.0-ingressd-fake",
                    "platform": "linux/amd64",
                }
            )
        try:
            if request.headers.get("Authorization") != f"Bearer {self.token}":
                raise ApiError(status(401, "Unauthorized", "Unauthorized"))
            segments = path.split("/") if path else []
            document = discovery(segments, self.address)
            if document is not None:
                return web.json_response(document)
            resource, namespace, name, subresource = route(segments)
            return await self._serve(request, resource, namespace, name, subresource)
        except ApiError as exc:
            return web.json_response(exc.status, status=exc.code)

    def _record(self, verb: str, resource: Resource, subresource: str) -> None:
        self.requests.append(ApiRequest(verb, resource.qualified, subresource))

    async def _body(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise bad_request(f"the request body is not JSON: {exc}") from None

    async def _serve(
        self,
        request: web.Request,
        resource: Resource,
        namespace: str | None,
        name: str | None,
        subresource: str,
    ) -> web.StreamResponse:
        method, query, store = request.method, request.query, self.store
        if method == "GET" and name is None:
            selectors = [
                parse_label_selector(query.get("labelSelector")),
                parse_field_selector(query.get("fieldSelector")),
            ]
            if _flag(query.get("watch")):
                self._record("watch", resource, "")
                return await self._watch(request, resource, namespace, selectors)
            self._record("list", resource, "")
            return web.json_response(self._list(resource, namespace, selectors, query))
        if method == "GET":
            assert name is not None
            self._record("get", resource, subresource)
            return web.json_response(store.get(resource, namespace, name))
        if method == "POST" and name is None:
            self._record("create", resource, "")
            if resource.namespaced and namespace is None:
                raise ApiError(status(405, "MethodNotAllowed", "create needs a namespaced path"))
            body = await self._body(request)
            if isinstance(body, dict) and "status" in resource.subresources:
                body.pop("status", None)
            return web.json_response(store.create(resource, namespace, body), status=201)
        if name is None:
            raise ApiError(
                status(405, "MethodNotAllowed", f"{method} is not supported on a collection here")
            )
        if method == "PUT":
            self._record("update", resource, subresource)
            body = await self._body(request)
            return web.json_response(
                store.update(resource, namespace, name, body, subresource=subresource)
            )
        if method == "PATCH":
            self._record("patch", resource, subresource)
            body = await self._body(request)
            content_type = request.content_type
            if content_type in _MERGE_PATCH_TYPES:

                def patcher(current: JSON) -> Any:
                    return merge_patch(current, body)
            elif content_type == _JSON_PATCH_TYPE:

                def patcher(current: JSON) -> Any:
                    return json_patch(current, body)
            else:
                raise ApiError(
                    status(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - "
                        f"accepted media types include: "
                        f"{', '.join((_JSON_PATCH_TYPE, *_MERGE_PATCH_TYPES))}",
                    )
                )
            return web.json_response(
                store.patch(resource, namespace, name, patcher, subresource=subresource)
            )
        if method == "DELETE":
            self._record("delete", resource, subresource)
            body = await self._body(request)
            preconditions = body.get("preconditions") if isinstance(body, dict) else None
            return web.json_response(
                store.delete(resource, namespace, name, preconditions=preconditions)
            )
        raise ApiError(status(405, "MethodNotAllowed", f"{method} is not supported"))

    # -- list -----------------------------------------------------------------------------------

    def _list(
        self,
        resource: Resource,
        namespace: str | None,
        selectors: _Selectors,
        query: Any,
    ) -> JSON:
        store = self.store
        token = query.get("continue")
        limit = _int(query.get("limit", "0"), "limit")
        if token:
            items, rv, offset = self._continue(token)
        else:
            wanted = query.get("resourceVersion", "")
            if wanted not in ("", "0"):
                wanted_rv = _int(wanted, "resourceVersion")
                if wanted_rv > store.resource_version:
                    raise ApiError(
                        status(
                            504,
                            "Timeout",
                            f"Too large resource version: {wanted_rv}, current: "
                            f"{store.resource_version}",
                        )
                    )
                if (
                    query.get("resourceVersionMatch") == "Exact"
                    and wanted_rv != store.resource_version
                ):
                    raise ApiError(
                        status(
                            410,
                            "Expired",
                            f"too old resource version: {wanted_rv} ({store.resource_version})",
                        )
                    )
            items, rv = store.list(resource, namespace, selectors)
            for item in items:
                item.pop("kind", None)
                item.pop("apiVersion", None)
            offset = 0
        meta: JSON = {"resourceVersion": str(rv)}
        page = items[offset : offset + limit] if limit > 0 else items[offset:]
        rest = len(items) - offset - len(page)
        if rest > 0:
            page_id = f"{rv}-{next(self._page_ids)}"
            if not token:
                self._pages[page_id] = items
                while len(self._pages) > 64:
                    del self._pages[next(iter(self._pages))]
            else:
                page_id = json.loads(base64.urlsafe_b64decode(token))["id"]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": rv, "id": page_id, "offset": offset + len(page)}).encode()
            ).decode()
            meta["remainingItemCount"] = rest
        elif token:
            self._pages.pop(json.loads(base64.urlsafe_b64decode(token))["id"], None)
        return {
            "kind": f"{resource.kind}List",
            "apiVersion": resource.api_version,
            "metadata": meta,
            "items": page,
        }

    def _continue(self, token: str) -> tuple[_Objects, int, int]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token))
            rv, page_id, offset = int(decoded["rv"]), str(decoded["id"]), int(decoded["offset"])
        except (ValueError, KeyError, TypeError):
            raise bad_request("continue key is not valid") from None
        items = self._pages.get(page_id)
        if items is None or rv < self.store.oldest_resource_version:
            raise ApiError(
                status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list "
                    "result. You can start a new list without the continue parameter.",
                )
            )
        return items, rv, offset

    # -- watch ----------------------------------------------------------------------------------

    async def _watch(
        self,
        request: web.Request,
        resource: Resource,
        namespace: str | None,
        selectors: _Selectors,
    ) -> web.StreamResponse:
        query, store = request.query, self.store
        wanted = query.get("resourceVersion", "")
        position = None if wanted in ("", "0") else _int(wanted, "resourceVersion")
        timeout = query.get("timeoutSeconds")
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _int(timeout, "timeoutSeconds") if timeout else None
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watch = _Watch(request)
        self.watches.add(watch)
        try:
            if position is None:
                items, position = store.list(resource, namespace, selectors)
                for item in items:
                    await response.write(_line({"type": "ADDED", "object": item}))
            next_bookmark = loop.time() + self.bookmark_interval
            while not watch.stopped.is_set():
                changed = store.changed
                changes = store.changes_since(position)
                if changes is None:
                    gone = status(
                        410,
                        "Expired",
                        f"too old resource version: {position} ({store.oldest_resource_version})",
                    )
                    await response.write(_line({"type": "ERROR", "object": gone}))
                    break
                if changes:
                    for change in changes:
                        line = _event_for(change, resource, namespace, selectors)
                        if line is not None:
                            await response.write(line)
                    position = changes[-1].rv
                    continue
                now = loop.time()
                if deadline is not None and now >= deadline:
                    break
                if bookmarks and now >= next_bookmark:
                    await response.write(
                        _line(
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": resource.kind,
                                    "apiVersion": resource.api_version,
                                    "metadata": {"resourceVersion": str(position)},
                                },
                            }
                        )
                    )
                    next_bookmark = now + self.bookmark_interval
                    continue
                wake = [deadline - now] if deadline is not None else []
                if bookmarks:
                    wake.append(next_bookmark - now)
                await _wait_any((changed, watch.stopped), min(wake) if wake else None)
            if not watch.dropped:
                await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client went away, or the stream was cut
        finally:
            watch.stopped.set()
            self.watches.discard(watch)
        return response


def _event_for(
    change: Change, resource: Resource, namespace: str | None, selectors: _Selectors
) -> bytes | None:
    """The line a watch of ``resource`` in ``namespace`` with ``selectors`` sends for
    ``change``, or ``None``: an object that stops matching is DELETED, one that starts ADDED."""
    if change.resource is not resource:
        return None
    obj = change.object
    if namespace is not None and obj["metadata"].get("namespace") != namespace:
        return None
    matches = all(s.matches(obj) for s in selectors)
    if change.type == "MODIFIED" and change.previous is not None:
        matched = all(s.matches(change.previous) for s in selectors)
        if matches and not matched:
            return change.line("ADDED")
        if matched and not matches:
            return change.line("DELETED")
    return change.line() if matches else None


async def _wait_any(events: Iterable[asyncio.Event], timeout: float | None) -> None:
    tasks = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
