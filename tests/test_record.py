"""Trace recording: what the informers see, one JSON line each (docs/trace-format.md).

FakeApiServer --list/watch--> KubernetesSource --record()--> TRACE.jsonl
(in-process, and ``ingressd record`` as a real subprocess)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ingressd.cluster.client import api_client
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.tools.record import REDACTED, record
from tests.support.fakeapi import FakeApiServer
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    self_signed_certificate,
    service,
    tls_secret,
)

JSON = dict[str, Any]
LINE = re.compile(r'^\{"t":\d+\.\d{6},"type":"(ADDED|MODIFIED|DELETED)","object":\{.*\}\}$')


def read_trace(path: Path) -> list[JSON]:
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for line in lines:
        assert LINE.match(line), line[:200]
    return [json.loads(line) for line in lines]


def sent(obj: JSON, type_: str) -> tuple[str, str, str]:
    """What a change made through the API must appear as: (kind, type, resourceVersion)."""
    return obj["kind"], type_, obj["metadata"]["resourceVersion"]


def recorded(events: list[JSON]) -> list[tuple[str, str, str]]:
    return [
        (e["object"]["kind"], e["type"], e["object"]["metadata"]["resourceVersion"]) for e in events
    ]


def per_kind(keys: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str, str]]]:
    out: dict[str, list[tuple[str, str, str]]] = {}
    for key in keys:
        out.setdefault(key[0], []).append(key)
    return out


async def until_lines(path: Path, count: int, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not path.exists() or len(path.read_text().splitlines()) < count:
            await asyncio.sleep(0.02)


@asynccontextmanager
async def recording(api: FakeApiServer, out: Path, **options: Any) -> AsyncIterator[asyncio.Event]:
    """``record()`` running in the background until the block ends; yields its stop event."""
    client = await api_client(api.write_kubeconfig(out.parent / "kubeconfig"))
    stop = asyncio.Event()
    task = asyncio.create_task(
        record(KubernetesSource(client, backoff=(0.05, 0.5)), out, stop=stop, **options)
    )
    try:
        yield stop
    finally:
        stop.set()
        await task
        await client.close()


def tls(name: str) -> JSON:
    cert, key = self_signed_certificate(f"{name}.example")
    return tls_secret(name, cert_pem=cert, key_pem=key)


async def test_a_recorded_trace_holds_exactly_the_events_sent(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    expected = [
        sent(fake_api.create(service("web")), "ADDED"),
        sent(fake_api.create(tls("web")), "ADDED"),
    ]
    async with recording(fake_api, out):
        await until_lines(out, 2)
        await fake_api.wait_for_watches(5)
        expected.append(sent(fake_api.create(endpoint_slice("web")), "ADDED"))
        web_ingress = fake_api.create(ingress("web", rules=[rule("web.example", path("/"))]))
        expected.append(sent(web_ingress, "ADDED"))
        secret = fake_api.get("Secret", "web")
        secret["data"]["extra"] = "eA=="
        expected.append(sent(fake_api.update(secret), "MODIFIED"))
        web_ingress["spec"]["rules"][0]["host"] = "www.example"
        expected.append(sent(fake_api.update(web_ingress), "MODIFIED"))
        expected.append(sent(fake_api.delete("Service", "web"), "DELETED"))
        await until_lines(out, len(expected))
        await asyncio.sleep(0.1)  # nothing more may come
    events = read_trace(out)
    got = recorded(events)
    # One watch stream per kind: in order within a kind, interleaved across kinds.
    assert per_kind(got) == per_kind(expected)
    assert len(got) == len(expected)
    times = [e["t"] for e in events]
    assert times[:2] == [0.0, 0.0]  # the initial list is the state at the start
    assert all(t > 0 for t in times[2:])
    secrets = [e["object"] for e in events if e["object"]["kind"] == "Secret"]
    assert secrets[0]["data"] == {"tls.crt": REDACTED, "tls.key": REDACTED}
    assert secrets[1]["data"] == {"tls.crt": REDACTED, "tls.key": REDACTED, "extra": REDACTED}
    assert events[-1]["object"]["apiVersion"] in (
        "v1",
        "networking.k8s.io/v1",
        "discovery.k8s.io/v1",
    )


async def test_keep_secret_data_keeps_the_values_as_sent(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    secret = fake_api.create(tls("web"))
    async with recording(fake_api, out, keep_secret_data=True):
        await until_lines(out, 1)
    [event] = read_trace(out)
    assert event["object"]["data"] == secret["data"]
    assert event["object"] == {"apiVersion": "v1", **fake_api.get("Secret", "web")}


async def test_ingressd_record_writes_until_sigint_and_flushes_every_line(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    fake_api.create(service("web"))
    kubeconfig = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingressd.cli",
        "--log-format",
        "json",
        "record",
        "--kubeconfig",
        str(kubeconfig),
        "--out",
        str(out),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await until_lines(out, 1, timeout=20)
        await fake_api.wait_for_watches(5)
        created = fake_api.create(service("api"))
        await until_lines(out, 2)  # on disk while the recorder still runs
    finally:
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(15):
            _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert recorded(read_trace(out))[-1] == sent(created, "ADDED")


async def test_ingressd_record_stops_after_its_duration(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    fake_api.create(service("web"))
    kubeconfig = fake_api.write_kubeconfig(tmp_path / "kubeconfig")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingressd.cli",
        "record",
        "--kubeconfig",
        str(kubeconfig),
        "--out",
        str(out),
        "--duration",
        "1",
        "--watch-namespace",
        "default",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(20):
        _, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-2000:]
    assert recorded(read_trace(out)) == [("Service", "ADDED", "1")]
