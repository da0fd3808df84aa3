"""Routing modes side by side: ``--routing lua`` against ``--routing nginx`` (issue 10's targets).

    world: N Ingresses (one host, one or two paths each; TLS with a certificate of its own on
           1 in --tls-every), N Services + EndpointSlices (3 pods each), spare Services
    per mode, one controller (Ingressd over a MemorySource, its real nginx, PodNginx pods):
      1. a new Ingress of an existing settings class (to a spare Service): Store event ->
         first 200 for its host through nginx; reloads
      2. certificate rotation (a TLS Secret changes): Store event -> the new certificate in a
         TLS handshake (SNI); reloads
      3. route changes (an Ingress's /api moves to another Service) and endpoint changes
         (EndpointSlices), interleaved, under wrk on an untouched host: reloads, non-2xx,
         socket errors; then the last change of each kind is checked through nginx
      4. nginx.conf size; nginx -t and reload at N: medians over the reloads after the first
         sync (lua: that of an Ingress with a new settings class; nginx: those of 1 to 3)
    5. data plane: wrk through the lua controller's nginx and the nginx controller's, same
       pods, at N hosts (the controllers above) and at 10 hosts: pairs of rounds, the order
       swapped from pair to pair; per pair the lua / nginx ratio of requests/s and of the
       nginx workers' CPU time per request (/proc utime + stime / wrk's requests); medians
       and spread of the pairs' ratios
    6. controller RSS (VmHWM) in a fresh process after its first sync at N, each mode (lua
       only: --rss-modes lua), as benchmarks/scale.py measures it: with the objects built in
       that process, and (--rss-sources) listed through kubernetes-asyncio from a fake API
       server in a process of its own, as in a cluster

Both modes run in this one process, one after the other (the nginx controller is started
after the lua one's figures are taken; both stay up for the data plane's alternating rounds).
Each stage of a sync is timed (the SyncRecord's build / diff / apply; the control endpoint's
POSTs and PUTs; ``nginx -t``; SIGHUP until the new workers answer), and the time from the end
of the sync to the first request served ("served after sync": the nginx worker's refresh of
its routes, plus the probe's own 2 ms between tries).

nginx waits up to 120 s for a reload here, not the controller's 15 s (``reload_timeout``): at
10,000 Ingresses on 2 loaded cores a reload in nginx mode can take longer than 15 s, and the
figure wanted is how long it takes. Reloads over 15 s are counted. Each reload in nginx mode
at 10,000 Ingresses costs tens of seconds here, so nginx mode gets one sample of 1 and 2,
made at the same moment and applied by one reload (``--nginx-apart``: one at a time), and its
churn (3) is cut once the first reload after its first change is done.
In lua mode, a second of wrk reaches every nginx worker before the samples: the first request
a worker serves after the route table arrived decodes the whole table. The first new Ingress
after that is reported apart, not counted in the percentiles.

    python -m benchmarks.routing [--ingresses 10000] [--tls-every 10] [--samples 20]
                                 [--rotations 10] [--nginx-apart [--nginx-samples 1]
                                 [--nginx-rotations 1]]
                                 [--changes 1000] [--rounds 10] [--seconds 1]
                                 [--rss-modes lua,nginx] [--rss-sources memory,kubernetes]
                                 [--profile FILE] [--json FILE]
    python -m benchmarks.routing --rss-of lua --ingresses N   (one RSS figure, JSON on stdout)
    python -m benchmarks.routing --dataplane-only [--small-hosts 10] [--ingresses 10000]
                                 [--rounds 10] [--seconds 1]   (5 alone; --ingresses 0: not)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import datetime
import gc
import importlib
import io
import itertools
import json
import math
import os
import pstats
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import (
    PodNginx,
    free_port,
    machine,
    nginx_workers_cpu_seconds,
    run_wrk,
    temp_root,
)
from benchmarks.scale import proc_rss_mb
from ingressd.annotations import DEFAULT_PREFIX
from ingressd.app.runtime import Ingressd, Options, Source
from ingressd.cluster.client import api_client
from ingressd.logs import configure
from ingressd.model import Backend, Configuration
from ingressd.nginx.applying import Nginx, ReloadOutcome
from ingressd.nginx.dynamic import LuaEndpoint
from ingressd.nginx.process import NginxProcess
from ingressd.nginx.rendering import NginxPaths, RenderSettings
from ingressd.nginx.routes import RouteTable
from ingressd.pipeline.syncing import SyncRecord
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.sources.memory import MemorySource
from tests.support.objects import (
    endpoint_slice,
    ingress,
    path,
    rule,
    self_signed_certificate,
    service,
    service_port,
    tls,
    tls_secret,
)

MODES = ("lua", "nginx")
#: nginx's wait for a reload here (the controller's default, ``NginxProcess``, is 15 s).
RELOAD_TIMEOUT = 120.0
PRODUCTION_RELOAD_TIMEOUT = 15.0
HTTP_PROBE_PAUSE = 0.002
TLS_PROBE_PAUSE = 0.005


# -- the world -----------------------------------------------------------------------------------


def host(i: int) -> str:
    return f"h{i}.bench.test"


def pod(i: int, generation: int) -> str:
    """Pod ``generation`` of Service ``i``: a loopback address the wildcard PodNginx answers."""
    return f"127.{10 + i // 250}.{i % 250}.{generation % 250 + 1}"


_VERSIONS = itertools.count(1000)


def versioned(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with a resourceVersion of its own, as a change from the API server has."""
    obj["metadata"]["resourceVersion"] = str(next(_VERSIONS))
    return obj


def certificates(count: int) -> list[tuple[str, str]]:
    """``count`` distinct certificates (EC P-256), the k-th for the k-th TLS host."""
    return [self_signed_certificate(host(k)) for k in range(count)]


def tls_hosts(n: int, tls_every: int) -> list[int]:
    return list(range(0, n, tls_every)) if tls_every else []


def plain_hosts(n: int, tls_every: int) -> list[int]:
    """The Ingresses without TLS (plain HTTP to a TLS host answers a redirect)."""
    return [i for i in range(n) if not tls_every or i % tls_every]


def middle_host(n: int, tls_every: int) -> int:
    """An Ingress in the middle with two paths (odd) and no TLS: the data plane's."""
    return next(i for i in range(n // 2, n) if i % 2 and (not tls_every or i % tls_every))


def pods_slice(i: int, first: int, port: int) -> dict[str, Any]:
    """The EndpointSlice of Service ``i``: pods ``first`` to ``first + 2``."""
    return endpoint_slice(
        f"svc{i}", endpoints=[pod(i, first + g) for g in range(3)], port=port, port_name="http"
    )


def world(
    n: int, *, port: int, tls_every: int, spare: int, certs: Sequence[tuple[str, str]]
) -> list[dict[str, Any]]:
    """N Ingresses (one host; ``/`` and, on odd ones, ``/api``), N + ``spare`` Services and
    EndpointSlices of 3 pods; Ingress ``i`` with TLS when ``tls_every`` divides ``i``, with a
    certificate of its own (``certs[i // tls_every]``)."""
    out: list[dict[str, Any]] = []
    for i in range(n + spare):
        out.append(service(f"svc{i}", ports=[service_port(80, "http", target_port=port)]))
        out.append(pods_slice(i, 0, port))
        if i >= n:
            continue
        paths = [path("/", f"svc{i}")] + ([path("/api", f"svc{i}")] if i % 2 else [])
        entries = []
        if tls_every and i % tls_every == 0:
            cert, key = certs[i // tls_every]
            out.append(tls_secret(f"tls{i}", cert_pem=cert, key_pem=key))
            entries = [tls(host(i), secret_name=f"tls{i}")]
        out.append(ingress(f"ing{i}", rules=[rule(host(i), *paths)], tls_entries=entries))
    return out


# -- timing the controller's calls to nginx -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    started: float
    seconds: float
    items: int = 0


class Stages:
    """Every timed call to nginx (control endpoint, nginx -t, reload), in order."""

    def __init__(self) -> None:
        self.done: list[Stage] = []

    def add(self, name: str, started: float, items: int = 0, seconds: float | None = None) -> None:
        took = time.monotonic() - started if seconds is None else seconds
        self.done.append(Stage(name, started, took, items))

    def between(self, start: float, end: float) -> list[Stage]:
        return [s for s in self.done if start <= s.started <= end]


class TimedEndpoint(LuaEndpoint):
    """The control endpoint's client, each request timed."""

    def __init__(self, *, socket_path: str, stages: Stages) -> None:
        super().__init__(socket_path=socket_path)
        self.stages = stages

    async def post_backends(self, backends: Sequence[Backend]) -> int:
        t = time.monotonic()
        count = await super().post_backends(backends)
        self.stages.add("POST backends", t, count)
        return count

    async def put_backends(self, backends: Sequence[Backend]) -> int:
        t = time.monotonic()
        count = await super().put_backends(backends)
        self.stages.add("PUT backends", t, count)
        return count

    async def delete_backends(self, names: Iterable[str]) -> int:
        t = time.monotonic()
        count = await super().delete_backends(names)
        self.stages.add("DELETE backends", t, count)
        return count

    async def post_routes(self, entries: Iterable[str]) -> int:
        t = time.monotonic()
        count = await super().post_routes(entries)
        self.stages.add("POST routes", t, count)
        return count

    async def put_routes(self, entries: Iterable[str]) -> int:
        t = time.monotonic()
        count = await super().put_routes(entries)
        self.stages.add("PUT routes", t, count)
        return count

    async def delete_routes(self, hosts: Iterable[str]) -> int:
        t = time.monotonic()
        count = await super().delete_routes(hosts)
        self.stages.add("DELETE routes", t, count)
        return count

    async def send_certificates(
        self, certificates: dict[str, str], servers: Mapping[str, str | None], *, whole: bool
    ) -> None:
        t = time.monotonic()
        await super().send_certificates(certificates, servers, whole=whole)
        self.stages.add(f"{'PUT' if whole else 'POST'} certificates", t, len(certificates))


class TimedProcess(NginxProcess):
    """nginx -t and reloads timed; reloads may take ``RELOAD_TIMEOUT``."""

    def __init__(self, *, paths: NginxPaths, worker_user: tuple[str, str] | None, stages: Stages):
        super().__init__(paths=paths, worker_user=worker_user, reload_timeout=RELOAD_TIMEOUT)
        self.stages = stages

    async def test(self, text: str) -> Path:
        t = time.monotonic()
        candidate = await super().test(text)
        self.stages.add("nginx -t", t, len(text))
        return candidate

    async def reload(self, generation: int) -> None:
        t = time.monotonic()
        await super().reload(generation)
        self.stages.add("reload", t)


class TimedNginx(Nginx):
    """``Nginx`` whose renders are timed too."""

    def __init__(self, *, settings: RenderSettings, paths: NginxPaths, stages: Stages) -> None:
        user = None
        if settings.worker_user:
            name, _, group = settings.worker_user.partition(" ")
            user = (name, group or name)
        super().__init__(
            settings=settings,
            paths=paths,
            process=TimedProcess(paths=paths, worker_user=user, stages=stages),
            endpoint=TimedEndpoint(socket_path=paths.control_socket, stages=stages),
        )
        self.stages = stages

    async def apply_reload(
        self, config: Configuration, settings: RenderSettings, *, table: RouteTable | None = None
    ) -> ReloadOutcome:
        t = time.monotonic()
        outcome = await super().apply_reload(config, settings, table=table)
        self.stages.add("render", t, outcome.conf_bytes, seconds=outcome.render_seconds)
        return outcome


# -- one controller ------------------------------------------------------------------------------


@dataclass
class Sample:
    """One change: milliseconds from the Store event until served (None: not within the
    timeout), the syncs and reloads it took, and where the time went (ms by stage)."""

    ms: float | None
    syncs: int
    reloads: int
    stages_ms: dict[str, float]


class Run:
    """One started controller, its source and probes."""

    def __init__(
        self,
        mode: str,
        n: int,
        root: Path,
        objects: list[dict[str, Any]],
        pod_port: int,
        tls_every: int = 0,
        source: Source | None = None,
    ) -> None:
        """``source``: where the objects come from instead of ``objects`` (a Kubernetes source
        for the RSS through the API client)."""
        self.mode = mode
        self.n = n
        self.pod_port = pod_port
        self.tls_every = tls_every
        self.source = MemorySource(objects)
        self.options = Options(
            work_dir=root / f"w-{mode}-{n}",
            http_port=free_port(),
            https_port=free_port(),
            status_port=free_port(),
            status_address="127.0.0.1",
            worker_processes="2",
            allow_loopback_endpoints=True,  # the pods are on 127.x addresses
            routing=mode,
            freeze_gc=True,  # as ``ingressd run``
        )
        self.stages = Stages()
        self.nginx = TimedNginx(
            settings=self.options.render_settings(),
            paths=NginxPaths(self.options.work_dir),
            stages=self.stages,
        )
        self.controller = Ingressd(self.options, source=source or self.source, nginx=self.nginx)
        self.url = f"http://127.0.0.1:{self.options.http_port}"
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True),
            timeout=aiohttp.ClientTimeout(total=10),
        )
        self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    async def start(self, timeout: float) -> Sample:
        t0 = time.monotonic()
        await self.controller.start()
        await self.controller.wait_until_synced(timeout=timeout)
        await self.settled()
        first = self.sample(t0, time.monotonic(), 0)
        first.stages_ms.pop("served after sync", None)  # "served": settled, not probed
        # before the first sync: nginx started on an empty configuration, every object loaded
        first.stages_ms = {
            ("start + load" if k == "queue" else k): v for k, v in first.stages_ms.items()
        }
        return first

    async def stop(self) -> None:
        await self.session.close()
        await self.controller.stop()

    @property
    def reloads(self) -> int:
        return int(self.controller.metrics.value("nginx_ingress_controller_success"))

    async def settled(self) -> None:
        """Until nothing is queued and no sync runs."""
        c = self.controller
        while c.channel.qsize() or not c.queue.idle or c.worker.busy:
            await asyncio.sleep(0.005)

    def syncs_since(self, t0: float) -> list[SyncRecord]:
        return [r for r in self.controller.worker.records if r.started_at >= t0 - 0.001]

    def sample(self, t0: float, served: float | None, reloads: int) -> Sample:
        """Where the time from ``t0`` went: queue (event -> first sync), each sync's build /
        diff / apply, the calls to nginx within, and "served after sync"."""
        records = self.syncs_since(t0)
        stages: dict[str, float] = {}

        def add(name: str, seconds: float) -> None:
            stages[name] = round(stages.get(name, 0.0) + seconds * 1000, 2)

        if records:
            add("queue", records[0].started_at - t0)
            for r in records:
                add("build", r.build_seconds)
                add("diff", r.diff_seconds)
                add("apply", r.apply_seconds)
            end = records[-1].started_at + records[-1].total_seconds
            for s in self.stages.between(t0, end):
                add(s.name, s.seconds)
            if served is not None:
                add("served after sync", max(0.0, served - end))
        return Sample(
            ms=round((served - t0) * 1000, 2) if served is not None else None,
            syncs=len(records),
            reloads=reloads,
            stages_ms=stages,
        )

    async def get(self, host_name: str, uri: str = "/") -> tuple[int, str]:
        try:
            async with self.session.get(self.url + uri, headers={"Host": host_name}) as resp:
                return resp.status, (await resp.text()).strip()
        except (aiohttp.ClientError, TimeoutError):
            return 0, ""

    async def until(
        self, check: Callable[[], Awaitable[bool]], since: float, timeout: float, pause: float
    ) -> float | None:
        """The time ``check()`` (a coroutine function) first returns true, or None; pauses
        ``pause`` between tries for the first second, then 25 ms (reloads take seconds)."""
        deadline = since + timeout
        while time.monotonic() < deadline:
            if await check():
                return time.monotonic()
            elapsed = time.monotonic() - since
            await asyncio.sleep(pause if elapsed < 1 else 0.025)
        return None

    async def served_certificate(self, name: str) -> bytes | None:
        """The DER of the certificate nginx presents for SNI ``name``."""
        try:
            _, writer = await asyncio.open_connection(
                "127.0.0.1", self.options.https_port, ssl=self.tls, server_hostname=name
            )
        except (OSError, ssl.SSLError):
            return None
        try:
            obj = writer.get_extra_info("ssl_object")
            return obj.getpeercert(binary_form=True) if obj is not None else None
        finally:
            writer.close()


# -- the scenarios -------------------------------------------------------------------------------


async def new_ingresses(run: Run, count: int, *, first_spare: int, timeout: float) -> list[Sample]:
    """Scenario 1: ``count`` new Ingresses, one at a time, each to a spare Service."""
    out = []
    for k in range(count):
        i = first_spare + k
        obj = ingress(f"new{i}", rules=[rule(host(i), path("/", f"svc{i}"))])
        await run.settled()
        await asyncio.sleep(0.05)
        reloads = run.reloads
        t0 = time.monotonic()
        run.source.add(obj)

        async def ok(name: str = host(i)) -> bool:
            return (await run.get(name))[0] == 200

        served = await run.until(ok, t0, timeout, HTTP_PROBE_PAUSE)
        await run.settled()
        out.append(run.sample(t0, served, run.reloads - reloads))
    return out


async def rotations(
    run: Run, indices: Sequence[int], new_certs: Sequence[tuple[str, str]], timeout: float
) -> list[Sample]:
    """Scenario 2: the TLS Secret of Ingress ``i`` gets a new certificate; until a handshake
    with SNI ``host(i)`` presents it."""
    out = []
    for i, (cert, key) in zip(indices, new_certs, strict=True):
        wanted = ssl.PEM_cert_to_DER_cert(cert)
        obj = versioned(tls_secret(f"tls{i}", cert_pem=cert, key_pem=key))
        await run.settled()
        await asyncio.sleep(0.05)
        reloads = run.reloads
        t0 = time.monotonic()
        run.source.modify(obj)

        async def rotated(name: str = host(i), der: bytes = wanted) -> bool:
            return await run.served_certificate(name) == der

        served = await run.until(rotated, t0, timeout, TLS_PROBE_PAUSE)
        await run.settled()
        out.append(run.sample(t0, served, run.reloads - reloads))
    return out


async def at_once(
    run: Run, i: int, tls_index: int, cert: tuple[str, str], timeout: float
) -> tuple[list[Sample], list[Sample]]:
    """Scenarios 1 and 2 at the same moment, one sample each: a new Ingress (to spare Service
    ``i``) and the rotation of Ingress ``tls_index``'s certificate (nginx mode: one reload
    applies both; each alone costs one as long)."""
    new = ingress(f"new{i}", rules=[rule(host(i), path("/", f"svc{i}"))])
    secret = versioned(tls_secret(f"tls{tls_index}", cert_pem=cert[0], key_pem=cert[1]))
    wanted = ssl.PEM_cert_to_DER_cert(cert[0])
    await run.settled()
    await asyncio.sleep(0.05)
    reloads = run.reloads
    t0 = time.monotonic()
    run.source.add(new)
    run.source.modify(secret)

    async def ok() -> bool:
        return (await run.get(host(i)))[0] == 200

    async def rotated() -> bool:
        return await run.served_certificate(host(tls_index)) == wanted

    served, renewed = await asyncio.gather(
        run.until(ok, t0, timeout, HTTP_PROBE_PAUSE),
        run.until(rotated, t0, timeout, TLS_PROBE_PAUSE),
    )
    await run.settled()
    done = run.reloads - reloads
    return [run.sample(t0, served, done)], [run.sample(t0, renewed, done)]


@dataclass
class ChurnFigures:
    route_changes: int
    endpoint_changes: int
    #: Seconds from the first change until every one was applied.
    seconds: float
    reloads: int
    syncs: int
    wrk_seconds: float
    requests: int
    non_2xx: int
    socket_errors: int
    #: The last route change and the last endpoint change answered through nginx.
    final_state_served: bool
    #: False: the window ended after the first reload (``seconds``), not once all was applied.
    whole: bool = True
    #: A sync (a reload, in nginx mode) was still under way when the window ended.
    reloading: bool = False


async def churn(
    run: Run, changes: int, rate: float, max_seconds: float, *, whole: bool = True
) -> ChurnFigures:
    """Scenario 3: ``changes`` route changes and as many endpoint changes, interleaved at
    ``rate`` per second in all, while wrk (2 s rounds) asks a host without TLS that no change
    touches: until every change is applied (``whole``), else until every change is sent and
    the first reload since the first one is done (nginx mode: the next reload, which would
    apply the rest, takes as long again and is not waited for).

    Route change c: Ingress j (first half) keeps ``/`` and points ``/api`` at Service t
    (another of the first half: the backend exists, the settings class too). Endpoint change
    c: the EndpointSlice of Service m (second half) moves on to 3 new pods. Hosts with TLS are
    left out (their plain HTTP answer is a redirect)."""
    n = run.n
    half = max(2, n // 2)
    plain = plain_hosts(n, run.tls_every)
    quiet = plain[0]
    route_pool = [i for i in plain if quiet < i < half][:500] or [quiet]
    endpoint_pool = [i for i in plain if i >= half][:500] or [quiet]
    generation: dict[int, int] = {}
    planned: list[dict[str, Any]] = []
    last_route = last_endpoints = (0, 0)
    for c in range(changes):
        j = route_pool[c % len(route_pool)]
        t = (j + 1 + c) % half
        paths = (path("/", f"svc{j}"), path("/api", f"svc{t}"))
        planned.append(versioned(ingress(f"ing{j}", rules=[rule(host(j), *paths)])))
        last_route = (j, t)
        m = endpoint_pool[c % len(endpoint_pool)]
        g = generation.get(m, 3)
        generation[m] = g + 3
        planned.append(versioned(pods_slice(m, g, run.pod_port)))
        last_endpoints = (m, g)
    gc.freeze()  # the API server's objects, not the controller's heap
    await run.settled()
    reloads0 = run.reloads
    syncs0 = run.controller.queue.syncs
    url = run.url + "/"
    totals = [0, 0, 0]
    stop = asyncio.Event()

    async def load() -> None:
        while not stop.is_set():
            r = await run_wrk(url, host=host(quiet), seconds=2)
            totals[0] += r.requests
            totals[1] += r.non_2xx
            totals[2] += r.socket_errors

    wrk_started = time.monotonic()
    wrk = asyncio.create_task(load())
    await asyncio.sleep(0.5)
    start = time.monotonic()
    sent = 0
    while sent < len(planned):
        due = min(len(planned), int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            run.source.modify(planned[sent])
            sent += 1
        await asyncio.sleep(0.001)
    deadline = start + max_seconds
    ctl = run.controller

    def pending() -> bool:
        if not whole:
            return run.reloads == reloads0
        return bool(ctl.channel.qsize() or not ctl.queue.idle or ctl.worker.busy)

    while pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    applied = time.monotonic() - start
    stop.set()  # the round under way finishes: it covers the end of the window
    await wrk
    wrk_seconds = time.monotonic() - wrk_started
    reloads = run.reloads - reloads0
    syncs = run.controller.queue.syncs - syncs0
    if not whole:
        return ChurnFigures(
            route_changes=changes,
            endpoint_changes=changes,
            seconds=round(applied, 2),
            reloads=reloads,
            syncs=syncs,
            wrk_seconds=round(wrk_seconds, 1),
            requests=totals[0],
            non_2xx=totals[1],
            socket_errors=totals[2],
            final_state_served=False,
            whole=False,
            reloading=run.controller.worker.busy,
        )
    await run.settled()
    j, t = last_route
    m, g = last_endpoints
    finals = {pod(m, g + k) for k in range(3)}

    async def final() -> bool:
        api = await run.get(host(j), "/api/check")
        endpoints = await run.get(host(m), "/")
        return (
            api[0] == 200
            and api[1].startswith(pod(t, 0).rsplit(".", 1)[0] + ".")
            and endpoints[1] in finals
        )

    served = await run.until(final, time.monotonic(), 5.0, 0.05)
    return ChurnFigures(
        route_changes=changes,
        endpoint_changes=changes,
        seconds=round(applied, 2),
        reloads=reloads,
        syncs=syncs,
        wrk_seconds=round(wrk_seconds, 1),
        requests=totals[0],
        non_2xx=totals[1],
        socket_errors=totals[2],
        final_state_served=served is not None,
    )


async def new_class(run: Run, i: int, timeout: float) -> Sample:
    """An Ingress whose settings class nginx.conf lacks (lua mode: the one reload it needs)."""
    obj = ingress(
        f"class{i}",
        rules=[rule(host(i), path("/", f"svc{i}"))],
        annotations={f"{DEFAULT_PREFIX}/proxy-body-size": "8m"},
    )
    await run.settled()
    reloads = run.reloads
    t0 = time.monotonic()
    run.source.add(obj)

    async def ok() -> bool:
        return (await run.get(host(i)))[0] == 200

    served = await run.until(ok, t0, timeout, HTTP_PROBE_PAUSE)
    await run.settled()
    return run.sample(t0, served, run.reloads - reloads)


@dataclass
class DataplaneFigures:
    hosts: int
    lua_rps: list[float]
    nginx_rps: list[float]
    lua_p99_ms: list[float]
    nginx_p99_ms: list[float]
    errors: int
    #: Median of the pairs' lua / nginx requests/s (a pair: both modes back to back, the
    #: order swapped from one pair to the next).
    ratio: float
    ratios: list[float] = field(default_factory=list)
    #: The nginx workers' CPU time (utime + stime) per request in each round, microseconds.
    lua_cpu_us: list[float] = field(default_factory=list)
    nginx_cpu_us: list[float] = field(default_factory=list)
    #: Median of the pairs' nginx / lua CPU time per request: lua's requests/s against nginx
    #: mode's when nginx is the bottleneck.
    cpu_ratio: float = 0.0
    cpu_ratios: list[float] = field(default_factory=list)
    #: 1-minute load average before and after the rounds.
    load: list[float] = field(default_factory=list)


def _master_pid(pid_file: Path) -> int:
    return int(pid_file.read_text().split()[0])


async def dataplane(
    hosts: int,
    targets: Mapping[str, tuple[str, Path]],
    host_name: str,
    rounds: int,
    seconds: float,
) -> DataplaneFigures:
    """wrk (1 thread, 32 connections) through each mode's nginx (``targets``: mode -> URL and
    nginx.pid), in pairs of rounds: lua then nginx, then nginx then lua, and so on (the
    machine is shared: its load drifts within a pair less than across pairs, and the swapped
    order cancels what drifts within one). Per pair the lua / nginx ratio of requests/s and
    of the workers' CPU time per request (/proc/<pid>/stat utime + stime over the round,
    divided by wrk's requests); the figures are the medians of the pairs'."""
    modes = ("lua", "nginx")
    for mode in modes:  # warm-up: connections, Lua caches, JIT traces, the route table
        await run_wrk(targets[mode][0], host=host_name, seconds=2)
    rps: dict[str, list[float]] = {m: [] for m in modes}
    p99: dict[str, list[float]] = {m: [] for m in modes}
    cpu_us: dict[str, list[float]] = {m: [] for m in modes}
    errors = 0
    load = [round(os.getloadavg()[0], 2)]
    for i in range(rounds):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            url, pid_file = targets[mode]
            master = _master_pid(pid_file)
            before = nginx_workers_cpu_seconds(master)
            r = await run_wrk(url, host=host_name, seconds=seconds)
            used = nginx_workers_cpu_seconds(master) - before
            rps[mode].append(r.requests_per_second)
            p99[mode].append(r.latency_p99_ms)
            cpu_us[mode].append(round(used / r.requests * 1e6, 2) if r.requests else math.nan)
            errors += r.non_2xx + r.socket_errors
    load.append(round(os.getloadavg()[0], 2))
    ratios = [round(a / b, 3) for a, b in zip(rps["lua"], rps["nginx"], strict=True) if b]
    cpu_ratios = [
        round(b / a, 3) for a, b in zip(cpu_us["lua"], cpu_us["nginx"], strict=True) if a > 0
    ]
    return DataplaneFigures(
        hosts=hosts,
        lua_rps=rps["lua"],
        nginx_rps=rps["nginx"],
        lua_p99_ms=p99["lua"],
        nginx_p99_ms=p99["nginx"],
        errors=errors,
        ratio=round(statistics.median(ratios), 3),
        ratios=ratios,
        lua_cpu_us=cpu_us["lua"],
        nginx_cpu_us=cpu_us["nginx"],
        cpu_ratio=round(statistics.median(cpu_ratios), 3) if cpu_ratios else 0.0,
        cpu_ratios=cpu_ratios,
        load=load,
    )


# -- results -------------------------------------------------------------------------------------


@dataclass
class ModeResult:
    mode: str
    ingresses: int
    tls_hosts: int
    first_sync: Sample
    conf_bytes: int
    #: ``location @c...`` blocks (lua) and ``server {`` blocks in nginx.conf.
    settings_classes: int
    server_blocks: int
    new_ingress: list[Sample]
    rotation: list[Sample]
    churn: ChurnFigures | None
    #: lua: the Ingress with a new settings class; nginx: None (its new Ingresses reload).
    new_class: Sample | None
    #: The new Ingress before those counted (the first requests after start-up).
    first_new_ingress: Sample | None = None
    #: ms of nginx -t and of the reload (SIGHUP until the new workers answer) at N: medians
    #: over the ``steady_reloads`` reloads after the first sync.
    test_ms: float | None = None
    reload_ms: float | None = None
    steady_reloads: int = 0
    #: The new Ingress and the rotation were made at once (one sample each, one reload).
    together: bool = False
    #: Reloads that took longer than the controller's own 15 s reload_timeout.
    reloads_over_timeout: int = 0


@dataclass
class RoutingResult:
    machine: str
    ingresses: int
    tls_hosts: int
    modes: dict[str, ModeResult]
    dataplane: list[DataplaneFigures]
    #: mode (objects built in the process) or "<mode>, kubernetes" (listed through
    #: kubernetes-asyncio) -> {"rss_mb": peak, "rss_code_mb": before any object, ...}
    rss: dict[str, dict[str, float]]
    seconds: float = 0.0
    profile: list[str] = field(default_factory=list)
    #: When, and at which commit (``+`` when the checkout had changes), the run started.
    date: str = ""
    commit: str = ""


def _reload_figures(result: ModeResult, stages: Stages, since: float) -> None:
    """nginx -t and reload: medians over the reloads after the first sync (at N objects)."""
    reloads = [s for s in stages.done if s.name == "reload"]
    result.reloads_over_timeout = sum(1 for s in reloads if s.seconds > PRODUCTION_RELOAD_TIMEOUT)
    tests = [s.seconds * 1000 for s in stages.done if s.name == "nginx -t" and s.started > since]
    loads = [s.seconds * 1000 for s in reloads if s.started > since]
    result.steady_reloads = len(loads)
    result.test_ms = round(statistics.median(tests), 1) if tests else None
    result.reload_ms = round(statistics.median(loads), 1) if loads else None


def _conf_counts(conf: Path) -> tuple[int, int, int]:
    text = conf.read_text()
    return len(text.encode()), text.count("location @c"), text.count("    server {")


_STARTED = [time.monotonic()]


def _progress(what: str) -> None:
    print(f"routing: {time.monotonic() - _STARTED[0]:6.1f}s {what}", flush=True)


async def measure_mode(
    mode: str,
    n: int,
    root: Path,
    *,
    pod_port: int,
    tls_every: int,
    certs: Sequence[tuple[str, str]],
    samples: int,
    rotations_count: int,
    changes: int,
    rate: float,
    spare: int,
    profile: cProfile.Profile | None = None,
    after_start: Callable[[Run], Awaitable[None]] | None = None,
    whole_churn: bool = True,
    together: bool = False,
) -> tuple[ModeResult, Run]:
    """Scenarios 1 to 4 for one mode; ``after_start`` runs after the first sync. The
    controller is left running (it is the caller's to stop)."""
    lua = mode == "lua"
    objects = world(n, port=pod_port, tls_every=tls_every, spare=spare, certs=certs)
    run = Run(mode, n, root, objects, pod_port, tls_every)
    del objects
    first = await run.start(timeout=300)
    _progress(f"{mode}: first sync")
    conf_bytes, classes, servers = _conf_counts(run.options.work_dir / "nginx.conf")
    if after_start is not None:
        await after_start(run)
    # the objects of the changes to come are the API server's: out of the cyclic GC's sight
    gc.freeze()
    long = 10.0 if lua else 4 * RELOAD_TIMEOUT
    steady = time.monotonic()
    warm_up = None
    if lua:
        # The first request each worker serves after the first table arrived decodes all of
        # it (the template does not load the table in init_worker): the first new Ingress
        # is measured and reported apart, after a second of wrk has reached every worker.
        await run_wrk(run.url + "/", host=host(plain_hosts(n, tls_every)[0]), seconds=1)
        warm_up = (await new_ingresses(run, 1, first_spare=n, timeout=long))[0]
    indices = tls_hosts(n, tls_every)[1 : 1 + rotations_count]
    fresh = [self_signed_certificate(host(i), f"rotated.{host(i)}") for i in indices]
    if together and indices:
        added, rotated = await at_once(run, n + 1, indices[0], fresh[0], long)
        _progress(f"{mode}: a new Ingress and a rotation at once")
    else:
        if profile is not None:
            profile.enable()
        added = await new_ingresses(run, samples, first_spare=n + 1, timeout=long)
        if profile is not None:
            profile.disable()
        _progress(f"{mode}: {samples} new Ingresses")
        rotated = await rotations(run, indices, fresh, long)
        _progress(f"{mode}: {len(indices)} rotations")
    churned = await churn(
        run, changes, rate, 30.0 if lua else 2 * RELOAD_TIMEOUT, whole=whole_churn
    )
    _progress(f"{mode}: churn")
    reloading = 4 * RELOAD_TIMEOUT
    classed = (
        await new_class(run, n + 1 + samples, reloading) if lua and spare > samples + 1 else None
    )
    result = ModeResult(
        mode=mode,
        ingresses=n,
        tls_hosts=len(tls_hosts(n, tls_every)),
        first_sync=first,
        conf_bytes=conf_bytes,
        settings_classes=classes,
        server_blocks=servers,
        new_ingress=added,
        first_new_ingress=warm_up,
        rotation=rotated,
        churn=churned,
        new_class=classed,
        together=together and bool(indices),
    )
    _reload_figures(result, run.stages, steady)
    return result, run


def _targets(runs: Iterable[Run]) -> dict[str, tuple[str, Path]]:
    """mode -> the data plane's URL and the nginx.pid of that mode's controller."""
    return {r.mode: (f"{r.url}/api/users", r.options.work_dir / "nginx.pid") for r in runs}


async def small_dataplane(
    root: Path, pod_port: int, hosts: int, rounds: int, seconds: float
) -> DataplaneFigures:
    """Scenario 5 at ``hosts`` hosts: one small controller per mode."""
    runs = [
        Run(
            mode,
            hosts,
            root,
            world(hosts, port=pod_port, tls_every=0, spare=0, certs=()),
            pod_port,
        )
        for mode in MODES
    ]
    try:
        for r in runs:
            await r.start(timeout=60)
        return await dataplane(hosts, _targets(runs), host(middle_host(hosts, 0)), rounds, seconds)
    finally:
        for r in runs:
            await r.stop()


async def dataplane_only(
    *, ingresses: int, small_hosts: int, tls_every: int, rounds: int, seconds: float
) -> list[DataplaneFigures]:
    """Scenario 5 alone (``--dataplane-only``): at ``small_hosts`` and at ``ingresses`` hosts
    (0: not), both modes' controllers started for it over the world of the whole run."""
    root = temp_root("ingressd-routing-")
    pod_port = free_port()
    pods = PodNginx([pod(0, 0)], pod_port, root, wildcard=True)
    pods.start()
    planes: list[DataplaneFigures] = []
    try:
        if small_hosts:
            _progress(f"data plane at {small_hosts} hosts ...")
            planes.append(await small_dataplane(root, pod_port, small_hosts, rounds, seconds))
        if ingresses:
            _progress(f"data plane at {ingresses:,} hosts: starting both modes ...")
            certs = certificates(len(tls_hosts(ingresses, tls_every)))
            runs: list[Run] = []
            try:
                for mode in MODES:
                    objects = world(
                        ingresses, port=pod_port, tls_every=tls_every, spare=0, certs=certs
                    )
                    runs.append(Run(mode, ingresses, root, objects, pod_port, tls_every))
                    await runs[-1].start(timeout=900)
                _progress(f"data plane at {ingresses:,} hosts ...")
                mid = host(middle_host(ingresses, tls_every))
                planes.append(await dataplane(ingresses, _targets(runs), mid, rounds, seconds))
            finally:
                for r in runs:
                    await r.stop()
    finally:
        _kill_leftover_tests(root)
        pods.stop()
        shutil.rmtree(root, ignore_errors=True)
    return planes


def rss_in_fresh_process(
    mode: str, n: int, tls_every: int, source: str = "memory"
) -> dict[str, float]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.routing",
            "--rss-of",
            mode,
            "--rss-source",
            source,
            "--ingresses",
            str(n),
            "--tls-every",
            str(tls_every),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(proc.stdout.strip().splitlines()[-1])
    return figures


async def rss_of(mode: str, n: int, tls_every: int, source: str = "memory") -> dict[str, float]:
    """Peak RSS of a controller that loaded ``n`` Ingresses and applied its first sync.

    ``source`` "memory": the objects are built here and handed over (``rss_objects_mb`` is
    RSS with them built); "kubernetes": they come through kubernetes-asyncio, listed page by
    page from a fake API server in another process (``serve_api``), as in a cluster.
    """
    importlib.import_module("ingressd.cli.commands")  # what ``ingressd run`` loads
    code = proc_rss_mb()
    root = temp_root("ingressd-rss-")
    port = free_port()
    try:
        if source == "kubernetes":
            async with _fake_api(root, n, port, tls_every) as kubeconfig:
                client = await api_client(kubeconfig)
                try:
                    kube = KubernetesSource(client)
                    return {"rss_code_mb": round(code, 1), **await _peak(mode, n, root, port, kube)}
                finally:
                    await client.close()
        certs = certificates(len(tls_hosts(n, tls_every)))
        objects = world(n, port=port, tls_every=tls_every, spare=0, certs=certs)
        del certs
        loaded = proc_rss_mb()  # the objects as parsed JSON: the Store will hold these dicts
        run = Run(mode, n, root, objects, port)
        del objects
        figures = await _peak(mode, n, root, port, None, run)
        return {"rss_code_mb": round(code, 1), "rss_objects_mb": round(loaded, 1), **figures}
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _peak(
    mode: str, n: int, root: Path, port: int, source: Source | None, run: Run | None = None
) -> dict[str, float]:
    run = run or Run(mode, n, root, [], port, source=source)
    await run.start(timeout=300)
    synced = proc_rss_mb()
    peak = proc_rss_mb("VmHWM")
    await run.stop()
    return {"rss_mb": round(peak, 1), "rss_synced_mb": round(synced, 1)}


@contextlib.asynccontextmanager
async def _fake_api(root: Path, n: int, port: int, tls_every: int) -> AsyncIterator[Path]:
    """A fake API server in a process of its own holding the benchmark's world; yields the
    kubeconfig for it."""
    kubeconfig = root / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.routing",
        "--serve-api",
        str(kubeconfig),
        "--ingresses",
        str(n),
        "--tls-every",
        str(tls_every),
        "--pod-port",
        str(port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=300)
        if line.strip() != b"ready":
            raise RuntimeError(f"the fake API server did not start: {line!r}")
        yield kubeconfig
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def serve_api(kubeconfig: Path, n: int, tls_every: int, pod_port: int) -> None:
    """The world of ``n`` Ingresses in a fake API server, until stdin closes or SIGTERM."""
    from tests.support.fakeapi import FakeApiServer  # only this process needs it

    certs = certificates(len(tls_hosts(n, tls_every)))
    api = FakeApiServer(history_size=100)
    for obj in world(n, port=pod_port, tls_every=tls_every, spare=0, certs=certs):
        api.apply(obj)
    async with api:
        api.write_kubeconfig(kubeconfig)
        print("ready", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()


def _commit() -> str:
    """The checkout's commit, ``+`` when it has changes."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, cwd=here
        ).stdout.strip()

    try:
        return git("rev-parse", "--short", "HEAD") + ("+" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _kill_leftover_tests(root: Path) -> None:
    """Kill the ``nginx -t`` runs under ``root`` that a cancelled sync left running (nginx
    mode's churn is cut short in the middle of a reload): this process's children only."""
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me and b"-t" in argv and str(root).encode() in b" ".join(argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry.name), signal.SIGKILL)


#: ``python -m benchmarks --quick``: a minute or so.
QUICK: dict[str, Any] = {
    "ingresses": 1000,
    "samples": 10,
    "rotations_count": 5,
    "changes": 200,
    "rounds": 4,
    "seconds": 1.0,
}


async def measure(
    *,
    ingresses: int = 10_000,
    tls_every: int = 10,
    samples: int = 20,
    nginx_samples: int = 1,
    rotations_count: int = 10,
    nginx_rotations: int = 1,
    changes: int = 1000,
    rate: float = 1000.0,
    rounds: int = 10,
    seconds: float = 1.0,
    small_hosts: int = 10,
    rss_modes: Sequence[str] = MODES,
    rss_sources: Sequence[str] = ("memory", "kubernetes"),
    profile: cProfile.Profile | None = None,
    nginx_together: bool = True,
) -> RoutingResult:
    """Every scenario, both modes, in this one process (RSS in fresh ones), in this order:
    lua mode's scenarios; the data plane at ``small_hosts``; RSS; nginx mode's first sync, the
    data plane at N (both controllers up and idle); nginx mode's scenarios, its churn last and
    cut short (it stops the controllers, possibly in the middle of a reload)."""
    started = _STARTED[0] = time.monotonic()
    description = machine()
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    commit = _commit()
    root = temp_root("ingressd-routing-")
    pod_port = free_port()
    pods = PodNginx([pod(0, 0)], pod_port, root, wildcard=True)
    pods.start()
    spare = samples + 2  # the warm-up, the samples, the Ingress of a new settings class
    certs = certificates(len(tls_hosts(ingresses, tls_every)))
    modes: dict[str, ModeResult] = {}
    runs: list[Run] = []
    planes: list[DataplaneFigures] = []
    rss: dict[str, dict[str, float]] = {}

    async def big_dataplane(nginx_run: Run) -> None:
        _progress(f"data plane at {ingresses:,} hosts ...")
        mid = host(middle_host(ingresses, tls_every))
        planes.append(
            await dataplane(ingresses, _targets((*runs, nginx_run)), mid, rounds, seconds)
        )

    common: dict[str, Any] = dict(
        pod_port=pod_port, tls_every=tls_every, certs=certs, changes=changes, rate=rate
    )
    try:
        _progress(f"lua mode at {ingresses:,} ...")
        result, r = await measure_mode(
            "lua",
            ingresses,
            root,
            samples=samples,
            rotations_count=rotations_count,
            spare=spare,
            profile=profile,
            **common,
        )
        modes["lua"], runs = result, [r]
        if small_hosts:
            _progress(f"data plane at {small_hosts} hosts ...")
            planes.append(await small_dataplane(root, pod_port, small_hosts, rounds, seconds))
        for mode, source in itertools.product(rss_modes, rss_sources):
            _progress(f"RSS of {mode} mode at {ingresses:,} from {source} (a fresh process) ...")
            name = mode if source == "memory" else f"{mode}, {source}"
            rss[name] = await asyncio.to_thread(
                rss_in_fresh_process, mode, ingresses, tls_every, source
            )
        _progress(f"nginx mode at {ingresses:,} ...")
        result, r = await measure_mode(
            "nginx",
            ingresses,
            root,
            samples=nginx_samples,
            rotations_count=nginx_rotations,
            spare=nginx_samples + 1,
            after_start=big_dataplane,
            whole_churn=False,
            together=nginx_together,
            **common,
        )
        modes["nginx"] = result
        runs.append(r)
    finally:
        for r in runs:
            await r.stop()
        _kill_leftover_tests(root)
        pods.stop()
        shutil.rmtree(root, ignore_errors=True)
    _progress("done")
    return RoutingResult(
        machine=description,
        ingresses=ingresses,
        tls_hosts=len(tls_hosts(ingresses, tls_every)),
        modes=modes,
        dataplane=planes,
        rss=rss,
        seconds=round(time.monotonic() - started, 1),
        date=date,
        commit=commit,
    )


# -- the report ----------------------------------------------------------------------------------


def percentile(values: Sequence[float | None], q: float) -> float:
    """Nearest rank (of 20 samples, p99 is the largest); a sample not served counts as inf."""
    ordered = sorted(math.inf if v is None else v for v in values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    lua: float | None
    nginx: float | None
    target: float | None
    unit: str
    #: The target is a minimum (a ratio), not a maximum.
    at_least: bool = False
    #: After the nginx figure: "+" for a count that is a lower bound.
    nginx_suffix: str = ""


def rows(result: RoutingResult) -> list[Row]:
    """Each figure of issue 10, both modes, its target (for lua mode)."""
    lua, ngx = result.modes["lua"], result.modes["nginx"]

    def p(m: ModeResult, q: float, rotation: bool = False) -> float | None:
        found = [s.ms for s in (m.rotation if rotation else m.new_ingress)]
        return percentile(found, q) if found else None

    def reloads(samples: list[Sample]) -> float:
        return sum(s.reloads for s in samples)

    out = [
        Row("1. new Ingress: event to first 200, p50", p(lua, 0.5), p(ngx, 0.5), 100, "ms"),
        Row("1. new Ingress: event to first 200, p99", p(lua, 0.99), p(ngx, 0.99), 250, "ms"),
        Row(
            f"1. reloads for {len(lua.new_ingress)} (lua) / {len(ngx.new_ingress)} (nginx) "
            "new Ingresses",
            reloads(lua.new_ingress),
            reloads(ngx.new_ingress),
            0,
            "",
        ),
        Row(
            f"2. certificate rotation ({len(lua.rotation)} / {len(ngx.rotation)}): reloads",
            reloads(lua.rotation),
            reloads(ngx.rotation),
            0,
            "",
            nginx_suffix=" (the same)" if ngx.together else "",
        ),
        Row(
            "2. rotation: event to new certificate, p50",
            p(lua, 0.5, True),
            p(ngx, 0.5, True),
            None,
            "ms",
        ),
        Row(
            "2. rotation: event to new certificate, p99",
            p(lua, 0.99, True),
            p(ngx, 0.99, True),
            250,
            "ms",
        ),
    ]
    if lua.churn is not None and ngx.churn is not None:
        lc, nc = lua.churn, ngx.churn
        what = f"3. {lc.route_changes:,} route + {lc.endpoint_changes:,} endpoint changes"
        out += [
            Row(f"{what}: reloads", lc.reloads, nc.reloads, 0, "", False, "" if nc.whole else "+"),
            Row(f"{what}: failed requests (non-2xx)", lc.non_2xx, nc.non_2xx, 0, ""),
            Row(f"{what}: socket errors", lc.socket_errors, nc.socket_errors, 0, ""),
        ]
    out += [
        Row(
            f"4. nginx.conf at {result.ingresses:,}",
            lua.conf_bytes / 1000,
            ngx.conf_bytes / 1000,
            200,
            "KB",
        ),
        Row(
            f"4. nginx -t + reload at {result.ingresses:,}",
            _sum(lua.test_ms, lua.reload_ms),
            _sum(ngx.test_ms, ngx.reload_ms),
            1000,
            "ms",
        ),
    ]
    for plane in result.dataplane:
        out.append(
            Row(
                f"5. data plane req/s, lua / nginx, at {plane.hosts:,} hosts (median of pairs)",
                plane.ratio,
                1.0,
                0.95,
                "x",
                at_least=True,
            )
        )
        if plane.cpu_ratios:
            out.append(
                Row(
                    f"5. data plane nginx CPU per request, nginx / lua, at {plane.hosts:,} "
                    "hosts (median of pairs)",
                    plane.cpu_ratio,
                    1.0,
                    0.95,
                    "x",
                    at_least=True,
                )
            )
    for source, how in (("", ""), (", kubernetes", ", through kubernetes-asyncio")):
        if f"lua{source}" in result.rss:
            out.append(
                Row(
                    f"6. controller RSS (peak) at {result.ingresses:,}{how}",
                    result.rss[f"lua{source}"]["rss_mb"],
                    result.rss.get(f"nginx{source}", {}).get("rss_mb"),
                    200,
                    "MB",
                )
            )
    return out


def _sum(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if math.isinf(value):
        return "not served"
    if unit == "ms":
        return f"{value / 1000:.2f} s" if value >= 10_000 else f"{value:.0f} ms"
    if unit == "x":
        return f"{value:.2f}"
    if unit == "":
        return f"{value:,.0f}"
    return f"{value:,.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"


def verdict(row: Row) -> str:
    if row.target is None or row.lua is None:
        return ""
    value, target = row.lua, row.target
    met = value >= target if row.at_least else value <= target
    if met:
        return "met"
    gap = target - value if row.at_least else value - target
    by = _show(gap, row.unit) if row.unit != "x" else f"{gap:.2f}"
    if target and not math.isinf(value) and not row.at_least:
        by += f" ({value / target:.1f}x the target)"
    return f"**missed** by {by}"


def _stage_line(label: str, samples: Sequence[Sample]) -> str:
    order = [
        "start + load", "queue", "build", "diff", "apply", "render", "nginx -t", "reload",
        "POST backends", "PUT backends", "POST routes", "PUT routes", "DELETE routes",
        "POST certificates", "PUT certificates", "served after sync",
    ]  # fmt: skip
    names = {n for s in samples for n in s.stages_ms}
    parts = []
    for name in sorted(names, key=lambda n: order.index(n) if n in order else len(order)):
        value = statistics.median(s.stages_ms.get(name, 0.0) for s in samples)
        parts.append(f"{name} {value:.1f}")
    total = percentile([s.ms for s in samples], 0.5)
    syncs = statistics.median(s.syncs for s in samples) if samples else 0
    return (
        f"- {label} ({len(samples)}; median {_show(total, 'ms')}, {syncs:g} syncs): "
        + ", ".join(parts)
    )


def describe(result: RoutingResult) -> str:
    lua, ngx = result.modes["lua"], result.modes["nginx"]
    spare = len(lua.new_ingress) + 2
    lines = [
        f"- machine: {result.machine}",
        f"- run: {result.date}, commit {result.commit} (`python -m benchmarks.routing`)",
        f"- world: {result.ingresses:,} Ingresses (one host each; `/`, and `/api` on odd ones), "
        f"{result.tls_hosts:,} of them with TLS (a certificate each), "
        f"{result.ingresses + spare:,} Services and EndpointSlices (3 pods each); "
        f"both modes in one run of {result.seconds:.0f} s",
        "",
        "| figure | `--routing lua` | `--routing nginx` | target (lua) | lua |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in rows(result):
        target = ""
        if row.target is not None:
            target = ("&ge; " if row.at_least else "&le; ") + _show(row.target, row.unit)
        lines.append(
            f"| {row.figure} | {_show(row.lua, row.unit)} "
            f"| {_show(row.nginx, row.unit)}{row.nginx_suffix} "
            f"| {target} | {verdict(row)} |"
        )
    notes = []
    if ngx.together:
        notes.append(
            "nginx mode: its new Ingress and its rotation were made at the same moment and "
            "applied by one reload (each alone costs one)."
        )
    if ngx.churn is not None and not ngx.churn.whole:
        notes.append(
            "nginx mode: its churn window closed once the first reload after the first change "
            'was done ("+": more reloads were to come).'
        )
    if notes:
        lines += ["", " ".join(notes)]
    lines += [
        "",
        "Where the time goes (median ms per stage; `apply` holds the calls to nginx listed "
        'after it; "served after sync": the end of the sync to the first answer, the nginx '
        "worker's refresh plus the probe's pause):",
        "",
    ]
    for m in (lua, ngx):
        lines.append(_stage_line(f"{m.mode}, first sync at {m.ingresses:,}", [m.first_sync]))
        if m.first_new_ingress is not None:
            lines.append(
                _stage_line(f"{m.mode}, first new Ingress (not counted)", [m.first_new_ingress])
            )
        if m.together:
            lines.append(
                _stage_line(
                    f"{m.mode}, new Ingress and rotation at once (the Ingress)", m.new_ingress
                )
            )
            lines.append(_stage_line(f"{m.mode}, the same (the rotation)", m.rotation))
        else:
            lines.append(_stage_line(f"{m.mode}, new Ingress", m.new_ingress))
            lines.append(_stage_line(f"{m.mode}, certificate rotation", m.rotation))
        if m.new_class is not None:
            lines.append(_stage_line(f"{m.mode}, Ingress of a new settings class", [m.new_class]))
    lines += ["", "Other figures:", ""]
    for m in (lua, ngx):
        lines.append(
            f"- {m.mode}: nginx.conf {m.conf_bytes:,} bytes, {m.server_blocks:,} server blocks, "
            f"{m.settings_classes} settings classes; after the first sync, nginx -t "
            f"{_show(m.test_ms, 'ms')} and reload {_show(m.reload_ms, 'ms')} (medians of "
            f"{m.steady_reloads}); reloads longer than the controller's 15 s reload_timeout: "
            f"{m.reloads_over_timeout}"
        )
        c = m.churn
        if c is not None and not c.whole:
            lines.append(
                f"- {m.mode}, churn: {c.route_changes:,} route + {c.endpoint_changes:,} endpoint "
                f"changes, window cut {c.seconds} s after the first change, once the first "
                f"reload after it was done: {c.reloads} reloads done, {c.syncs} syncs, one "
                f"still under way: {c.reloading}; wrk over {c.wrk_seconds} s: "
                f"{c.requests:,} requests, {c.non_2xx} non-2xx, {c.socket_errors} socket errors"
            )
        elif c is not None:
            lines.append(
                f"- {m.mode}, churn: {c.route_changes:,} route + {c.endpoint_changes:,} endpoint "
                f"changes applied in {c.seconds} s by {c.syncs} syncs, {c.reloads} reloads; wrk "
                f"over {c.wrk_seconds} s: {c.requests:,} requests, {c.non_2xx} non-2xx, "
                f"{c.socket_errors} socket errors; last changes served: {c.final_state_served}"
            )
    lines += [describe_dataplane(plane) for plane in result.dataplane]
    for name, figures in result.rss.items():
        mode, _, source = name.partition(", ")
        built = (
            f"{figures['rss_objects_mb']:.0f} MB with the objects built (the Store holds these), "
            if "rss_objects_mb" in figures
            else "objects listed through kubernetes-asyncio from a fake API server process, "
        )
        lines.append(
            f"- RSS, {mode} mode{', ' + source if source else ''}, fresh process: peak "
            f"{figures['rss_mb']:.0f} MB; {figures['rss_code_mb']:.0f} MB before any object, "
            f"{built}{figures.get('rss_synced_mb', 0):.0f} MB after the first sync"
        )
    if result.profile:
        lines += ["", "cProfile of the lua controller over the new Ingresses:", "", "```"]
        lines += result.profile
        lines += ["```"]
    return "\n".join(lines)


def _spread(values: Sequence[float]) -> str:
    """Lowest, quartiles, highest."""
    if len(values) < 2:
        return ", ".join(f"{v:.2f}" for v in values)
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{min(values):.2f} / {q1:.2f} / {q3:.2f} / {max(values):.2f}"


def describe_dataplane(plane: DataplaneFigures) -> str:
    """One line: medians, the pairs' ratios with their spread, CPU per request, the load."""
    text = (
        f"- data plane at {plane.hosts:,} hosts, {len(plane.lua_rps)} pairs of rounds (order "
        f"swapped each pair): lua {statistics.median(plane.lua_rps):,.0f} req/s (p99 "
        f"{statistics.median(plane.lua_p99_ms):.2f} ms), nginx "
        f"{statistics.median(plane.nginx_rps):,.0f} req/s (p99 "
        f"{statistics.median(plane.nginx_p99_ms):.2f} ms); req/s lua / nginx per pair: median "
        f"{plane.ratio:.3f}, min / q1 / q3 / max {_spread(plane.ratios)}"
    )
    if plane.cpu_ratios:
        text += (
            f"; nginx workers' CPU per request (utime + stime): lua "
            f"{statistics.median(plane.lua_cpu_us):.1f} us, nginx "
            f"{statistics.median(plane.nginx_cpu_us):.1f} us, nginx / lua per pair: median "
            f"{plane.cpu_ratio:.3f}, min / q1 / q3 / max {_spread(plane.cpu_ratios)}"
        )
    if plane.load:
        text += f"; load {' -> '.join(f'{v:.2f}' for v in plane.load)}"
    return text + f"; errors {plane.errors}"


def top_of(profile: cProfile.Profile, limit: int = 25) -> list[str]:
    """The ``limit`` functions of ingressd with the most cumulative time."""
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(r"ingressd|aiohttp/client", limit)
    text = out.getvalue().splitlines()
    start = next((k for k, line in enumerate(text) if "ncalls" in line), 0)
    return [line.rstrip() for line in text[start:] if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingresses", type=int, default=10_000)
    parser.add_argument("--tls-every", type=int, default=10)
    parser.add_argument("--samples", type=int, default=20, help="new Ingresses, lua mode")
    parser.add_argument("--nginx-samples", type=int, default=1, help="new Ingresses, nginx mode")
    parser.add_argument("--rotations", type=int, default=10)
    parser.add_argument("--nginx-rotations", type=int, default=1)
    parser.add_argument(
        "--nginx-apart",
        action="store_true",
        help="nginx mode: --nginx-samples new Ingresses, then --nginx-rotations rotations, "
        "each its own reload (default: one new Ingress and one rotation at once, one reload)",
    )
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--small-hosts", type=int, default=10)
    parser.add_argument("--rss-modes", default="lua,nginx")
    parser.add_argument("--profile", type=Path, help="cProfile of lua mode's new Ingresses")
    parser.add_argument(
        "--dataplane-only",
        action="store_true",
        help="only the data plane (5): at --small-hosts and at --ingresses hosts (0: not); "
        "JSON to results/routing-dataplane.json unless --json",
    )
    parser.add_argument(
        "--rss-sources",
        default="memory,kubernetes",
        help="where the RSS figure's objects come from: memory (built in the process) and/or "
        "kubernetes (listed through kubernetes-asyncio from a fake API server process)",
    )
    parser.add_argument("--json", type=Path, help="default: results/routing.json")
    parser.add_argument("--rss-of", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--rss-source", default="memory", help=argparse.SUPPRESS)
    parser.add_argument("--serve-api", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pod-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    configure(level="error")
    if args.serve_api:
        asyncio.run(serve_api(args.serve_api, args.ingresses, args.tls_every, args.pod_port))
        return
    if args.rss_of:
        figures = rss_of(args.rss_of, args.ingresses, args.tls_every, args.rss_source)
        print(json.dumps(asyncio.run(figures)))
        return
    print(f"machine: {machine()}", flush=True)
    results = Path(__file__).resolve().parent / "results"
    if args.dataplane_only:
        planes = asyncio.run(
            dataplane_only(
                ingresses=args.ingresses,
                small_hosts=args.small_hosts,
                tls_every=args.tls_every,
                rounds=args.rounds,
                seconds=args.seconds,
            )
        )
        print("\n".join(describe_dataplane(plane) for plane in planes))
        target = args.json or results / "routing-dataplane.json"
        target.parent.mkdir(exist_ok=True)
        target.write_text(json.dumps([asdict(plane) for plane in planes], indent=2))
        return
    profile = cProfile.Profile() if args.profile else None
    result = asyncio.run(
        measure(
            ingresses=args.ingresses,
            tls_every=args.tls_every,
            samples=args.samples,
            nginx_samples=args.nginx_samples,
            rotations_count=args.rotations,
            nginx_rotations=args.nginx_rotations,
            nginx_together=not args.nginx_apart,
            changes=args.changes,
            rate=args.rate,
            rounds=args.rounds,
            seconds=args.seconds,
            small_hosts=args.small_hosts,
            rss_modes=[m for m in args.rss_modes.split(",") if m],
            rss_sources=[m for m in args.rss_sources.split(",") if m],
            profile=profile,
        )
    )
    if profile is not None:
        profile.dump_stats(args.profile)
        result.profile = top_of(profile)
    print(describe(result))
    target = args.json or results / "routing.json"
    target.parent.mkdir(exist_ok=True)
    target.write_text(json.dumps(asdict(result), indent=2))


if __name__ == "__main__":
    main()
