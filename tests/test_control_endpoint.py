"""nginx's control endpoint (the Lua configuration API) answers on its Unix socket only.

ingressd --LuaEndpoint / health polls--> <work dir>/control/nginx.sock (0600, dir 0700)
tenant --request--> nginx --proxy to any endpoint address, loopback ones included-->
    only nginx's TCP listeners (HTTP, HTTPS): none of them serves /configuration
"""

from __future__ import annotations

import asyncio
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ingressd.build.building import BuildOptions, build_configuration
from ingressd.nginx.process import NGINX_BINARY
from ingressd.nginx.rendering import (
    MAX_SOCKET_PATH,
    PROJECT_ROOT,
    NginxPaths,
    RenderSettings,
    WorkDirError,
    render,
)
from tests.support import objects as o
from tests.support.harness import Harness, free_port
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port

UPSTREAM_VHOST = "nginx.ingress.kubernetes.io/upstream-vhost"


def listens(text: str) -> list[str]:
    """The first argument of every ``listen`` directive of an nginx.conf."""
    return [
        line.split()[1].rstrip(";")
        for line in text.splitlines()
        if line.strip().startswith("listen ")
    ]


def test_rendered_conf_listens_on_tcp_for_http_and_https_only() -> None:
    paths = NginxPaths(Path("/srv/ingressd"))
    served = o.snapshot(
        o.ingress("web", rules=[o.rule("a.test", o.path("/", "web"))]),
        o.service("web"),
        o.endpoint_slice("web", endpoints=["10.0.0.1"]),
    )
    text = render(
        build_configuration(served, BuildOptions()).configuration,
        settings=RenderSettings(http_port=8080, https_port=8443),
        paths=paths,
        generation=1,
    )
    found = listens(text)
    unix = [arg for arg in found if arg.startswith('"unix:')]
    assert unix == ['"unix:/srv/ingressd/control/nginx.sock"']
    assert {arg for arg in found if arg not in unix} == {"8080", "8443"}
    control = text[text.index("# Control server") :]
    assert "location /configuration" in control
    assert listens(control) == unix


def test_work_dir_too_long_for_the_control_socket_is_refused() -> None:
    fits = Path("/" + "w" * (MAX_SOCKET_PATH - len("//control/nginx.sock")))
    assert len(NginxPaths(fits).control_socket) == MAX_SOCKET_PATH
    with pytest.raises(WorkDirError, match=r"too long.* 108 bytes.* at most 107"):
        NginxPaths(Path(f"{fits}w"))


@pytest.mark.nginx
def test_the_socket_path_limit_is_nginxs(tmp_path: Path) -> None:
    """MAX_SOCKET_PATH is the longest path nginx listens on: one byte more is refused."""
    folder = tmp_path / "d"
    folder = Path(f"{folder}{'d' * (MAX_SOCKET_PATH - len(str(folder)) - len('/s'))}")
    folder.mkdir()
    longest = f"{folder}/s"
    assert len(longest) == MAX_SOCKET_PATH

    def nginx_test(socket_path: str) -> subprocess.CompletedProcess[str]:
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            f"pid {tmp_path}/nginx.pid;\nevents {{}}\n"
            f"http {{ server {{ listen unix:{socket_path}; }} }}\n"
        )
        return subprocess.run(
            [NGINX_BINARY, "-t", "-q", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    fits = nginx_test(longest)
    assert fits.returncode == 0, fits.stderr
    too_long = nginx_test(longest + "s")
    assert too_long.returncode == 1
    assert "too long path in the unix domain socket" in too_long.stderr


async def test_render_with_a_work_dir_too_long_says_so_and_exits_2() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingressd.cli",
        "render",
        "--manifests",
        str(PROJECT_ROOT / "manifests" / "demo"),
        "--work-dir",
        "/tmp/" + "x" * 100,
        "--allow-loopback-endpoints",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert out == b""
    assert err.decode().startswith("error: work dir '/tmp/xxx"), err.decode()
    assert "choose a shorter --work-dir" in err.decode()


# -- a running nginx ---------------------------------------------------------------------------


def process_group(pgid: int) -> set[int]:
    """The processes of a process group (nginx's master and its workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.add(int(entry.name))
            except ProcessLookupError:
                pass
    return found


def tcp_listeners(pids: set[int]) -> set[int]:
    """TCP ports on which any of ``pids`` listens, from /proc (whatever nginx.conf says)."""
    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                ports.add(int(local.rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.nginx
async def test_control_socket_is_0600_in_a_0700_directory(harness: Harness) -> None:
    paths = harness.ingressd.nginx.paths
    mode = os.stat(paths.control_socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(os.stat(paths.control_dir).st_mode) == 0o700
    assert paths.control_dir == harness.options.work_dir / "control"


@pytest.mark.nginx
async def test_no_tcp_port_of_nginx_answers_the_control_api_through_loopback_endpoints(
    harness: Harness,
) -> None:
    h = harness
    assert h.options.allow_loopback_endpoints  # so a tenant may point a Service at 127.0.0.1
    master = h.ingressd.nginx.process.pid
    assert master is not None
    ports = tcp_listeners(process_group(master))
    assert ports == {h.http_port, h.https_port}
    # One tenant Service per port nginx listens on, its endpoint 127.0.0.1:<that port>.  The
    # upstream Host is one no server claims, so the HTTP port answers from the catch-all
    # instead of proxying to itself again.
    for port in sorted(ports):
        name = f"p{port}"
        h.write(
            f"{name}.yaml",
            service(name, ports=[service_port(80, "http", target_port=port)]),
            endpoint_slice(name, endpoints=["127.0.0.1"], port=port, port_name="http"),
            ingress(
                name,
                rules=[rule(f"{name}.test", path("/", name))],
                annotations={UPSTREAM_VHOST: "control.invalid"},
            ),
        )
    await h.settled()
    held = {b["name"] for b in await h.ingressd.nginx.endpoint.get_backends()}
    assert held == {f"default-p{port}-80" for port in ports}  # the API works, on its socket
    for port in sorted(ports):
        for uri in ("/configuration/backends", "/generation", "/healthz"):
            resp = await h.get(uri, host=f"p{port}.test")
            where = f"{uri} through 127.0.0.1:{port}"
            assert resp.status in (400, 404), f"{where}: {resp.status} {resp.body[:200]}"
            assert "default-p" not in resp.body, where
            assert resp.headers.get("X-Pod") is None, where


@pytest.mark.skipif(os.geteuid() != 0, reason="workers change user only when nginx starts as root")
async def test_run_with_a_work_dir_behind_a_private_directory_says_so_and_does_not_start(
    tmp_path: Path,
) -> None:
    private = tmp_path / "private"  # pytest's tmp_path is 0700 itself
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ingressd.cli",
        "run",
        "--manifests",
        str(PROJECT_ROOT / "manifests" / "demo"),
        "--work-dir",
        str(private / "work"),
        "--status-port",
        str(free_port()),
        "--http-port",
        str(free_port()),
        "--https-port",
        str(free_port()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1, err.decode()
    assert "could not start" in err.decode()
    assert "out of reach of nginx's workers (user nobody)" in err.decode()
    assert "has mode 0700" in err.decode()
