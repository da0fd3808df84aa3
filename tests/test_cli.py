"""The command line as users run it: ``ingressd render`` and ``ingressd run`` as processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from ingressd.nginx.rendering import PROJECT_ROOT
from tests.support.backends import EchoPods
from tests.support.harness import free_port, pod_addresses
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port

pytestmark = pytest.mark.nginx

INGRESSD = [sys.executable, "-m", "ingressd.cli"]


async def render_demo(*flags: str) -> tuple[str, str]:
    """``ingressd render`` of the demo's manifests: (stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        *INGRESSD,
        "render",
        "--manifests",
        str(PROJECT_ROOT / "manifests" / "demo"),
        *flags,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode(), err.decode()


async def test_render_prints_the_demo_configuration() -> None:
    text, err = await render_demo("--allow-loopback-endpoints")
    assert 'server_name "www.zkj.com";' in text
    assert 'location = "/backend"' in text and 'location "/backend/"' in text
    assert '"default-nginx-svc-80"' in text
    assert "skipped" not in err


async def test_render_refuses_the_demo_loopback_pods_without_the_flag() -> None:
    _, err = await render_demo()
    skipped = [line for line in err.splitlines() if line.startswith("# skipped: EndpointSlice")]
    assert len(skipped) == 3, err
    assert all("may not be in the loopback range" in line for line in skipped), err


async def test_run_reports_a_missing_manifests_directory() -> None:
    proc = await asyncio.create_subprocess_exec(
        *INGRESSD,
        "run",
        "--manifests",
        "/nonexistent/dir",
        "--work-dir",
        "/tmp/x",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert "/nonexistent/dir" in err.decode()


class Instance:
    """``ingressd run`` as a child process over its own manifests dir and ports."""

    def __init__(self, root: Path, host: str, pod_port: int, addresses: list[str]) -> None:
        self.root = root
        self.http_port = free_port()
        self.status_port = free_port()
        manifests = root / "manifests"
        manifests.mkdir(parents=True)
        objects = [
            service("web", ports=[service_port(80, "http", target_port=pod_port)]),
            endpoint_slice("web", endpoints=addresses, port=pod_port, port_name="http"),
            ingress("web", rules=[rule(host, path("/", "web"))]),
        ]
        (manifests / "all.yaml").write_text(yaml.safe_dump_all(objects))
        self.args = [
            *INGRESSD,
            "--log-format",
            "json",
            "run",
            "--manifests",
            str(manifests),
            "--http-port",
            str(self.http_port),
            "--https-port",
            str(free_port()),
            "--status-port",
            str(self.status_port),
            "--status-address",
            "127.0.0.1",
            "--work-dir",
            str(root / "work"),
            "--worker-processes",
            "1",
            "--allow-loopback-endpoints",
        ]
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{self.status_port}/healthz") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("ingressd did not become healthy")

    def nginx_pid(self) -> int:
        return int((self.root / "work" / "nginx.pid").read_text())


async def test_two_instances_run_side_by_side_and_quit_gracefully_on_sigterm(
    world_readable_tmp: Path,
) -> None:
    addresses = pod_addresses(2)
    pod_port = free_port()
    pods = EchoPods({addresses[0]: "web-0", addresses[1]: "web-1"}, pod_port)
    await pods.start()
    first = Instance(world_readable_tmp / "a", "a.test", pod_port, addresses[:1])
    second = Instance(world_readable_tmp / "b", "b.test", pod_port, addresses[1:])
    try:
        await asyncio.gather(first.start(), second.start())
        async with aiohttp.ClientSession() as session:
            for inst, host, pod in ((first, "a.test", "web-0"), (second, "b.test", "web-1")):
                async with session.get(
                    f"http://127.0.0.1:{inst.http_port}/", headers={"Host": host}
                ) as resp:
                    assert resp.status == 200 and resp.headers["X-Pod"] == pod

            # A slow request is in flight when SIGTERM arrives: it still completes.
            nginx_pid = first.nginx_pid()
            slow = asyncio.create_task(
                session.get(
                    f"http://127.0.0.1:{first.http_port}/?sleep=1.5", headers={"Host": "a.test"}
                )
            )
            await asyncio.sleep(0.4)
            assert first.proc is not None
            first.proc.send_signal(signal.SIGTERM)
            resp = await slow
            assert resp.status == 200
            resp.release()
            assert await asyncio.wait_for(first.proc.wait(), 20) == 0
            with pytest.raises(ProcessLookupError):
                os.kill(nginx_pid, 0)
            # The other instance never noticed.
            async with session.get(
                f"http://127.0.0.1:{second.http_port}/", headers={"Host": "b.test"}
            ) as resp:
                assert resp.status == 200
    finally:
        for inst in (first, second):
            if inst.proc is not None and inst.proc.returncode is None:
                inst.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(inst.proc.wait(), 20)
        await pods.stop()
