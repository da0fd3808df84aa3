"""One informer: list, then watch from the list's resourceVersion, for one kind of object.

    list (pages of ``page_size``, ``continue``) --> items (kind/apiVersion filled in) + RV
        --_replace(): diff against the cache by resourceVersion--> ADDED/MODIFIED/DELETED --> sink
    watch ?resourceVersion=<last seen>&allowWatchBookmarks=true&timeoutSeconds=<T..2T>
        ADDED / MODIFIED / DELETED --_apply(): cache, skip what the cache already has--> sink
        BOOKMARK                   --> the resourceVersion moves on; nothing is emitted
        ERROR 410 (or HTTP 410)    --> relist and diff (``relists``)
        cut / refused / other error --> jittered exponential backoff, then watch again from the
                                       last resourceVersion (``reconnects``)
        stream ended by its timeout --> watch again at once; once ``resync_period`` has passed,
                                       a relist instead, which emits only real differences

The cache mirrors exactly what was handed to the sink, and every event is checked against it by
resourceVersion, so a relist after 410 Gone, a resumed watch or a resync neither loses nor
repeats a change: several changes to one object while the informer could not watch coalesce into
one event carrying the latest state.  Objects go to the sink as the API server sent them (JSON
dicts, camelCase), with ``kind`` and ``apiVersion`` added to listed items, which the API server
leaves out.  The event type follows the cache (an ADDED for a cached object is a MODIFIED).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import structlog

from ingressd.store.events import EventType, WatchEvent
from ingressd.store.sources.files import MAX_DEPTH, over_limits

__all__ = ["Backoff", "Informer", "InformerStats", "ListCall", "Reachability", "Sink"]

#: The largest watch event taken: the API server stores objects of 1.5 MB at most.
MAX_EVENT_BYTES = 3 * 1024 * 1024

log = structlog.get_logger("ingressd.informer")

Sink = Callable[[WatchEvent], object]
#: A kubernetes-asyncio list method with its positional arguments bound (e.g. the namespace);
#: called with the list/watch keyword arguments and ``_preload_content=False``, it returns the
#: raw ``aiohttp.ClientResponse``.
ListCall = Callable[..., Awaitable[Any]]

JSON = dict[str, Any]
_Key = tuple[str, str]  # (namespace or "", name)


class Backoff:
    """Exponential delays from ``initial`` to ``maximum``, each jittered down by up to half."""

    def __init__(
        self, initial: float = 0.2, maximum: float = 10.0, *, rng: random.Random | None = None
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._attempt = 0

    def next(self) -> float:
        delay = min(self.maximum, self.initial * 2.0**self._attempt)
        self._attempt += 1
        return delay * (0.5 + 0.5 * self._rng.random())

    def reset(self) -> None:
        self._attempt = 0


class Reachability:
    """Shared by the informers of one source: the first answer from the API server after an
    outage wakes every informer waiting out its backoff, so all resume at once instead of one
    by one over their own backoffs (up to ``maximum`` each).

    While any informer waits, ``probe`` (a cheap request: the API's discovery document) asks
    every ``interval`` seconds whether the server answers again.
    """

    def __init__(
        self, probe: Callable[[], Awaitable[object]] | None = None, *, interval: float = 1.0
    ) -> None:
        self._answered = asyncio.Event()
        self._probe = probe
        self.interval = interval
        self._waiting = 0
        self._prober: asyncio.Task[None] | None = None

    def answered(self) -> None:
        """A request succeeded after a failure: wake every waiting informer."""
        event, self._answered = self._answered, asyncio.Event()
        event.set()

    async def pause(self, delay: float) -> bool:
        """Sleep ``delay`` seconds, or less when the API server answers meanwhile (True)."""
        event = self._answered
        self._waiting += 1
        if self._probe is not None and (self._prober is None or self._prober.done()):
            self._prober = asyncio.create_task(self._probing(), name="api-probe")
        try:
            async with asyncio.timeout(delay):
                await event.wait()
        except TimeoutError:
            return False
        finally:
            self._waiting -= 1
        return True

    async def _probing(self) -> None:
        assert self._probe is not None
        while self._waiting:
            await asyncio.sleep(self.interval)
            if not self._waiting:
                return
            try:
                async with asyncio.timeout(self.interval * 2):
                    await self._probe()
            except Exception:  # still down (or refusing): ask again later
                continue
            self.answered()
            return


@dataclass(slots=True)
class InformerStats:
    """Counters of one informer (for metrics and /debug)."""

    #: Events handed to the sink.
    events: int = 0
    #: Completed lists, the first one included.
    lists: int = 0
    #: Lists after a 410 Gone.
    relists: int = 0
    #: Periodic lists (``resync_period``).
    resyncs: int = 0
    #: Watches started again after an error (cut, refused, server error).
    reconnects: int = 0
    bookmarks: int = 0
    #: Failed requests, lists and watches.
    errors: int = 0
    last_error: str | None = None


class _Expired(Exception):
    """410 Gone: the resourceVersion is older than the server's history."""


class _RequestFailed(Exception):
    """The API server answered with an error status."""


_ENDED = "ended"
_EXPIRED = "expired"


def _key(obj: JSON) -> _Key | None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str):
        return None
    return (str(meta.get("namespace") or ""), meta["name"])


def _rv(obj: JSON) -> str | None:
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, dict) else None
    return value if isinstance(value, str) else None


async def _failure(response: Any) -> Exception:
    """The exception for an error response (410 -> ``_Expired``)."""
    try:
        body = await response.json(content_type=None)
        message = body.get("message") if isinstance(body, dict) else None
    except (ValueError, aiohttp.ClientError):
        message = None
    text = f"HTTP {response.status}: {message or response.reason}"
    return _Expired(text) if response.status == 410 else _RequestFailed(text)


def _drop_managed_fields(obj: JSON) -> None:
    """Remove ``metadata.managedFields`` from an object just parsed (no one else holds it)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)


class Informer:
    """List-then-watch of one kind, feeding a sink; ``run`` until cancelled."""

    def __init__(
        self,
        kind: str,
        api_version: str,
        call: ListCall,
        *,
        page_size: int = 500,
        watch_timeout: float = 300.0,
        resync_period: float = 600.0,
        backoff: Backoff | None = None,
        connect_timeout: float = 10.0,
        keep_managed_fields: bool = False,
        reachability: Reachability | None = None,
    ) -> None:
        self.kind = kind
        #: ``metadata.managedFields`` (server-side apply bookkeeping, often half an object's
        #: size, and never read by ingressd) are dropped on arrival unless this is set
        #: (``ingressd record``: a trace keeps what the API server sent).
        self.keep_managed_fields = keep_managed_fields
        self.api_version = api_version
        self._call = call
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.resync_period = resync_period
        self.connect_timeout = connect_timeout
        self._backoff = backoff or Backoff()
        self._reachability = reachability or Reachability()
        self._rng = random.Random()
        #: What was handed to the sink, by (namespace, name).
        self.cache: dict[_Key, JSON] = {}
        #: Where the next watch starts; ``None`` until the first list.
        self.resource_version: str | None = None
        self.stats = InformerStats()
        self._next_resync = 0.0
        self._failing = False

    # -- the loop -------------------------------------------------------------------------------

    async def sync(self) -> list[WatchEvent]:
        """List (retrying with backoff until it works), update the cache, return the changes."""
        while True:
            try:
                items, rv = await self._list()
            except (
                aiohttp.ClientError,
                OSError,
                TimeoutError,
                ValueError,
                _RequestFailed,
                _Expired,
            ) as exc:
                self._failed("list", exc)
                await self._wait()
                continue
            self._recovered()
            self.stats.lists += 1
            self._next_resync = asyncio.get_running_loop().time() + self.resync_period
            return self._replace(items, rv)

    async def run(self, sink: Sink) -> None:
        """Watch (listing first if ``sync`` has not run) until cancelled."""
        relist = self.resource_version is None
        while True:
            if relist:
                self.deliver(sink, await self.sync())
                relist = False
            try:
                outcome = await self._watch(sink)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, _RequestFailed) as exc:
                self._failed("watch", exc)
                self.stats.reconnects += 1
                await self._wait()
                continue
            if outcome == _EXPIRED:
                log.info("watch expired, relisting", kind=self.kind, rv=self.resource_version)
                self.stats.relists += 1
                relist = True
            elif asyncio.get_running_loop().time() >= self._next_resync:
                self.stats.resyncs += 1
                relist = True

    def _failed(self, what: str, exc: BaseException) -> None:
        """Count a failure; log the first of a streak as a warning, the rest at debug."""
        self.stats.errors += 1
        self.stats.last_error = f"{what}: {type(exc).__name__}: {exc}"
        report = log.debug if self._failing else log.warning
        report(
            "api request failed, retrying with backoff",
            kind=self.kind,
            request=what,
            error=f"{type(exc).__name__}: {exc}",
            rv=self.resource_version,
        )
        self._failing = True

    async def _wait(self) -> None:
        """Wait out the backoff; cut short (and the backoff reset) when another informer of
        the source hears from the API server again."""
        if await self._reachability.pause(self._backoff.next()):
            self._backoff.reset()

    def _recovered(self) -> None:
        self._backoff.reset()
        if self._failing:
            self._failing = False
            log.info("api reachable again", kind=self.kind, rv=self.resource_version)
            self._reachability.answered()

    def deliver(self, sink: Sink, events: list[WatchEvent]) -> None:
        for event in events:
            self.stats.events += 1
            try:
                sink(event)
            except Exception as exc:  # a broken sink must not stop the informer
                log.error("sink failed", kind=self.kind, error=repr(exc))

    # -- list -----------------------------------------------------------------------------------

    async def _list(self) -> tuple[list[JSON], str]:
        """Every object, page by page; a 410 on ``continue`` starts the list over."""
        items: list[JSON] = []
        token: str | None = None
        while True:
            response = await self._call(
                limit=self.page_size,
                _continue=token,
                _preload_content=False,
                _request_timeout=aiohttp.ClientTimeout(
                    total=max(60.0, self.connect_timeout), sock_connect=self.connect_timeout
                ),
            )
            try:
                if response.status == 410 and token is not None:
                    items, token = [], None
                    continue
                if response.status != 200:
                    raise await _failure(response)
                try:
                    body = json.loads(await response.read())
                except RecursionError:
                    raise ValueError(f"list nested deeper than {MAX_DEPTH} levels") from None
            finally:
                response.release()
            for item in body.get("items") or ():
                over = over_limits(item)
                if over is not None:
                    log.warning("listed object over the limits skipped", kind=self.kind, limit=over)
                    continue
                if not self.keep_managed_fields:
                    _drop_managed_fields(item)
                items.append({"apiVersion": self.api_version, "kind": self.kind, **item})
            meta = body.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                return items, str(meta.get("resourceVersion", ""))

    def _replace(self, items: list[JSON], rv: str) -> list[WatchEvent]:
        """Make ``items`` the cache; the events that turn the old cache into the new one."""
        events: list[WatchEvent] = []
        fresh: dict[_Key, JSON] = {}
        for obj in items:
            key = _key(obj)
            if key is None:
                continue
            fresh[key] = obj
            old = self.cache.get(key)
            if old is None:
                events.append(WatchEvent(EventType.ADDED, obj))
            elif _rv(old) != _rv(obj):
                events.append(WatchEvent(EventType.MODIFIED, obj))
        for key, old in self.cache.items():
            if key not in fresh:
                events.append(WatchEvent(EventType.DELETED, old))
        self.cache = fresh
        self.resource_version = rv
        return events

    # -- watch ----------------------------------------------------------------------------------

    async def _watch(self, sink: Sink) -> str:
        """One watch stream; ``_ENDED`` when the server closed it, ``_EXPIRED`` on 410."""
        loop = asyncio.get_running_loop()
        timeout = int(self.watch_timeout * (1.0 + self._rng.random()))
        timeout = max(1, min(timeout, int(self._next_resync - loop.time()) + 1))
        response = await self._call(
            watch=True,
            resource_version=self.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout,
            _preload_content=False,
            _request_timeout=aiohttp.ClientTimeout(
                sock_connect=self.connect_timeout, sock_read=timeout + 30.0
            ),
        )
        try:
            if response.status == 410:
                return _EXPIRED
            if response.status != 200:
                raise await _failure(response)
            self._recovered()
            while True:
                line = await response.content.readline()
                if not line:
                    return _ENDED
                if not line.strip():
                    continue
                event = self._decode(line)
                if event is None:
                    continue
                type_, obj = event.get("type"), event.get("object")
                if not isinstance(obj, dict):
                    raise ValueError(f"watch event without an object: {line[:200]!r}")
                if type_ == "ERROR":
                    if obj.get("code") == 410:
                        return _EXPIRED
                    raise _RequestFailed(f"watch error {obj.get('code')}: {obj.get('message')}")
                if type_ == "BOOKMARK":
                    self.stats.bookmarks += 1
                    self.resource_version = _rv(obj) or self.resource_version
                    continue
                emitted = self._apply(type_, obj)
                if emitted is not None:
                    self.deliver(sink, [emitted])
        finally:
            response.close()

    def _decode(self, line: bytes) -> Any:
        """One watch event, or None (logged) when it is over the limits an object may reach:
        the API server stores 1.5 MB at most; nesting and numbers as for manifest files."""
        if len(line) > MAX_EVENT_BYTES:
            log.warning(
                "watch event over the size limit skipped",
                kind=self.kind,
                bytes=len(line),
                limit=MAX_EVENT_BYTES,
            )
            return None
        over: str | None
        try:
            event = json.loads(line)
        except RecursionError:
            event, over = None, f"nested deeper than {MAX_DEPTH} levels"
        else:
            over = over_limits(event)
        if over is not None:
            log.warning("watch event over the limits skipped", kind=self.kind, limit=over)
            return None
        return event

    def _apply(self, type_: Any, obj: JSON) -> WatchEvent | None:
        """Fold one watch event into the cache; the event to emit, or None for a repeat."""
        rv = _rv(obj)
        if rv is not None:
            self.resource_version = rv
        key = _key(obj)
        if key is None:
            return None
        if "kind" not in obj or "apiVersion" not in obj:
            obj = {"apiVersion": self.api_version, "kind": self.kind, **obj}
        if not self.keep_managed_fields:
            _drop_managed_fields(obj)
        old = self.cache.get(key)
        if type_ == "DELETED":
            if old is None:
                return None
            del self.cache[key]
            return WatchEvent(EventType.DELETED, obj)
        if type_ not in ("ADDED", "MODIFIED"):
            log.warning("unknown watch event type", kind=self.kind, type=type_)
            return None
        if old is not None and _rv(old) == rv:
            return None
        self.cache[key] = obj
        return WatchEvent(EventType.ADDED if old is None else EventType.MODIFIED, obj)
