"""The end-to-end harness: a real ingressd (real nginx as its child) over a manifests directory.

    test --write(name, *objects)--> manifests dir --ManifestsSource--> Ingressd --nginx--> EchoPods
    test --get(path, host=...)--> nginx (random ports on 127.0.0.1) --> Response

``free_port`` and ``pod_addresses`` hand out ports and loopback addresses no other test of this
process holds; ``peer_certificate`` shows which certificate nginx presents for a server name.
``tests/support/kubeharness.py`` is the same harness over the fake Kubernetes API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
import yaml
from cryptography import x509

from ingressd.app.runtime import Ingressd, Options, Source
from ingressd.store.sources.files import ManifestsSource
from tests.support.backends import EchoPods

T = TypeVar("T")

_used_ports: set[int] = set()


def free_port() -> int:
    """A TCP port free on every loopback address right now, not handed out before."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("0.0.0.0", 0))
            port = int(s.getsockname()[1])
        if port not in _used_ports:
            _used_ports.add(port)
            return port


_next_subnet = [10]


def pod_addresses(count: int) -> list[str]:
    """``count`` fresh loopback addresses (127.0.N.1, 127.0.N.2, ...), a new N per call."""
    subnet = _next_subnet[0]
    _next_subnet[0] += 1
    return [f"127.{subnet // 250}.{subnet % 250}.{i + 1}" for i in range(count)]


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str]

    def json(self) -> dict[str, Any]:
        import json

        result: dict[str, Any] = json.loads(self.body)
        return result

    @property
    def pod(self) -> str | None:
        return self.headers.get("X-Pod")


@contextlib.asynccontextmanager
async def running_harness(
    root: Path, request: pytest.FixtureRequest | None = None, **options: Any
) -> AsyncIterator[Harness]:
    """A started ``Harness`` in ``root`` with ``options`` set, stopped on exit.

    Its routing mode is the test's ``@pytest.mark.routing(...)`` when ``request`` has one, else
    ``INGRESSD_TEST_ROUTING`` (lua by default).
    """
    marker = request.node.get_closest_marker("routing") if request is not None else None
    h = Harness(root, routing=marker.args[0] if marker else None)
    if options:
        h.options = dataclasses.replace(h.options, **options)
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


class Harness:
    """A running ingressd over a manifests dir, with helpers to change the dir and send requests."""

    def __init__(self, root: Path, *, routing: str | None = None) -> None:
        self.root = root
        self.manifests = root / "manifests"
        self.manifests.mkdir()
        self.http_port = free_port()
        self.https_port = free_port()
        self.options = Options(
            work_dir=root / "work",
            http_port=self.http_port,
            https_port=self.https_port,
            status_port=free_port(),
            status_address="127.0.0.1",
            worker_processes="2",
            allow_loopback_endpoints=True,  # the pods are on 127.x addresses
            # INGRESSD_TEST_ROUTING=nginx runs every end-to-end test with per-host server blocks
            routing=routing or os.environ.get("INGRESSD_TEST_ROUTING", "lua"),
        )
        self.controller: Ingressd | None = None
        self.session: aiohttp.ClientSession | None = None
        self.pods: list[EchoPods] = []
        #: The manifests source, when ``make_source`` made one.
        self.manifests_source: ManifestsSource | None = None

    @property
    def ingressd(self) -> Ingressd:
        assert self.controller is not None, "start() first"
        return self.controller

    def make_source(self) -> Source:
        """The source the controller reads; subclasses use another (``KubeHarness``)."""
        self.manifests_source = ManifestsSource(self.manifests, poll_interval=0.05)
        return self.manifests_source

    async def start(self) -> None:
        self.controller = Ingressd(self.options, source=self.make_source())
        await self.controller.start()
        await self.controller.wait_until_synced()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.controller is not None:
            await self.controller.stop()
        for pod_set in self.pods:
            await pod_set.stop()

    # -- the cluster --------------------------------------------------------------------------

    def write(self, name: str, *objects: dict[str, Any]) -> None:
        """Write ``objects`` as one multi-document YAML file (atomically)."""
        path = self.manifests / name
        tmp = self.manifests / f".{name}.tmp"
        tmp.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        os.replace(tmp, path)

    def write_text(self, name: str, text: str) -> None:
        path = self.manifests / name
        tmp = self.manifests / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, path)

    def remove(self, name: str) -> None:
        (self.manifests / name).unlink()

    async def start_pods(self, count: int, prefix: str = "pod") -> tuple[list[str], int]:
        """``count`` fake pods on fresh loopback addresses, one port: (addresses, port)."""
        addresses = pod_addresses(count)
        port = free_port()
        pods = EchoPods({a: f"{prefix}-{i}" for i, a in enumerate(addresses)}, port)
        await pods.start()
        self.pods.append(pods)
        return addresses, port

    # -- observing ----------------------------------------------------------------------------

    def metric(self, name: str, **labels: str) -> float:
        return self.ingressd.metrics.value(name, labels)

    @property
    def reloads(self) -> float:
        return self.metric("nginx_ingress_controller_success")

    @property
    def dynamic_updates(self) -> float:
        return self.metric("ingressd_dynamic_updates_total", result="success")

    async def get(
        self,
        path: str,
        *,
        host: str | None = None,
        https: bool = False,
        headers: dict[str, str] | None = None,
        allow_redirects: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> Response:
        """``ssl_context`` (with ``https``): the client's TLS settings, e.g. a client
        certificate (``tests.support.pki.client_context``); by default none, no checks."""
        assert self.session is not None
        scheme, port = ("https", self.https_port) if https else ("http", self.http_port)
        all_headers = dict(headers or {})
        if host is not None:
            all_headers["Host"] = host
        async with self.session.get(
            f"{scheme}://127.0.0.1:{port}{path}",
            headers=all_headers,
            ssl=ssl_context if ssl_context is not None else False,
            allow_redirects=allow_redirects,
            server_hostname=host if https else None,
        ) as resp:
            return Response(resp.status, await resp.text(), dict(resp.headers))

    async def eventually(
        self, check: Callable[[], Awaitable[T]], *, timeout: float = 5.0, interval: float = 0.05
    ) -> T:
        """Retry ``check`` until it returns without failing; re-raise the last failure.

        Connection errors count as failures (nginx restarting, a pod going away).
        """
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                return await check()
            except (TimeoutError, AssertionError, aiohttp.ClientError, OSError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
            await asyncio.sleep(interval)

    async def settled(self) -> None:
        """Wait until the manifests dir has been read and every queued sync has run."""
        controller = self.ingressd
        source = self.manifests_source
        if source is not None:
            # A walk of the whole directory that began after this call, however slow the
            # machine, and whether the source watches or polls.
            async with asyncio.timeout(10):
                await source.rescan()
        else:
            await asyncio.sleep(0.2)
        for _ in range(200):
            busy = controller.channel.qsize() or not controller.queue.idle
            if not busy and not controller.worker.busy:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("pipeline did not settle")


def peer_certificate(port: int, server_name: str) -> x509.Certificate:
    """Handshake with SNI ``server_name`` and return the certificate nginx presented."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)
