"""A dry-run NginxDriver: every candidate rendered and checked by ``nginx -t``; nothing served.

    sync worker --apply_reload(config)--> certificates -> work dir
                                          render -> nginx -t on a candidate -> nginx.conf (kept
                                          for inspection; no process reads it)
                --apply_dynamic(backends)--> counted only (there is no Lua side to POST to)
                --reapply(config)----------> nothing (no process can restart)

Used by ``ingressd replay --dry-run``: the sync worker makes exactly the decisions of a live run
and a configuration nginx would refuse is refused here too (``ConfigTestError``), but no port is
bound, so a replay can run next to a live controller.  ``nginx -t`` opens no listening socket.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path

import structlog

from ingressd.logs import debug_enabled
from ingressd.model import Backend, Configuration
from ingressd.nginx.applying import Nginx, ReloadOutcome, conf_diff, config_hash, read_text
from ingressd.nginx.rendering import DEFAULT_TEMPLATE, NginxPaths, RenderSettings

log = structlog.get_logger("ingressd.nginx")

class DryRunNginx(Nginx):
    """``Nginx`` without the process: renders and tests, never starts, reloads or POSTs."""

    def __init__(
        self, *, settings: RenderSettings, paths: NginxPaths, template: Path = DEFAULT_TEMPLATE
    ) -> None:
        super().__init__(settings=settings, paths=paths, template=template)
        #: Dynamic updates that a live nginx would have received, and their backends.
        self.dynamic_updates = 0
        self.backends_posted = 0
        #: Candidates that passed ``nginx -t``.
        self.checks = 0
        #: The last accepted nginx.conf (``ingressd replay`` compares runs by it).
        self.running_text = ""

    async def start(self) -> None:
        """Prepare the work dir and check that an empty configuration passes ``nginx -t``."""
        os.replace(await self.prepare(), self.paths.conf)
        self.running_text = read_text(self.paths.conf)

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None:
        self.dynamic_updates += 1
        self.backends_posted += len(backends)

    async def apply_reload(self, config: Configuration) -> ReloadOutcome:
        t0 = time.monotonic()
        self._write_certificates(config)
        text = self.render(config)
        t1 = time.monotonic()
        candidate = await self.process.test(text)
        t2 = time.monotonic()
        os.replace(candidate, self.paths.conf)
        self.checks += 1
        previous, self.running_text = self.running_text, text
        self._remove_unused_certificates(config)
        if previous and debug_enabled():
            diff, truncated = conf_diff(previous, text)
            log.debug("nginx.conf changed (dry run)", diff=diff, truncated=truncated)
        return ReloadOutcome(
            config_hash=config_hash(text),
            conf_bytes=len(text),
            render_seconds=t1 - t0,
            test_seconds=t2 - t1,
            reload_seconds=0.0,
        )

    async def reapply(self, config: Configuration | None) -> None:
        return None
