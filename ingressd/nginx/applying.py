"""Applying a Configuration to a running nginx: the two paths of the sync worker.

    dynamic:    changed backends --POST--> Lua endpoint (Unix socket in the work dir)
    structural: certificates -> work dir (0600)
                Configuration + RenderSettings --render--> text --nginx -t--> candidate
                    --rename--> nginx.conf
                new/changed backends --POST--> Lua (before the reload: the shared dict survives
                    it, so new workers find their backends on their first request)
                SIGHUP --> wait for the new generation --> PUT the whole backend set (prunes
                    backends that no location uses any more)
                --routing lua: then the route entries and certificates that changed (the
                    shared dict kept the rest); everything again after nginx restarted or a
                    send to Lua failed (what Lua holds is not known then)

``Nginx`` owns the process, the Lua endpoint client and the files of one work dir.  The sync
worker only sees the ``NginxDriver`` protocol, so a dry run can check configurations without
serving anything.
"""

from __future__ import annotations

import datetime
import difflib
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ingressd.logs import debug_enabled
from ingressd.model import Backend, BackendName, Configuration, Server
from ingressd.nginx.dynamic import LuaEndpoint
from ingressd.nginx.process import NginxProcess, user_ids
from ingressd.nginx.rendering import (
    DEFAULT_TEMPLATE,
    NginxPaths,
    RenderSettings,
    render,
    route_context,
)
from ingressd.nginx.routes import (
    RouteTable,
    TableChanges,
    keeps_own_block,
    route_table,
    table_changes,
)

log = structlog.get_logger("ingressd.nginx")


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    config_hash: int
    conf_bytes: int
    render_seconds: float
    test_seconds: float
    reload_seconds: float
    #: Backends sent to Lua with the reload (only those it did not hold, or all to prune).
    backends_sent: int = 0


class NginxDriver(Protocol):
    """What the sync worker needs from nginx."""

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None: ...

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        """Render ``config`` with ``settings`` (the command line's, the ConfigMap's on top),
        test it, make it what nginx serves.  ``table`` (``--routing lua``): a route table the
        caller made lately (``config``'s is made from it)."""
        ...

    async def reapply(self, config: Configuration | None) -> None: ...

    async def check(self, config: Configuration, settings: RenderSettings) -> None:
        """``nginx -t`` on ``config`` without applying it; ``ConfigTestError`` (or
        ``RenderError``) when it would be refused."""
        ...

    @property
    def routes_held(self) -> RouteTable | None:
        """``--routing lua``: the route table Lua holds (None before the first)."""
        ...

    @property
    def rendered_classes(self) -> frozenset[str]:
        """``--routing lua``: the settings classes the running nginx.conf has."""
        ...

    async def apply_lua(
        self,
        config: Configuration,
        table: RouteTable,
        *,
        backends: Sequence[BackendName],
        routes: Sequence[str],
        removed: Sequence[str],
        certificates: bool,
    ) -> int:
        """``--routing lua``, no reload: send the changed ``backends``, the entries of
        ``routes``, remove the entries of ``removed`` and, when they changed, send the
        certificates; backends no route uses any more are pruned. Returns backends sent."""
        ...


_TIME_UNITS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "M": 2592000,
    "y": 31536000,
}


def nginx_time_seconds(text: str) -> float:
    """Seconds in an nginx time value (``240s``, ``1m30s``, ``500ms``, bare seconds)."""
    total = 0.0
    for number, unit in re.findall(r"(\d+)(ms|s|m|h|d|w|M|y)?", text):
        total += int(number) * _TIME_UNITS[unit or "s"]
    return total


#: Longest nginx.conf diff written to the debug log, in characters.
DIFF_LIMIT = 20000


def conf_diff(previous: str, text: str, *, limit: int = DIFF_LIMIT) -> tuple[str, bool]:
    """Unified diff of two nginx.conf texts, cut at ``limit`` characters: (diff, truncated)."""
    diff = "".join(
        difflib.unified_diff(
            previous.splitlines(True), text.splitlines(True), "running", "new", n=2
        )
    )
    return diff[:limit], len(diff) > limit


def config_hash(text: str) -> int:
    """A 52-bit hash of nginx.conf, exact as a Prometheus float."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:13], 16)


def write_default_certificate(path: Path) -> None:
    """A self-signed certificate for hosts without one (ingress-nginx's "fake certificate")."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ingressd default certificate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ingress.local")]), False)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(path, pem)


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


class Nginx:
    """One real nginx, driven through reloads and its Lua endpoint."""

    def __init__(
        self,
        *,
        settings: RenderSettings,
        paths: NginxPaths,
        process: NginxProcess | None = None,
        endpoint: LuaEndpoint | None = None,
        template: Path = DEFAULT_TEMPLATE,
    ) -> None:
        #: The settings of the newest nginx.conf: the command line's until ``apply_reload``
        #: renders with others (its ``worker_shutdown_timeout`` bounds ``stop``).
        self.settings = settings
        self.paths = paths
        self.template = template
        self.process = process or NginxProcess(paths=paths, worker_user=_worker_user(settings))
        self.endpoint = endpoint or LuaEndpoint(socket_path=paths.control_socket)
        self.generation = 0
        #: What the Lua side holds now, as sent: backend name -> the Backend last POSTed/PUT.
        self._sent: dict[BackendName, Backend] = {}
        #: ``--routing lua``: the route table Lua holds, and the classes nginx.conf has.
        self._held: RouteTable | None = None
        self._rendered: frozenset[str] = frozenset()
        #: The backends whose peer files the stream block reads (the running nginx.conf's).
        self._stream_backends: frozenset[BackendName] = frozenset()
        #: A send to Lua failed part way: what it holds is unknown until everything is sent.
        self._lua_in_doubt = False
        #: The last route table made (the next one is made from it).
        self._made: RouteTable | None = None
        #: The last configuration ``check`` tested: (config, settings, generation, candidate).
        self._checked: tuple[Configuration, RenderSettings, int, Path] | None = None

    @property
    def lua_routed(self) -> bool:
        return self.settings.routing == "lua"

    @property
    def routes_held(self) -> RouteTable | None:
        return self._held

    @property
    def rendered_classes(self) -> frozenset[str]:
        return self._rendered

    def render(self, config: Configuration) -> str:
        self.generation += 1
        # Lua still holds the running table until the new one is sent after the reload: its
        # classes stay in nginx.conf one more generation.
        kept = self._held.classes if self._held is not None else ()
        return render(
            config,
            settings=self.settings,
            paths=self.paths,
            generation=self.generation,
            template=self.template,
            keep_classes=kept,
            table=self._table_of(config, self.settings) if self.lua_routed else None,
        )

    def _table_of(self, config: Configuration, settings: RenderSettings) -> RouteTable:
        """``config``'s route table, made from the last one made."""
        table = route_table(config, route_context(settings), self._made or self._held)
        self._made = table
        return table

    async def prepare(self) -> Path:
        """Lay out the work dir and check an empty configuration (404 for all) with nginx -t.

        Returns the tested candidate.
        """
        self.process.prepare_work_dir()
        Path(self.paths.stream).mkdir(mode=0o755, exist_ok=True)
        default_cert = Path(self.paths.default_certificate)
        if not default_cert.exists():
            write_default_certificate(default_cert)
        return await self.process.test(self.render(Configuration()))

    async def start(self) -> None:
        """Prepare the work dir and start nginx serving an empty configuration."""
        candidate = await self.prepare()
        self.process.install(candidate, self.generation)
        await self.process.start(self.generation)

    async def apply_dynamic(self, backends: Sequence[Backend]) -> None:
        await self.endpoint.post_backends(backends)
        self._sent.update((b.name, b) for b in backends)
        self._write_stream_peers(b for b in backends if b.name in self._stream_backends)

    def _write_stream_peers(self, backends: Iterable[Backend]) -> None:
        """The peer file of each backend the stream block reads: its endpoints as a JSON list
        of ``address:port``, replaced atomically (njs reads it per connection: no reload)."""
        directory = Path(self.paths.stream)
        for backend in backends:
            peers = [_peer(e.address, e.port) for e in backend.endpoints]
            path = Path(self.paths.stream_peers(backend.name))
            tmp = directory / f".{backend.name}.tmp"
            tmp.write_text(json.dumps(peers, separators=(",", ":")))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)

    def _remove_unused_peers(self) -> None:
        directory = Path(self.paths.stream)
        for path in directory.glob("*.json"):
            if path.name[: -len(".json")] not in self._stream_backends:
                path.unlink(missing_ok=True)

    async def apply_lua(
        self,
        config: Configuration,
        table: RouteTable,
        *,
        backends: Sequence[BackendName],
        routes: Sequence[str],
        removed: Sequence[str],
        certificates: bool,
    ) -> int:
        changed = config.backends_named(backends)
        if changed:
            await self.apply_dynamic(changed)
        if self._lua_in_doubt:
            await self._send_table(table)
        elif routes or removed or certificates:
            await self._send_table_changes(table, routes=routes, removed=removed)
        else:
            self._held = table
        await self._delete_unused_backends(config)
        return len(changed)

    async def _delete_unused_backends(self, config: Configuration) -> None:
        """DELETE from Lua the backends ``config`` does not use.  Lua holds every backend of
        ``config`` by now (the running model's, and the changed ones just sent), so only a
        count above ``config``'s says there are any; then the names are compared."""
        if len(self._sent) <= len(config.backends):
            return
        gone = sorted(self._sent.keys() - config.backend_map().keys())
        if gone:
            await self._delete_backends(gone)
            for name in gone:
                del self._sent[name]

    async def _delete_backends(self, names: Sequence[BackendName]) -> None:
        await self.endpoint.delete_backends(names)

    async def _send_table(self, table: RouteTable) -> None:
        """Make Lua hold ``table`` whatever it held: every certificate, the whole route table."""
        self._lua_in_doubt = True
        await self._send_certificates(table)
        await self._send_routes(table, None)
        self._held, self._lua_in_doubt = table, False

    async def _send_table_changes(
        self,
        table: RouteTable,
        *,
        routes: Sequence[str] | None = None,
        removed: Sequence[str] | None = None,
    ) -> None:
        """Make Lua, holding ``self._held``, hold ``table``: POST only the certificates Lua lacks
        and the host names whose certificate changed (a rotation sends one PEM, not every
        one), POST the changed route entries and DELETE the removed ones (``routes`` and
        ``removed`` when the caller knows them already)."""
        held = self._held
        if held is None:
            await self._send_table(table)
            return
        changes = table_changes(table, held)
        self._lua_in_doubt = True
        if changes.certificate_hosts:
            await self._send_certificate_changes(changes)
        hosts = changes.routes if routes is None else routes
        if hosts:
            await self._send_routes(table, hosts)
        gone = changes.removed if removed is None else removed
        if gone:
            await self._delete_routes(gone)
        self._held, self._lua_in_doubt = table, False

    async def _send_routes(self, table: RouteTable, hosts: Sequence[str] | None) -> None:
        """POST the entries of ``hosts``, or PUT the whole table when ``hosts`` is None."""
        if hosts is None:
            await self.endpoint.put_routes(table.entries.values())
        else:
            await self.endpoint.post_routes(table.entries[h] for h in hosts)

    async def _delete_routes(self, hosts: Sequence[str]) -> None:
        await self.endpoint.delete_routes(hosts)

    async def _send_certificates(self, table: RouteTable) -> None:
        await self.endpoint.send_certificates(
            dict(table.certificates), dict(table.certificate_hosts), whole=True
        )

    async def _send_certificate_changes(self, changes: TableChanges) -> None:
        await self.endpoint.send_certificates(
            dict(changes.certificates), changes.certificate_hosts, whole=False
        )

    async def _put_backends(self, config: Configuration) -> None:
        await self.endpoint.put_backends(config.backends)
        self._sent = config.backend_map()

    async def check(self, config: Configuration, settings: RenderSettings) -> None:
        current = self.settings
        self.settings = settings
        try:
            self._write_certificates(config)
            candidate = await self.process.test(self.render(config))
        finally:
            self.settings = current
        # Kept: a reload of this very configuration right after needs no second nginx -t.
        self._forget_checked()
        self._checked = (config, settings, self.generation, candidate)

    def _forget_checked(self) -> None:
        if self._checked is not None:
            self._checked[3].unlink(missing_ok=True)
            self._checked = None

    def _checked_candidate(self, config: Configuration, settings: RenderSettings) -> Path | None:
        """The candidate ``check`` tested for this configuration, if nothing was rendered since."""
        checked = self._checked
        if checked is None:
            return None
        same = checked[2] == self.generation and checked[1] == settings and checked[0] == config
        if not same or not checked[3].exists():
            self._forget_checked()
            return None
        self._checked = None
        return checked[3]

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        self.settings = settings
        if table is not None:
            self._made = table  # the tables to come share its entries
        t0 = time.monotonic()
        self._write_certificates(config)
        candidate = self._checked_candidate(config, settings)
        if candidate is not None:  # tested by check() a moment ago
            text = candidate.read_text()
            t1 = t2 = time.monotonic()
        else:
            text = self.render(config)
            t1 = time.monotonic()
            candidate = await self.process.test(text)
            t2 = time.monotonic()
        # The running text is read back for the debug diff only: keeping it would hold a
        # second copy of nginx.conf (9 MB at 10,000 Ingresses) for nothing.
        previous = read_text(self.paths.conf) if debug_enabled() else ""
        sent = await self._switch_to(candidate, config)
        if self.lua_routed:
            # the shared dict survived the SIGHUP: Lua still holds ``_held``
            table = self._table_of(config, settings)
            kept = self._held.class_ids if self._held is not None else frozenset()
            if self._lua_in_doubt:
                await self._send_table(table)
            else:
                await self._send_table_changes(table)
            self._rendered = table.class_ids | kept
        t3 = time.monotonic()
        self._remove_unused_certificates(config)
        if previous and debug_enabled():
            diff, truncated = conf_diff(previous, text)
            log.debug("nginx.conf changed", diff=diff, truncated=truncated)
        return ReloadOutcome(
            config_hash=config_hash(text),
            conf_bytes=len(text),
            render_seconds=t1 - t0,
            test_seconds=t2 - t1,
            reload_seconds=t3 - t2,
            backends_sent=sent,
        )

    async def _switch_to(self, candidate: Path, config: Configuration) -> int:
        """Make the tested ``candidate`` what nginx serves, with ``config``'s backends in Lua.

        New and changed backends go first: the shared dict outlives the reload, so the new
        workers serve their first request with endpoints already in place. Only what Lua
        does not hold yet is sent; backends gone are deleted after the reload (the old
        workers may still use them until then). Returns how many backends were sent.
        """
        self.process.install(candidate, self.generation)
        # The new workers read their peer files from their first connection on.
        self._stream_backends = config.streams.backend_names()
        self._write_stream_peers(b for b in config.backends if b.name in self._stream_backends)
        sent = self._sent.get
        changed = [b for b in config.backends if sent(b.name) is not b and sent(b.name) != b]
        if changed:
            await self.apply_dynamic(changed)
        await self.process.reload(self.generation)
        self._remove_unused_peers()
        await self._delete_unused_backends(config)
        return len(changed)

    async def reapply(self, config: Configuration | None) -> None:
        """After nginx restarted: its shared dict is empty; send the running backends (and
        with ``--routing lua`` the route table and certificates) again."""
        await self._put_backends(config or Configuration())
        if self._held is not None:
            await self._send_table(self._held)

    async def stop(self) -> None:
        """Graceful: nginx gets ``worker_shutdown_timeout`` (+5 s) to finish its requests."""
        self.process.stop_timeout = nginx_time_seconds(self.settings.worker_shutdown_timeout) + 5
        await self.process.stop()
        await self.endpoint.close()

    def _filed_servers(self, config: Configuration) -> Sequence[Server]:
        """Servers whose certificate nginx reads from a file: all of them, or with
        ``--routing lua`` those with a server block of their own (Lua serves the others' from
        memory: their keys never reach a file)."""
        if self.lua_routed:
            return [s for s in config.servers if keeps_own_block(s)]
        return config.servers

    def _write_certificates(self, config: Configuration) -> None:
        certs = Path(self.paths.certs)
        for server in self._filed_servers(config):
            cert = server.certificate
            if cert is None:
                continue
            path = certs / cert.file_name
            if not path.exists():
                _write_private(path, cert.pem.encode())
        self._write_secret_files(config)

    def _write_secret_files(self, config: Configuration) -> None:
        """Files from Secrets that annotations name (htpasswd, CA bundles): 0600, owned by the
        worker user, which reads htpasswd files at request time, in a 0700 directory."""
        files = config.secret_files()
        if not files:
            return
        directory = Path(self.paths.secrets)
        directory.mkdir(mode=0o700, exist_ok=True)
        owner = None
        if self.process.worker_user is not None and os.geteuid() == 0:
            owner = user_ids(*self.process.worker_user)
            os.chown(directory, *owner)
        for secret_file in files:
            path = directory / secret_file.file_name
            if not path.exists():
                _write_private(path, secret_file.content.encode())
                if owner is not None:
                    os.chown(path, *owner)

    def _remove_unused_certificates(self, config: Configuration) -> None:
        used = {s.certificate.file_name for s in self._filed_servers(config) if s.certificate}
        used.add(Path(self.paths.default_certificate).name)
        for path in Path(self.paths.certs).glob("*.pem"):
            if path.name not in used:
                path.unlink(missing_ok=True)
        kept = {f.file_name for f in config.secret_files()}
        secrets = Path(self.paths.secrets)
        if secrets.is_dir():
            for path in secrets.iterdir():
                if path.name not in kept:
                    path.unlink(missing_ok=True)


def _peer(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def read_text(path: Path) -> str:
    """The file's text, or "" when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""


def _worker_user(settings: RenderSettings) -> tuple[str, str] | None:
    if settings.worker_user is None:
        return None
    user, _, group = settings.worker_user.partition(" ")
    return user, group or user
