"""A dry-run NginxDriver: every candidate rendered and checked by ``nginx -t``; nothing served.

    sync worker --apply_reload(config, settings)--> certificates -> work dir
                                                    render -> nginx -t on a candidate
                                                    -> nginx.conf (kept for inspection;
                                                    no process reads it)
                --apply_dynamic(backends)-----------> nothing (there is no Lua side to POST to)
                --reapply(config)-------------------> nothing (no process can restart)

Used by ``ingressd replay --dry-run``: the sync worker makes exactly the decisions of a live run
and a configuration nginx would refuse is refused here too (``ConfigTestError``), but no port is
bound, so a replay can run next to a live controller.  ``nginx -t`` opens no listening socket.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ingressd.model import Backend, BackendName, Configuration
from ingressd.nginx.applying import Nginx
from ingressd.nginx.routes import RouteTable, TableChanges


class DryRunNginx(Nginx):
    """``Nginx`` without the process: renders and tests, never starts, reloads or POSTs."""

    async def start(self) -> None:
        """Prepare the work dir and check that an empty configuration passes ``nginx -t``."""
        os.replace(await self.prepare(), self.paths.conf)

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None:
        return None  # no Lua side: the sync worker's records count what a live run would send

    async def _switch_to(self, candidate: Path, config: Configuration) -> int:
        os.replace(candidate, self.paths.conf)  # kept for inspection; no process reads it
        return len(config.backends)  # what a live nginx's empty Lua side would be sent

    async def reapply(self, config: Configuration | None) -> None:
        return None

    async def _send_routes(self, table: RouteTable, hosts: Sequence[str] | None) -> None:
        return None  # no Lua side; what Lua would hold is still tracked for the decisions

    async def _send_certificates(self, table: RouteTable) -> None:
        return None

    async def _send_certificate_changes(self, changes: TableChanges) -> None:
        return None

    async def _delete_routes(self, hosts: Sequence[str]) -> None:
        return None

    async def _put_backends(self, config: Configuration) -> None:
        return None

    async def _delete_backends(self, names: Sequence[BackendName]) -> None:
        return None
