"""A fake Kubernetes API server speaking the real protocol over HTTP, for tests.

    kubernetes-asyncio (or any client) --HTTP on 127.0.0.1:<port>--> ApiHandler (serving.py)
        path -> (Resource, namespace, name, subresource)   (discovery paths answered directly)
        verb -> ApiStore (store.py): get | list | create | update | patch | delete; every
                request appended to ``requests`` as ApiRequest(verb, resource, subresource)
        watch -> a chunked stream: one JSON event per line from the store's change history,
                 BOOKMARKs every ``bookmark_interval`` s, ``ERROR`` + Status 410 when the history
                 no longer reaches back to the requested resourceVersion
    test code --create/update/apply/delete/get/list--> the same ApiStore (no HTTP, no auth)
    test code --drop_watches() / compact() / set_down()--> faults

Python-side addressing: an object by its own ``kind`` and ``apiVersion`` (``create``, ``update``,
``apply``, ``delete(obj)``), or ``kind`` + ``name`` + ``namespace`` (``get``, ``delete``,
``list``); ``namespace`` defaults to ``default`` for namespaced kinds and is ignored for
cluster-scoped ones; ``api_version`` picks between kinds served twice (``Event``: core ``v1``
unless told ``events.k8s.io/v1``).  ``store.RESOURCES`` lists what is served.  Python-side
writes may set ``.status`` directly (they are "the cluster"); over HTTP a create clears the
status of kinds with a ``status`` subresource and only ``/status`` changes it, as the real server.

Realism notes: list items carry no ``kind``/``apiVersion`` (as the real server's don't); a list
with ``limit`` pages through a snapshot taken by its first page (``continue`` tokens expire with
``compact()``); a watch without ``resourceVersion`` (or ``"0"``) first sends the current objects
as ADDED; requests need ``Authorization: Bearer <token>`` (401 otherwise).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.support.fakeapi.machinery import ApiError
from tests.support.fakeapi.serving import ApiHandler, ApiRequest, RequestLog
from tests.support.fakeapi.store import ApiStore, Resource, find_resource

__all__ = ["ApiError", "ApiRequest", "FakeApiServer", "RequestLog"]

JSON = dict[str, Any]
# ``FakeApiServer.list`` shadows the builtin inside the class.
_Objects = list[JSON]


class FakeApiServer:
    """An in-process Kubernetes API server on 127.0.0.1 (random port) for the real client."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str = "ingressd-fake-token",
        bookmark_interval: float = 1.0,
        history_size: int = 10_000,
    ) -> None:
        self.host = host
        self.port = port
        self.store = ApiStore(history_size=history_size)
        self.handler = ApiHandler(self.store, token=token, bookmark_interval=bookmark_interval)
        #: Every API call clients made, in order (discovery requests not included).
        self.requests = self.handler.requests
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self.handler.handle)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=1.0
        )
        await self._runner.setup()
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])
        self.handler.address = f"{self.host}:{self.port}"

    async def stop(self) -> None:
        self.handler.cut_watches()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def write_kubeconfig(self, path: Path, *, namespace: str = "default") -> Path:
        """A kubeconfig for this server (bearer token, plain HTTP); returns ``path``."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
        }
        path = Path(path)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- faults ---------------------------------------------------------------------------------

    def drop_watches(self) -> int:
        """Cut every open watch stream mid-flight (no final chunk); returns how many."""
        return self.handler.cut_watches()

    def compact(self) -> None:
        """Forget the change history: a watch from an older resourceVersion gets 410 Gone."""
        self.store.compact()

    @property
    def token(self) -> str:
        """The bearer token clients must send (the kubeconfig carries it)."""
        return self.handler.token

    @property
    def bookmark_interval(self) -> float:
        """Seconds between BOOKMARK events on watches that ask for them."""
        return self.handler.bookmark_interval

    @bookmark_interval.setter
    def bookmark_interval(self, seconds: float) -> None:
        self.handler.bookmark_interval = seconds

    @property
    def down(self) -> bool:
        return self.handler.down

    async def set_down(self, down: bool) -> None:
        """``True``: stop listening and cut every connection (the data stays); ``False``: serve
        again on the same port."""
        if down == self.handler.down:
            return
        self.handler.down = down
        if down:
            if self._site is not None:
                await self._site.stop()
                self._site = None
            self.handler.cut_watches()
            if self._runner is not None and self._runner.server is not None:
                for handler in self._runner.server.connections:
                    if handler.transport is not None:
                        handler.transport.abort()
        else:
            await self._listen()

    @property
    def watch_count(self) -> int:
        """Watch streams open now."""
        return self.handler.watch_count

    async def wait_for_watches(self, count: int, *, timeout: float = 10.0) -> None:
        """Wait until at least ``count`` watch streams are open."""
        async with asyncio.timeout(timeout):
            while self.watch_count < count:
                await asyncio.sleep(0.01)

    @property
    def resource_version(self) -> str:
        return str(self.store.resource_version)

    # -- Python-side control (no HTTP, no auth, not recorded in ``requests``) -----------------

    @staticmethod
    def _of(obj: JSON) -> tuple[Resource, str | None, str]:
        resource = find_resource(obj["kind"], obj.get("apiVersion"))
        meta = obj.get("metadata") or {}
        return resource, meta.get("namespace"), str(meta.get("name", ""))

    def create(self, obj: JSON) -> JSON:
        """Create ``obj`` (status included); raises ApiError 409 AlreadyExists."""
        resource, namespace, _ = self._of(obj)
        return self.store.create(resource, namespace, obj)

    def update(self, obj: JSON) -> JSON:
        """Replace the stored object (status included) whatever its resourceVersion."""
        resource, namespace, name = self._of(obj)
        return self.store.update(
            resource, namespace, name, obj, subresource="*", check_version=False
        )

    def apply(self, obj: JSON) -> JSON:
        """Create ``obj``, or replace it when it exists."""
        resource, namespace, name = self._of(obj)
        try:
            self.store.get(resource, namespace, name)
        except ApiError:
            return self.create(obj)
        return self.update(obj)

    def delete(
        self,
        kind_or_obj: str | JSON,
        name: str | None = None,
        namespace: str | None = None,
        *,
        api_version: str | None = None,
    ) -> JSON:
        """Delete an object (given, or by kind + name + namespace); returns it as deleted."""
        if isinstance(kind_or_obj, dict):
            resource, namespace, name = self._of(kind_or_obj)
        else:
            if name is None:
                raise TypeError("delete(kind, name, namespace): name is required")
            resource = find_resource(kind_or_obj, api_version)
        return self.store.delete(resource, namespace, name)

    def get(
        self, kind: str, name: str, namespace: str | None = None, *, api_version: str | None = None
    ) -> JSON:
        """The stored object; raises ApiError 404 NotFound."""
        return self.store.get(find_resource(kind, api_version), namespace, name)

    def list(
        self, kind: str, namespace: str | None = None, *, api_version: str | None = None
    ) -> _Objects:
        """Every object of ``kind`` (in ``namespace``, or all), sorted by namespace and name."""
        items, _ = self.store.list(find_resource(kind, api_version), namespace)
        return items

    # -- HTTP -----------------------------------------------------------------------------------
