"""Supervision: the controller's long-running tasks, restarted when one dies.

    Supervisor.spawn(name, factory) --> task running factory()
        returns           -> done (a loop that ends by itself is not restarted)
        raises            -> logged with its traceback, counted, restarted after a backoff
                             (0.5 s doubling to 30 s; reset once a run lasted 60 s)
        cancelled         -> stop() or shutdown: not restarted
    Supervisor.down       names of the tasks dead and waiting for their restart (/healthz fails)

A task that dies is a defect of ingressd, never of the input: every parser turns bad input into
a Problem.  Restarting keeps the controller applying changes; ``/healthz`` reports the task down
meanwhile, so a task that cannot stay up gets the pod restarted by Kubernetes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("ingressd.app.supervision")

#: Makes a fresh coroutine of the task's loop for each (re)start.
TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """Owns the named background tasks of one controller."""

    def __init__(
        self,
        *,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        healthy_after: float = 60.0,
        on_restart: Callable[[str], None] | None = None,
    ) -> None:
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.healthy_after = healthy_after
        self._on_restart = on_restart
        self._runners: dict[str, asyncio.Task[None]] = {}
        #: Tasks that died and wait for their restart.
        self.down: set[str] = set()
        #: Restarts per task name.
        self.restarts: dict[str, int] = {}

    def spawn(self, name: str, factory: TaskFactory) -> None:
        if name in self._runners:
            raise ValueError(f"task {name!r} is already supervised")
        self._runners[name] = asyncio.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        loop = asyncio.get_running_loop()
        backoff = self.backoff_initial
        while True:
            started = loop.time()
            try:
                await factory()
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - started >= self.healthy_after:
                    backoff = self.backoff_initial
                self.down.add(name)
                log.exception("internal task died; restarting", task=name, restart_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                self.down.discard(name)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                if self._on_restart is not None:
                    self._on_restart(name)
                continue
            return

    async def stop(self) -> None:
        """Cancel every task and wait for them (reverse start order)."""
        tasks = list(self._runners.values())[::-1]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._runners.clear()
        self.down.clear()
