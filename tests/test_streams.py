"""TCP/UDP services and TLS passthrough: the ConfigMap grammar, the build, and real traffic
through nginx's stream module (peers picked by njs from the controller's peer files)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ingressd.build import BuildOptions, build_configuration
from ingressd.build.streams import StreamEntry, parse_entry
from ingressd.cluster.client import api_client
from ingressd.model import Configuration, ObjectKey
from ingressd.model.streams import StreamProtocol
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.diffing import Action, Change, decide
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.store import Store
from tests.support import objects as o
from tests.support.backends import EchoPods
from tests.support.fakeapi import FakeApiServer
from tests.support.harness import Harness, free_port, pod_addresses, running_harness

TCP_MAP = ObjectKey("ingress/tcp-services")
UDP_MAP = ObjectKey("ingress/udp-services")
CONTROLLER_MAP = ObjectKey("ingress/controller")


def configmap(key: str, data: dict[str, Any]) -> dict[str, Any]:
    namespace, _, name = key.partition("/")
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}"},
        "data": data,
    }


# -- the grammar --------------------------------------------------------------------------------


def test_entry_with_both_proxy_flags_decodes_and_sends() -> None:
    assert parse_entry("9000", "db/postgres:5432:PROXY:PROXY") == StreamEntry(
        9000, "db", "postgres", "5432", decode_proxy=True, send_proxy=True
    )
    entry = parse_entry("22", "git/gitlab-shell:ssh:PROXY")
    assert isinstance(entry, StreamEntry)
    assert (entry.service_port, entry.decode_proxy, entry.send_proxy) == ("ssh", True, False)


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("http", "a/b:80", "must be a port number"),
        ("70000", "a/b:80", "must be a port number"),
        ("9000", "b:80", "must be <namespace>/<service>"),
        ("9000", "a/b", "must be <namespace>/<service>:<port>"),
        ("9000", "a/B_x:80", "service 'B_x'"),
        ("9000", "a/b:80:TLS", "only PROXY may follow"),
        ("9000", "a/b:80;evil", "service port"),
        ("9000", "a/b:99999", "between 1 and 65535"),
    ],
)
def test_bad_entries_say_why(key: str, value: str, why: str) -> None:
    result = parse_entry(key, value)
    assert isinstance(result, str) and why in result


def test_bad_entry_and_taken_port_are_problems_and_the_others_apply() -> None:
    snap = o.snapshot(
        o.service("echo", "apps", ports=[o.service_port(7000, target_port=7000)]),
        o.endpoint_slice("echo", "apps", endpoints=["10.0.0.1"], port=7000),
        configmap(
            TCP_MAP,
            {
                "9000": "apps/echo:7000",
                "9001": "apps/echo:7000:PROXY",
                "9002": "apps/missing:7000",
                "80": "apps/echo:7000",
                "9003": "apps/echo:7000:bogus",
            },
        ),
    )
    options = BuildOptions(tcp_services_configmap=TCP_MAP, reserved_ports=((80, "the HTTP port"),))
    result = build_configuration(snap, options)
    services = result.configuration.streams.services
    assert [(s.port, s.decode_proxy) for s in services] == [(9000, False), (9001, True)]
    assert {s.protocol for s in services} == {StreamProtocol.TCP}
    by_field = {p.field: p.reason for p in result.problems}
    assert "taken by the HTTP port" in by_field["data[80]"]
    assert "service apps/missing not found" in by_field["data[9002]"]
    assert "only PROXY" in by_field["data[9003]"]
    backend = result.configuration.backend_map()[services[0].backend]
    assert [e.address for e in backend.endpoints] == ["10.0.0.1"]


def test_passthrough_hosts_oldest_ingress_wins_and_false_or_no_flag_means_none() -> None:
    def passthrough_ingress(name: str, created: str, value: str = "true") -> dict[str, Any]:
        obj = o.ingress(
            name,
            "apps",
            rules=[o.rule("argo.example.com", o.path("/", "argo", 443))],
            annotations={"nginx.ingress.kubernetes.io/ssl-passthrough": value},
        )
        obj["metadata"]["creationTimestamp"] = created
        return obj

    objects = [
        o.service("argo", "apps", ports=[o.service_port(443, target_port=8443)]),
        o.endpoint_slice("argo", "apps", endpoints=["10.0.0.5"], port=8443),
        passthrough_ingress("newer", "2024-02-01T00:00:00Z"),
        passthrough_ingress("older", "2024-01-01T00:00:00Z"),
        passthrough_ingress("off", "2023-01-01T00:00:00Z", "false"),
    ]
    result = build_configuration(o.snapshot(*objects), BuildOptions(enable_ssl_passthrough=True))
    (entry,) = result.configuration.streams.passthrough
    assert (entry.hostname, entry.ingress) == ("argo.example.com", "apps/older")
    losers = [p for p in result.problems if "already taken" in p.reason]
    assert [(p.key, p.winner) for p in losers] == [("apps/newer", "apps/older")]
    backend = result.configuration.backend_map()[entry.backend]
    assert [(e.address, e.port) for e in backend.endpoints] == [("10.0.0.5", 8443)]
    without_flag = build_configuration(o.snapshot(*objects), BuildOptions())
    assert without_flag.configuration.streams.passthrough == ()


def test_stream_listener_change_reloads_and_its_endpoints_change_dynamically() -> None:
    def build(data: dict[str, str], addresses: list[str]) -> Configuration:
        snap = o.snapshot(*echo_service("echo", addresses, 7000), configmap(TCP_MAP, data))
        return build_configuration(snap, BuildOptions(tcp_services_configmap=TCP_MAP)).configuration

    running = build({"9000": "apps/echo:7000"}, ["10.0.0.1"])
    scaled = decide(build({"9000": "apps/echo:7000"}, ["10.0.0.1", "10.0.0.2"]), running)
    assert scaled.action is Action.DYNAMIC
    assert scaled.changed_backends == ("apps-echo-7000",)
    moved = decide(build({"9001": "apps/echo:7000"}, ["10.0.0.1"]), running)
    assert moved.action is Action.RELOAD
    assert set(moved.reasons) == {"TCP service 9000 removed", "TCP service 9001 added"}
    assert moved.change is Change.STREAMS


# -- real traffic ---------------------------------------------------------------------------------


class TcpEchoPods:
    """TCP servers on loopback addresses: each answers ``<name>:<what it read>`` per line."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.servers: dict[str, asyncio.Server] = {}

    async def add(self, address: str, name: str) -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while line := await reader.readline():
                    writer.write(f"{name}:".encode() + line)
                    await writer.drain()
            finally:
                writer.close()

        self.servers[address] = await asyncio.start_server(handle, address, self.port)

    async def stop(self) -> None:
        for server in self.servers.values():
            server.close()


class UdpEchoPods:
    """UDP servers: each answers a datagram with ``<name>:<datagram>``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transports: list[asyncio.DatagramTransport] = []

    async def add(self, address: str, name: str) -> None:
        class Echo(asyncio.DatagramProtocol):
            transport: Any = None

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport

            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                self.transport.sendto(f"{name}:".encode() + data, addr)

        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(Echo, local_addr=(address, self.port))
        self.transports.append(transport)

    def stop(self) -> None:
        for transport in self.transports:
            transport.close()


async def tcp_exchange(port: int, text: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(text.encode() + b"\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 5)).decode().strip()
    finally:
        writer.close()


def udp_exchange(port: int, text: str) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(text.encode(), ("127.0.0.1", port))
        return sock.recv(1024).decode()


def echo_service(name: str, addresses: list[str], port: int, protocol: str = "TCP") -> list[Any]:
    return [
        o.service(name, "apps", ports=[o.service_port(port, protocol=protocol)]),
        o.endpoint_slice(
            name,
            "apps",
            endpoints=addresses,
            ports=[{"port": port, "protocol": protocol}],
        ),
    ]


@pytest.fixture
async def stream_harness(
    world_readable_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    async with running_harness(
        world_readable_tmp,
        request,
        tcp_services_configmap=TCP_MAP,
        udp_services_configmap=UDP_MAP,
        enable_ssl_passthrough=True,
        configmap=CONTROLLER_MAP,
    ) as h:
        yield h


@pytest.mark.nginx
async def test_tcp_service_balances_and_scales_out_without_reload(
    stream_harness: Harness,
) -> None:
    h = stream_harness
    addresses = pod_addresses(3)
    pod_port, listen = free_port(), free_port()
    pods = TcpEchoPods(pod_port)
    for i, address in enumerate(addresses):
        await pods.add(address, f"tcp-{i}")
    try:
        h.write("echo.yaml", *echo_service("echo", addresses[:2], pod_port))
        h.write("tcp.yaml", configmap(TCP_MAP, {str(listen): f"apps/echo:{pod_port}"}))

        async def both_pods() -> set[str]:
            seen = {(await tcp_exchange(listen, "hi")).split(":")[0] for _ in range(6)}
            assert seen == {"tcp-0", "tcp-1"}, seen
            return seen

        await h.eventually(both_pods, timeout=15)
        assert await tcp_exchange(listen, "hello") in {"tcp-0:hello", "tcp-1:hello"}
        await h.settled()
        reloads = h.reloads

        h.write("echo.yaml", *echo_service("echo", addresses, pod_port))

        async def three_pods() -> None:
            seen = {(await tcp_exchange(listen, "hi")).split(":")[0] for _ in range(9)}
            assert seen == {"tcp-0", "tcp-1", "tcp-2"}, seen

        await h.eventually(three_pods, timeout=15)
        await h.settled()
        assert h.reloads == reloads

        # no endpoints: the connection is closed, nothing is proxied
        h.write("echo.yaml", *echo_service("echo", [], pod_port))
        await h.settled()

        async def closed() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", listen)
            writer.write(b"hi\n")
            assert await asyncio.wait_for(reader.read(100), 5) == b""
            writer.close()

        await h.eventually(closed, timeout=10)
        assert h.reloads == reloads
    finally:
        await pods.stop()


@pytest.mark.nginx
async def test_udp_service_echoes_datagrams_through_nginx(stream_harness: Harness) -> None:
    h = stream_harness
    addresses = pod_addresses(2)
    pod_port, listen = free_port(), free_port()
    pods = UdpEchoPods(pod_port)
    for i, address in enumerate(addresses):
        await pods.add(address, f"udp-{i}")
    try:
        h.write("dns.yaml", *echo_service("dns", addresses[:1], pod_port, "UDP"))
        h.write("udp.yaml", configmap(UDP_MAP, {str(listen): f"apps/dns:{pod_port}"}))

        async def answered() -> None:
            assert await asyncio.to_thread(udp_exchange, listen, "ping") == "udp-0:ping"

        await h.eventually(answered, timeout=15)
        await h.settled()
        reloads = h.reloads
        h.write("dns.yaml", *echo_service("dns", addresses, pod_port, "UDP"))

        async def both() -> None:
            seen = {
                (await asyncio.to_thread(udp_exchange, listen, "x")).split(":")[0] for _ in range(6)
            }
            assert seen == {"udp-0", "udp-1"}, seen

        await h.eventually(both, timeout=15)
        assert h.reloads == reloads
    finally:
        pods.stop()


@pytest.mark.nginx
async def test_passthrough_host_reaches_the_pod_certificate_and_others_reach_nginx(
    stream_harness: Harness, tmp_path: Path
) -> None:
    h = stream_harness
    cert_pem, key_pem = o.self_signed_certificate(
        "argo.example.com", not_before=datetime.datetime.now(datetime.UTC) - datetime.timedelta(1)
    )
    directory = tmp_path
    (directory / "pod.crt").write_text(cert_pem)
    (directory / "pod.key").write_text(key_pem)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(directory / "pod.crt", directory / "pod.key")
    tls_addresses = pod_addresses(2)
    tls_pods = EchoPods(
        {tls_addresses[0]: "tls-pod-0", tls_addresses[1]: "tls-pod-1"},
        free_port(),
        ssl_context=context,
    )
    await tls_pods.start()
    http_addresses, http_port = await h.start_pods(1, prefix="web")
    try:
        h.write("argo-pods.yaml", *echo_service("argo", tls_addresses[:1], tls_pods.port))
        h.write(
            "argo.yaml",
            o.ingress(
                "argo",
                "apps",
                rules=[o.rule("argo.example.com", o.path("/", "argo", tls_pods.port))],
                annotations={"nginx.ingress.kubernetes.io/ssl-passthrough": "true"},
            ),
            *echo_service("web", http_addresses, http_port),
            o.ingress(
                "web",
                "apps",
                rules=[o.rule("web.example.com", o.path("/", "web", http_port))],
            ),
        )

        async def pod_answer() -> bytes:
            client = ssl.create_default_context(cadata=cert_pem)
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", h.https_port, ssl=client, server_hostname="argo.example.com"
            )
            writer.write(b"GET /x HTTP/1.1\r\nHost: argo.example.com\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            return answer

        async def pod_certificate() -> None:
            answer = await pod_answer()
            assert b'"pod": "tls-pod-0"' in answer, answer[:200]

        await h.eventually(pod_certificate, timeout=15)
        await h.settled()
        reloads = h.reloads

        # A second pod: connections spread over both, and the endpoint change needs no reload.
        h.write("argo-pods.yaml", *echo_service("argo", tls_addresses, tls_pods.port))

        async def both_pods() -> None:
            answers = [await pod_answer() for _ in range(10)]
            seen = {pod for pod in ("tls-pod-0", "tls-pod-1") for a in answers if pod.encode() in a}
            assert seen == {"tls-pod-0", "tls-pod-1"}, seen

        await h.eventually(both_pods, timeout=15)
        await h.settled()
        assert h.reloads == reloads

        async def through_nginx() -> None:
            response = await h.get("/", host="web.example.com", https=True)
            assert response.status == 200 and response.pod == "web-0"
            sent = response.json()["headers"]
            assert sent["X-Real-IP"] == "127.0.0.1"
            assert sent["X-Forwarded-For"] == "127.0.0.1"

        await h.eventually(through_nginx, timeout=15)
    finally:
        await tls_pods.stop()


# -- the Kubernetes source -------------------------------------------------------------------------


async def test_kubernetes_source_watches_the_services_configmaps_and_their_services(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    """A tcp-services entry added over the API, then its Service's endpoints scaled out:
    both reach the Store as events, through real list and watch calls."""
    controller = ObjectKey("ingress/controller")
    fake_api.create(configmap(controller, {}))
    fake_api.create(configmap(TCP_MAP, {}))
    fake_api.create(configmap(ObjectKey("ingress/unrelated"), {"a": "b"}))
    for obj in echo_service("db", ["10.0.0.1"], 5432):
        fake_api.create(obj)
    client = await api_client(fake_api.write_kubeconfig(tmp_path / "kubeconfig"))
    channel = UpdateChannel()
    store = Store(channel=channel, configmap=controller, stream_configmaps=(TCP_MAP,))
    source = KubernetesSource(client, configmap=controller, stream_configmaps=(TCP_MAP,))
    task: asyncio.Task[None] | None = None
    try:
        await source.load_once(store.apply)
        task = asyncio.create_task(source.run(store.apply))
        await fake_api.wait_for_watches(len(source.informers))
        channel.get_nowait_all()
        options = BuildOptions(tcp_services_configmap=TCP_MAP)

        async def endpoints(count: int) -> None:
            while True:
                config = build_configuration(store.snapshot(), options).configuration
                services = config.streams.services
                if services:
                    backend = config.backend_map()[services[0].backend]
                    if len(backend.endpoints) == count:
                        return
                await asyncio.sleep(0.05)

        fake_api.update(configmap(TCP_MAP, {"5432": "apps/db:5432"}))
        fake_api.update(configmap(ObjectKey("ingress/unrelated"), {"a": "c"}))
        async with asyncio.timeout(10):
            await endpoints(1)
        await asyncio.sleep(0.2)  # the unrelated ConfigMap's change arrived too
        kinds = {(event.kind.value, event.key) for event in channel.get_nowait_all()}
        assert kinds == {("ConfigMap", TCP_MAP)}
        fake_api.update(echo_service("db", ["10.0.0.1", "10.0.0.2"], 5432)[1])
        async with asyncio.timeout(10):
            await endpoints(2)
        kinds = {(event.kind.value, event.key) for event in channel.get_nowait_all()}
        assert kinds == {("EndpointSlice", "apps/db-abcde")}
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()


# -- PROXY protocol -------------------------------------------------------------------------------


def proxy_v2(source: str, port: int) -> bytes:
    """A PROXY protocol v2 header (TCP over IPv4) from ``source``:``port``."""
    body = socket.inet_aton(source) + socket.inet_aton("127.0.0.1")
    body += port.to_bytes(2, "big") + (80).to_bytes(2, "big")
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + len(body).to_bytes(2, "big") + body


async def raw_request(
    port: int, header: bytes, request: bytes, *, tls_host: str | None = None
) -> str:
    """Send ``header`` then ``request`` (over TLS to ``tls_host`` when given); the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(header)
    await writer.drain()
    if tls_host is not None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        await writer.start_tls(context, server_hostname=tls_host)
    writer.write(request)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer.decode(errors="replace")


def pod_headers(answer: str) -> dict[str, str]:
    import json

    status, _, body = answer.partition("\r\n\r\n")
    assert " 200 " in status.split("\r\n")[0], answer[:300]
    headers: dict[str, str] = json.loads(body)["headers"]
    return headers


@pytest.mark.nginx
async def test_use_proxy_protocol_takes_the_client_address_from_v1_and_v2_headers(
    stream_harness: Harness,
) -> None:
    h = stream_harness
    addresses, port = await h.start_pods(1, prefix="web")
    h.write(
        "web.yaml",
        *echo_service("web", addresses, port),
        o.ingress("web", "apps", rules=[o.rule("web.example.com", o.path("/", "web", port))]),
    )
    h.write(
        "cm.yaml",
        configmap(
            CONTROLLER_MAP,
            {"use-proxy-protocol": "true", "compute-full-forwarded-for": "true"},
        ),
    )
    request = (
        b"GET / HTTP/1.0\r\nHost: web.example.com\r\nX-Forwarded-For: 198.51.100.9\r\n"
        b"Connection: close\r\n\r\n"
    )
    v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40000 80\r\n"

    async def via_v1() -> None:
        headers = pod_headers(await raw_request(h.http_port, v1, request))
        assert headers["X-Real-IP"] == "203.0.113.7"
        assert headers["X-Forwarded-For"] == "198.51.100.9, 203.0.113.7"

    await h.eventually(via_v1, timeout=15)
    headers = pod_headers(await raw_request(h.http_port, proxy_v2("203.0.113.8", 4000), request))
    assert headers["X-Real-IP"] == "203.0.113.8"
    # HTTPS: the stream front takes the header, passes the address on to the HTTPS servers
    headers = pod_headers(await raw_request(h.https_port, v1, request, tls_host="web.example.com"))
    assert headers["X-Real-IP"] == "203.0.113.7"
    assert headers["X-Forwarded-Proto"] == "https"
    # without a header the connection is refused: the listeners require one
    with pytest.raises((ConnectionError, AssertionError, IndexError, asyncio.IncompleteReadError)):
        pod_headers(await raw_request(h.http_port, b"", request))


@pytest.mark.nginx
async def test_tcp_entry_with_two_proxy_flags_decodes_and_sends_the_client_address(
    stream_harness: Harness,
) -> None:
    h = stream_harness
    addresses = pod_addresses(1)
    pod_port, listen = free_port(), free_port()
    pods = TcpEchoPods(pod_port)
    await pods.add(addresses[0], "tcp-0")
    try:
        h.write("echo.yaml", *echo_service("echo", addresses, pod_port))
        h.write("tcp.yaml", configmap(TCP_MAP, {str(listen): f"apps/echo:{pod_port}:PROXY:PROXY"}))

        async def forwarded() -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", listen)
            writer.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40000 9000\r\nhello\n")
            first = (await asyncio.wait_for(reader.readline(), 5)).decode()
            second = (await asyncio.wait_for(reader.readline(), 5)).decode()
            writer.close()
            assert first.startswith("tcp-0:PROXY TCP4 203.0.113.9 "), first
            assert second == "tcp-0:hello\n"

        await h.eventually(forwarded, timeout=15)
    finally:
        await pods.stop()


@pytest.mark.nginx
async def test_enable_real_ip_believes_the_forwarded_address_but_not_the_scheme(
    stream_harness: Harness,
) -> None:
    h = stream_harness
    addresses, port = await h.start_pods(1, prefix="web")
    h.write(
        "web.yaml",
        *echo_service("web", addresses, port),
        o.ingress("web", "apps", rules=[o.rule("web.example.com", o.path("/", "web", port))]),
    )
    h.write("cm.yaml", configmap(CONTROLLER_MAP, {"enable-real-ip": "true"}))
    forwarded = {"X-Forwarded-For": "203.0.113.5", "X-Forwarded-Proto": "https"}

    async def believed() -> None:
        response = await h.get("/", host="web.example.com", headers=forwarded)
        assert response.status == 200
        sent = response.json()["headers"]
        assert sent["X-Real-IP"] == "203.0.113.5"
        assert sent["X-Forwarded-For"] == "203.0.113.5"
        assert sent["X-Forwarded-Proto"] == "http"

    await h.eventually(believed, timeout=15)
