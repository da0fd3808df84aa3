"""nginx's process (nginx/process.py): what is left behind when a check is cancelled."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from ingressd.nginx.process import NginxProcess
from ingressd.nginx.rendering import NginxPaths


async def test_a_cancelled_nginx_t_is_killed_and_leaves_no_candidate(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    slow = tmp_path / "slow-nginx"
    slow.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 60\n")
    slow.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    process = NginxProcess(paths=NginxPaths(work), binary=str(slow))
    check = asyncio.create_task(process.test("events {}\n"))
    while not pid_file.exists() or not pid_file.read_text().strip():
        await asyncio.sleep(0.01)
    pid = int(pid_file.read_text())
    check.cancel()
    try:
        await check
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the check was not cancelled")
    assert not list(work.glob("nginx.conf.candidate-*"))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    raise AssertionError(f"nginx -t (pid {pid}) outlived its cancelled check")
