"""Trace recording: what the informers see, one JSON line each (docs/trace-format.md).

FakeApiServer --list/watch--> KubernetesSource --record()--> TRACE.jsonl
(in-process, and ``ingressd record`` as a real subprocess); line 1 is the header.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ingressd.app.runtime import Options
from ingressd.cluster.client import api_client
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.sources.trace import TraceHeader, is_redacted
from ingressd.tools.record import record, redact, redacted_value, trace_header
from ingressd.tools.replay.replaying import replay
from tests.support.fakeapi import FakeApiServer
from tests.support.objects import (
    endpoint_slice,
    ingress,
    ingress_class,
    path,
    rule,
    self_signed_certificate,
    service,
    tls,
    tls_secret,
)

JSON = dict[str, Any]
LINE = re.compile(r'^\{"t":\d+\.\d{6},"type":"(ADDED|MODIFIED|DELETED)","object":\{.*\}\}$')
DIGEST = re.compile(r"^REDACTED:hmac-sha256:[0-9a-f]{16}$")


def read_header_and_trace(path: Path) -> tuple[TraceHeader, list[JSON]]:
    first, *lines = [line for line in path.read_text().splitlines() if line.strip()]
    header = TraceHeader.from_json(1, json.loads(first))
    for line in lines:
        assert LINE.match(line), line[:200]
    return header, [json.loads(line) for line in lines]


def read_trace(path: Path) -> list[JSON]:
    return read_header_and_trace(path)[1]


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
    """Until ``count`` event lines (after the header) are on disk."""
    async with asyncio.timeout(timeout):
        while not path.exists() or len(path.read_text().splitlines()) < count + 1:
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


def tls_for(name: str) -> JSON:
    cert, key = self_signed_certificate(f"{name}.example")
    return tls_secret(name, cert_pem=cert, key_pem=key)


async def test_a_recorded_trace_holds_exactly_the_events_sent(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    expected = [
        sent(fake_api.create(service("web")), "ADDED"),
        sent(fake_api.create(tls_for("web")), "ADDED"),
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
    first, second = secrets[0]["data"], secrets[1]["data"]
    assert set(first) == {"tls.crt", "tls.key"}
    assert set(second) == {"tls.crt", "tls.key", "extra"}
    assert all(DIGEST.match(value) for value in [*first.values(), *second.values()])
    # Unchanged values keep their digest: the trace shows which value changed, not what it is.
    assert (second["tls.crt"], second["tls.key"]) == (first["tls.crt"], first["tls.key"])
    assert first["tls.crt"] != first["tls.key"]
    assert events[-1]["object"]["apiVersion"] in (
        "v1",
        "networking.k8s.io/v1",
        "discovery.k8s.io/v1",
    )


async def test_keep_secret_data_keeps_the_values_as_sent(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    secret = fake_api.create(tls_for("web"))
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
    header, events = read_header_and_trace(out)
    assert recorded(events) == [("Service", "ADDED", "1")]
    assert header.recorder == "ingressd 0.1.0"
    assert header.watch_namespace == "default" and header.configmap is None
    assert header.options == {
        "watch-namespace": "default",
        "configmap": None,
        "resync-period": 600.0,
        "keep-secret-data": False,
    }


async def test_the_header_names_the_recorder_and_the_options_recorded_with(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    fake_api.create(service("web"))
    header = trace_header(configmap="ingressd/ingressd-controller", keep_secret_data=True)
    async with recording(fake_api, out, keep_secret_data=True, header=header):
        await until_lines(out, 1)
    first_line = out.read_text().splitlines()[0]
    assert json.loads(first_line)["format"] == "ingressd-trace"
    read, events = read_header_and_trace(out)
    assert read == header
    assert read.configmap == "ingressd/ingressd-controller"
    assert read.options["keep-secret-data"] is True
    assert read.started_at is not None and read.started_at.endswith("Z")
    assert recorded(events) == [("Service", "ADDED", "1")]


def test_a_redacted_value_is_a_keyed_digest_of_the_bytes_it_holds() -> None:
    key, other_key = b"k" * 32, b"o" * 32
    crt = base64.b64encode(b"-----BEGIN CERTIFICATE----- one").decode()
    rotated = base64.b64encode(b"-----BEGIN CERTIFICATE----- two").decode()
    value = redacted_value(crt, key, encoded=True)
    assert DIGEST.match(value) and is_redacted(value)
    assert redacted_value(crt, key, encoded=True) == value  # stable within a recording
    assert redacted_value(rotated, key, encoded=True) != value  # a rotation shows
    assert redacted_value(crt, other_key, encoded=True) != value  # another recording: unrelated
    # Not a plain hash that a guess could be checked against.
    plain = hashlib.sha256(b"-----BEGIN CERTIFICATE----- one").hexdigest()[:16]
    assert not value.endswith(plain)
    # data (base64) and stringData (text) holding the same bytes give the same digest.
    assert redacted_value("hunter2", key, encoded=False) == redacted_value(
        base64.b64encode(b"hunter2").decode(), key, encoded=True
    )


def test_redact_replaces_secret_values_only() -> None:
    key = b"k" * 32
    secret = {"kind": "Secret", "metadata": {"name": "s"}, "data": {"a": "eA=="}}
    secret["stringData"] = {"b": "plain"}
    redacted = redact(secret, key)
    assert redacted["metadata"] == secret["metadata"]
    assert DIGEST.match(redacted["data"]["a"]) and DIGEST.match(redacted["stringData"]["b"])
    assert secret["data"] == {"a": "eA=="}  # the object itself is left alone
    config = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "x"}}
    assert redact(config, key) is config


async def test_a_recorded_certificate_rotation_replays_as_a_certificate_update(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    out = tmp_path / "trace.jsonl"
    fake_api.create(ingress_class())
    fake_api.create(service("web"))
    fake_api.create(endpoint_slice("web", endpoints=["10.0.0.1"]))
    fake_api.create(tls_for("web"))
    fake_api.create(
        ingress(
            "web",
            rules=[rule("web.example", path("/"))],
            tls_entries=[tls("web.example", secret_name="web")],
        )
    )
    async with recording(fake_api, out):
        await until_lines(out, 5)
        await fake_api.wait_for_watches(5)
        secret = fake_api.get("Secret", "web")
        secret["data"] = tls_for("web")["data"]  # cert-manager renewed it
        fake_api.update(secret)
        await until_lines(out, 6)
    events = read_trace(out)
    assert all(
        DIGEST.match(v)
        for e in events
        if e["object"]["kind"] == "Secret"
        for v in e["object"]["data"].values()
    )
    result = await replay(
        out, Options(work_dir=tmp_path / "w", status_port=0, status_address="127.0.0.1")
    )
    first, rotation = result.syncs
    assert first.reasons == ("first sync",)
    assert (rotation.decision, rotation.result) == ("dynamic", "ok")  # --routing lua: no reload
    assert any("certificate" in reason for reason in rotation.reasons), rotation.reasons
    assert result.summary()["placeholder_certificates"] == 2
