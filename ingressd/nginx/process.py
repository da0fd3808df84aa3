"""The nginx process: one master as ingressd's child, with its own prefix and work dir.

    sync worker --test(text)--> ``nginx -t`` on a candidate file next to nginx.conf
                --install(text)--> atomic rename over nginx.conf
                --reload(generation)--> SIGHUP, then poll the control socket until the new
                                        workers answer with the new generation
    supervise() --nginx died--> kill what is left of its process group, start again, call
                                ``on_restart`` so the sync worker re-applies the running model
    stop() --> SIGQUIT (graceful: workers finish their requests), SIGKILL after a timeout

nginx runs in its own session (``start_new_session``), so that Ctrl-C on a terminal reaches
ingressd only, and so that the master's process group still names the workers if the master is
killed: leftover workers would otherwise keep the listening sockets.

The control endpoint is the Unix socket ``NginxPaths.control_socket``, in a directory only
ingressd's user may enter (0700); nginx creates the socket 0666, and ingressd makes it 0600
once nginx has started.  A master that was killed leaves its socket file behind: ``start``
removes it when nothing answers on it (nginx cannot bind over it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import stat
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import structlog

from ingressd.nginx import modsecurity
from ingressd.nginx.rendering import PROJECT_ROOT, NginxPaths, WorkDirError

log = structlog.get_logger("ingressd.nginx")

NGINX_BINARY = "/usr/sbin/nginx"
DEFAULT_LUA_DIR = PROJECT_ROOT / "lua"


class NginxError(RuntimeError):
    """nginx refused a configuration or did not do what was asked in time."""


def _check_workers_reach(work: Path, user: str) -> None:
    """Raise ``WorkDirError`` unless every directory above ``work`` lets others through.

    nginx's workers run as ``user`` and read the Lua code and the logs' directory from the work
    dir: behind a 0700 parent every Lua-routed request would answer 500.
    """
    for parent in work.resolve().parents:
        mode = parent.stat().st_mode if parent.exists() else 0o755
        if not mode & 0o001:
            raise WorkDirError(
                f"the work dir {work} is out of reach of nginx's workers (user {user}): "
                f"{parent} has mode {mode & 0o777:04o}; choose a --work-dir whose parents "
                "others may traverse"
            )


class ConfigTestError(NginxError):
    """``nginx -t`` rejected the candidate configuration; its message is the error text."""


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


class NginxProcess:
    """Start, test, reload, supervise and stop one nginx."""

    def __init__(
        self,
        *,
        paths: NginxPaths,
        binary: str = NGINX_BINARY,
        lua_dir: Path = DEFAULT_LUA_DIR,
        worker_user: tuple[str, str] | None = None,
        start_timeout: float = 10.0,
        reload_timeout: float = 15.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.paths = paths
        self.binary = binary
        self.lua_dir = lua_dir
        self.worker_user = worker_user
        self.start_timeout = start_timeout
        self.reload_timeout = reload_timeout
        self.stop_timeout = stop_timeout
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._session: aiohttp.ClientSession | None = None
        #: The generation written in the nginx.conf that is on disk now.
        self.installed_generation = 0

    # -- preparation -------------------------------------------------------------------------

    def prepare_work_dir(self) -> None:
        """Create the work dir layout, copy the Lua code into it and write ModSecurity's base
        configuration and CRS include (``ingressd.nginx.modsecurity``).

        The copy makes the running nginx independent of the checkout (and readable by the
        unprivileged worker user when ingressd runs as root).
        """
        work = self.paths.work_dir
        for sub in ("logs", "temp", "certs", "control", "modsecurity", "temp/modsecurity"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        try:
            waf_files = modsecurity.config_files(
                self.paths.modsecurity, str(self.paths.logs), str(work / "temp" / "modsecurity")
            )
        except ValueError as exc:
            # Rendering refuses the WAF with the same reason when an Ingress asks for it.
            log.warning("modsecurity unavailable", reason=str(exc))
            waf_files = {}
        for name, text in waf_files.items():
            (Path(self.paths.modsecurity) / name).write_text(text)
        os.chmod(work / "certs", 0o700)
        os.chmod(self.paths.control_dir, 0o700)
        lua_target = Path(self.paths.lua)
        if lua_target.exists():
            shutil.rmtree(lua_target)
        shutil.copytree(self.lua_dir, lua_target, ignore=shutil.ignore_patterns("tests"))
        for root, _dirs, files in os.walk(lua_target):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
        os.chmod(work, 0o755)
        if self.worker_user is not None and os.geteuid() == 0:
            # Workers write request bodies and proxy buffers here.
            uid, gid = user_ids(*self.worker_user)
            for root, dirs, _files in os.walk(work / "temp"):
                os.chown(root, uid, gid)
                for d in dirs:
                    os.chown(os.path.join(root, d), uid, gid)

    # -- configuration -----------------------------------------------------------------------

    async def test(self, text: str) -> Path:
        """Write ``text`` to a candidate file and run ``nginx -t`` on it.

        Returns the candidate's path (to ``install``); raises ``ConfigTestError`` with nginx's
        own message when the configuration is rejected.
        """
        stamp = f"{os.getpid()}-{time.monotonic_ns()}"
        candidate = self.paths.work_dir / f"nginx.conf.candidate-{stamp}"
        candidate.write_text(text)
        try:
            # A cancelled start is killed by asyncio itself; a cancelled check by us.
            proc = await asyncio.create_subprocess_exec(
                self.binary,
                "-t",
                "-q",
                "-p",
                str(self.paths.work_dir),
                "-c",
                str(candidate),
                "-e",
                "stderr",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await proc.communicate()
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
                raise
        except BaseException:
            # Cancelled (ingressd stopping): neither the check nor its candidate outlives it.
            candidate.unlink(missing_ok=True)
            raise
        if proc.returncode != 0:
            candidate.unlink(missing_ok=True)
            message = (err or out).decode(errors="replace").strip()
            raise ConfigTestError(message.replace(str(candidate), "nginx.conf"))
        return candidate

    def install(self, candidate: Path, generation: int) -> None:
        """Make a tested candidate the configuration nginx loads: atomic rename, fsynced."""
        with candidate.open("rb") as f:
            os.fsync(f.fileno())
        os.replace(candidate, self.paths.conf)
        fd = os.open(self.paths.work_dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.installed_generation = generation

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc and self._proc.returncode is None else None

    async def start(self, generation: int) -> None:
        """Start nginx on the installed nginx.conf and wait until it serves ``generation``."""
        if self.worker_user is not None and os.geteuid() == 0:
            _check_workers_reach(self.paths.work_dir, self.worker_user[0])
        self._stopping = False
        self._remove_stale_socket()
        self._proc = await asyncio.create_subprocess_exec(
            self.binary,
            "-p",
            str(self.paths.work_dir),
            "-c",
            str(self.paths.conf),
            "-e",
            self.paths.error_log,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        log.info("nginx started", pid=self._proc.pid)
        try:
            await self.wait_for_generation(generation, timeout=self.start_timeout)
        except NginxError:
            await self.kill()
            raise
        # nginx binds it 0666; the directory already keeps others out, this is belt and braces.
        try:
            os.chmod(self.paths.control_socket, 0o600)
        except OSError as exc:
            log.warning(
                "cannot chmod the control socket", path=self.paths.control_socket, error=str(exc)
            )

    def _remove_stale_socket(self) -> None:
        """Remove the control socket a killed nginx left; refuse to start when one answers."""
        path = self.paths.control_socket
        try:
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                return  # not ours to remove: nginx will say it cannot bind
        except FileNotFoundError:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except (ConnectionRefusedError, FileNotFoundError):
                pass  # nobody listens: left by a killed master
            except OSError as exc:
                raise NginxError(f"cannot check the control socket {path}: {exc}") from exc
            else:
                raise NginxError(
                    f"another process answers on the control socket {path}: is another "
                    "ingressd running with this work dir?"
                )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    async def reload(self, generation: int) -> None:
        """SIGHUP the master and wait until new workers answer with ``generation``."""
        pid = self.pid
        if pid is None:
            raise NginxError("nginx is not running")
        os.kill(pid, signal.SIGHUP)
        await self.wait_for_generation(generation, timeout=self.reload_timeout)

    async def wait_for_generation(self, generation: int, *, timeout: float) -> None:
        """Poll ``/generation`` on fresh connections until it answers ``generation`` twice.

        Each poll is a new connection, so it is accepted by a worker that still listens: once
        the old workers have closed their listeners, only new ones answer.
        """
        deadline = time.monotonic() + timeout
        wanted = str(generation)
        seen = 0
        # Small reloads answer within ~10 ms; a 10k-server one takes seconds, where polling
        # every 10 ms cost ~0.5 s of controller CPU: back off from 10 ms to 100 ms.
        pause = 0.01
        while True:
            if self._proc is None or self._proc.returncode is not None:
                raise NginxError(f"nginx exited: {self._exit_message()}")
            got = await self._get("/generation")
            if got == wanted:
                seen += 1
                if seen >= 2:
                    return
                continue
            seen = 0
            if time.monotonic() > deadline:
                raise NginxError(
                    f"nginx did not serve generation {generation} within {timeout:.0f}s "
                    f"(answering {got!r}): {_tail(Path(self.paths.error_log), 600)}"
                )
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 0.1)

    async def healthy(self) -> bool:
        """True when nginx answers on its control socket."""
        return self.pid is not None and (await self._get("/healthz")) == "ok\n"

    async def _get(self, path: str) -> str | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.UnixConnector(self.paths.control_socket, force_close=True),
                timeout=aiohttp.ClientTimeout(total=2),
            )
        try:
            async with self._session.get(f"http://localhost{path}") as resp:
                if resp.status != 200:
                    return None
                return await resp.text()
        except (TimeoutError, aiohttp.ClientError, OSError):
            return None

    def _exit_message(self) -> str:
        code = self._proc.returncode if self._proc else None
        return f"exit code {code}; {_tail(Path(self.paths.error_log), 600)}"

    async def supervise(self, on_restart: Callable[[], Awaitable[None]]) -> None:
        """Run forever: when nginx dies unexpectedly, clean up, restart it and call back."""
        backoff = 0.1
        while True:
            proc = self._proc
            if proc is None:
                await asyncio.sleep(0.1)
                continue
            await proc.wait()
            if self._stopping:
                return
            log.error("nginx died", pid=proc.pid, code=proc.returncode)
            _kill_group(proc.pid)
            await asyncio.sleep(backoff)
            try:
                self.restarts += 1
                await self.start(generation=self.installed_generation)
            except NginxError as exc:
                log.error("nginx restart failed", error=str(exc))
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            await on_restart()

    async def stop(self) -> None:
        """Graceful quit: SIGQUIT, then SIGKILL of the whole group after ``stop_timeout``."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGQUIT)
            try:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for can lose a cancellation.
                async with asyncio.timeout(self.stop_timeout):
                    await proc.wait()
            except TimeoutError:
                log.warning("nginx did not quit in time; killing it", pid=proc.pid)
            _kill_group(proc.pid)
            await proc.wait()
        if self._session is not None:
            await self._session.close()

    async def kill(self) -> None:
        """Kill nginx and its workers at once (tests, failed starts)."""
        self._stopping = True
        proc = self._proc
        if proc is not None:
            _kill_group(proc.pid)
            await proc.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def user_ids(user: str, group: str) -> tuple[int, int]:
    """uid and gid of a user and group name (nginx's worker user)."""
    import grp
    import pwd

    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid
