"""The command line as users run it: ``ingressd render``, ``run`` and ``replay`` as processes,
and what the parser accepts (global options after the command, each command's own flags)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from ingressd.cli.arguments import parser
from ingressd.nginx.rendering import PROJECT_ROOT
from tests.support.backends import EchoPods
from tests.support.harness import free_port, pod_addresses
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port

INGRESSD = [sys.executable, "-m", "ingressd.cli"]
SAMPLE_TRACE = PROJECT_ROOT / "examples" / "traces" / "configmap.jsonl"

#: A minimal command line of each subcommand.
COMMANDS = {
    "run": ["run", "--manifests", "dir"],
    "check": ["check", "--manifests", "dir"],
    "render": ["render", "--manifests", "dir"],
    "record": ["record", "--out", "t.jsonl"],
    "replay": ["replay", "t.jsonl"],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_global_options_are_accepted_after_every_command(command: str) -> None:
    argv = COMMANDS[command]
    after = parser().parse_args([*argv, "--log-level", "debug", "--log-format", "json"])
    assert (after.command, after.log_level, after.log_format) == (command, "debug", "json")
    before = parser().parse_args(["--log-level", "error", "--log-format", "console", *argv])
    assert (before.log_level, before.log_format) == ("error", "console")
    # Given on both sides, the one after the command wins; given on neither, the defaults.
    both = parser().parse_args(["--log-level", "error", *argv, "--log-level", "info"])
    assert (both.log_level, both.log_format) == ("info", "auto")
    neither = parser().parse_args(argv)
    assert (neither.log_level, neither.log_format) == (None, "auto")


@pytest.mark.parametrize("command", ["run", "check", "render"])
def test_manifests_is_an_option_of_the_commands_that_read_manifests(command: str) -> None:
    assert parser().parse_args(COMMANDS[command]).manifests == Path("dir")


async def test_replay_takes_the_log_level_after_the_command(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *INGRESSD,
        "replay",
        "--log-level",
        "debug",
        "--log-format",
        "json",
        str(SAMPLE_TRACE),
        "--fast",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    # debug: the "nothing" syncs are logged (at warning, replay's default, nothing is)
    assert '"decision": "nothing"' in err.decode()
    assert "final config hash" in out.decode()


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


@pytest.mark.nginx
async def test_render_prints_the_demo_configuration_and_the_route_table_lua_holds() -> None:
    text, err = await render_demo("--allow-loopback-endpoints")
    assert 'server_name "www.zkj.com";' not in text  # one catch-all server
    conf, _, table = text.partition("# --routing lua: the route table ingressd sends to Lua")
    assert 'require("ingressd.router").route()' in conf
    entry = next(line for line in table.splitlines() if line.startswith("# www.zkj.com: "))
    route = json.loads(entry.removeprefix("# www.zkj.com: "))
    backend = next(loc for loc in route["locations"] if loc["path"] == "/backend")
    assert (backend["backend"], backend["type"]) == ("default-nginx-svc-80", "prefix")
    assert f"location @{backend['class']} {{" in conf
    assert "skipped" not in err


@pytest.mark.nginx
async def test_render_prints_the_demo_configuration_with_nginx_routing() -> None:
    text, err = await render_demo("--allow-loopback-endpoints", "--routing", "nginx")
    assert 'server_name "www.zkj.com";' in text
    assert 'location = "/backend"' in text and 'location "/backend/"' in text
    assert '"default-nginx-svc-80"' in text
    assert "skipped" not in err


@pytest.mark.nginx
async def test_render_refuses_the_demo_loopback_pods_without_the_flag() -> None:
    _, err = await render_demo()
    skipped = [line for line in err.splitlines() if line.startswith("# skipped: EndpointSlice")]
    assert len(skipped) == 3, err
    assert all("may not be in the loopback range" in line for line in skipped), err


@pytest.mark.nginx
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
        # Up to 30 s: on a loaded machine importing ingressd alone can take several seconds.
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
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


@pytest.mark.nginx
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
