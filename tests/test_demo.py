"""``make demo``: the seed's example served through a real nginx, then everything stopped."""

from __future__ import annotations

import fcntl
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.harness import free_port

#: The demo's pods listen on fixed addresses (127.0.1.1-3:8000, as its manifests say): two runs
#: of this test on one machine take turns.
LOCK = Path("/tmp/ingressd-demo-test.lock")


@pytest.fixture
def demo_turn() -> Iterator[None]:
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.mark.nginx
def test_demo_serves_www_zkj_com_backend_from_the_three_pods_and_stops_cleanly(
    demo_turn: None, world_readable_tmp: Path
) -> None:
    http_port = free_port()
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ingressd.tools.demo",
            "--http-port",
            str(http_port),
            "--https-port",
            str(free_port()),
            "--status-port",
            str(free_port()),
            "--work-dir",
            str(world_readable_tmp / "work"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    lines: list[str] = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        answers = [
            re.search(r"GET www\.zkj\.com/backend -> (\d+) from (\S+)", line) for line in lines
        ]
        served = [(m.group(1), m.group(2)) for m in answers if m]
        assert [status for status, _ in served] == ["200", "200", "200"], "".join(lines)
        assert len({pod for _, pod in served}) == 3, served
        body = subprocess.run(
            ["curl", "-s", "-H", "Host: www.zkj.com", f"http://127.0.0.1:{http_port}/backend"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
        assert json.loads(body)["pod"] in {pod for _, pod in served}
    finally:
        demo.send_signal(signal.SIGINT)
        rest, _ = demo.communicate(timeout=60)
    assert demo.returncode == 0, rest
    assert "demo stopped" in rest
