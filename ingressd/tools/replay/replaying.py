"""Trace replay: a recorded trace through the live pipeline, every sync decision collected.

    TRACE.jsonl --TraceSource--> Store --> updateChannel --> NginxController --> syncQueue
        --> SyncWorker --> DryRunNginx (render + nginx -t; serves nothing)   (--dry-run)
                       --> Nginx (the real one, serving on the run ports)     (--live)
    TraceSource.on_event --> EventLine per trace event (what the Store made of it)
    SyncWorker --SyncOutcome--> SyncLine per sync (events covered, decision, reasons, durations)
    end of trace + pipeline idle --> ReplayResult: timeline, summary, final config hash

The assembly is ``runtime.Ingressd`` itself, with the trace as its source and, for a dry run, a
``DryRunNginx`` as its driver: the same Store, channel, controller, queue and worker as ``run``.
This module runs it and collects; the collected values (``EventLine``, ``SyncLine``,
``ReplayResult`` and its summary, the hashes) are in ``ingressd.tools.replay.result``.
``command`` is ``ingressd replay``: it prints them through ``ingressd.tools.replay.report``.

Pacing: ``speed=X`` hands event ``t`` over at ``t / X`` seconds after the start (syncs coalesce
as they would have live); ``speed=None`` is fast mode: events sharing one ``t`` go in together and
the next group waits until the pipeline is idle, so every group gets its own sync and the
decisions do not depend on the machine's speed.  Fast mode also sets the syncQueue's
``min_interval`` to 0: with one group in flight at a time there is nothing to pace.

Determinism: in fast dry-run mode the same trace gives the same decisions and the same final
config hash.  That hash covers the running model's digest (``Configuration.digest()``, endpoints
included) and the sha256 of its nginx.conf rendered with a fixed work dir
(``replay_result.HASH_WORK_DIR``), generation 0 and the running settings (the ConfigMap's
included): neither the work dir nor the generation counter of the replay shows in it.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import importlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from ingressd.app.runtime import Ingressd, Options
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.nginx.rendering import NginxPaths
from ingressd.pipeline.syncing import SyncOutcome
from ingressd.store.events import StoreEvent
from ingressd.store.sources.trace import TraceEvent, TraceSource, count_lines
from ingressd.tools.replay.result import EventLine, ReplayResult, SyncLine, conf_sha256, config_hash

log = structlog.get_logger("ingressd.replay")

#: How many event keys a SyncLine keeps (the count is always exact).
MAX_KEYS = 5

#: What ``--plot`` says, before replaying anything, when the ``plot`` extra is not installed.
PLOT_NEEDS_MATPLOTLIB = "--plot needs matplotlib: pip install 'ingressd[plot]'"


class Replay:
    """One replay: an ``Ingressd`` fed by a ``TraceSource``; ``start``, ``wait``, ``stop``.

    ``progress`` is called after every event and every sync with (events handed on, syncs).
    """

    def __init__(
        self,
        trace: Path,
        options: Options,
        *,
        live: bool = False,
        speed: float | None = 1.0,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        if speed is None:
            options = dataclasses.replace(options, min_sync_interval=0.0)
        self.trace = trace
        self.options = options
        self.live = live
        self.speed = speed
        self.progress = progress
        self.source = TraceSource(
            trace, speed=speed, settle=self.wait_idle, on_event=self._on_event
        )
        driver = None
        if not live:
            driver = DryRunNginx(
                settings=options.render_settings(),
                paths=NginxPaths(options.work_dir),
                template=options.template,
            )
        self.ingressd = Ingressd(options, source=self.source, nginx=driver)
        self.ingressd.worker.add_listener(self._on_sync)
        self.events: list[EventLine] = []
        self.syncs: list[SyncLine] = []
        # StoreEvent (by identity) -> (the StoreEvent, index into ``events``)
        self._accepted: dict[int, tuple[StoreEvent, int]] = {}
        # Events no batch will carry to success: those of the initial load the Store found
        # irrelevant on arrival (a Service before the Ingress using it; the initial sync reads
        # the whole Store, so it applies them too), and those of a sync that failed and will be
        # retried.  (arrival time, index into ``events``)
        self._unbatched: list[tuple[float, int]] = []
        self._loading = False
        self._ends: list[tuple[int, float, bool]] = []  # (sync, end time, ok) for attribution
        self._started = 0.0
        self._ignored_seen = 0
        self._rejected_seen = 0

    # -- collecting ------------------------------------------------------------------------------

    def _on_event(self, item: TraceEvent, result: object) -> None:
        store = self.ingressd.store
        ignored, rejected = sum(store.ignored.values()), store.rejected
        if isinstance(result, StoreEvent):
            outcome = "pending"
            self._accepted[id(result)] = (result, len(self.events))
        elif ignored > self._ignored_seen:
            outcome = "skipped"
        elif rejected > self._rejected_seen:
            outcome = "rejected"
        elif self._loading:
            outcome = "pending"
            self._unbatched.append((time.monotonic(), len(self.events)))
        else:
            outcome = "unchanged"
        self._ignored_seen, self._rejected_seen = ignored, rejected
        self.events.append(
            EventLine(item.line, item.t, item.event.type.value, item.kind, item.name, outcome)
        )
        if self.progress is not None:
            self.progress(len(self.events), len(self.syncs))

    def _on_sync(self, outcome: SyncOutcome) -> None:
        batch, record = outcome.batch, outcome.record
        end = time.monotonic()
        ok = outcome.applied
        kinds: collections.Counter[str] = collections.Counter()
        keys: list[str] = []
        newest: float | None = None
        for store_event in batch.events:
            kinds[store_event.kind.value] += 1
            if len(keys) < MAX_KEYS:
                keys.append(f"{store_event.kind.value} {store_event.key} {store_event.type.value}")
            found = self._accepted.pop(id(store_event), None)
            if found is None:
                continue
            line = self.events[found[1]]
            newest = line.t if newest is None else max(newest, line.t)
            self._settle_event(line, record.number, end, store_event.received_at, ok)
            if record.result == "error":
                # Retried: the next successful sync applies it (a "rejected" one stays failed).
                self._unbatched.append((store_event.received_at, found[1]))
        self._ends.append((record.number, end, ok))
        self.syncs.append(
            SyncLine(
                number=record.number,
                t=newest if newest is not None else self.source.position,
                wall=end - self._started,
                events=record.events,
                kinds=dict(kinds),
                keys=tuple(keys),
                causes=record.causes,
                decision=record.action,
                result=record.result,
                reasons=record.reasons,
                build_seconds=record.build_seconds,
                diff_seconds=record.diff_seconds,
                apply_seconds=record.apply_seconds,
                backends_posted=record.backends_posted,
                error=record.error,
            )
        )
        if self.progress is not None:
            self.progress(len(self.events), len(self.syncs))

    @staticmethod
    def _settle_event(line: EventLine, sync: int, end: float, arrived: float, ok: bool) -> None:
        line.sync = sync
        line.outcome = "applied" if ok else "failed"
        if ok:
            line.latency = end - arrived

    def _attribute_covered(self) -> None:
        """Events that no batch carried (initial-load events the Store let pass, accepted ones
        whose task was coalesced away or that a full channel dropped) were applied by the first
        successful sync that ended after they arrived: each sync reads the whole Store."""
        waiting = [(e.received_at, index) for e, index in self._accepted.values()]
        for arrived, index in [*waiting, *self._unbatched]:
            for number, end, ok in self._ends:
                if ok and end > arrived:
                    self._settle_event(self.events[index], number, end, arrived, True)
                    break
        self._accepted.clear()
        self._unbatched.clear()

    # -- running ---------------------------------------------------------------------------------

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Until the updateChannel and the syncQueue are empty and no sync runs.

        With ``min_interval`` > 0 the syncQueue may hold a task out of its queue while it waits
        for its turn, so the idle state must then last that long with no sync starting.
        Returns False on ``timeout``.
        """
        ing = self.ingressd
        quiet = ing.queue.min_interval + 0.02 if ing.queue.min_interval > 0 else 0.0
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        last: tuple[int, bool, bool, int] | None = None
        since = loop.time()
        spins = 0
        while True:
            state = (ing.channel.qsize(), ing.queue.idle, ing.worker.busy, ing.worker.count)
            idle = state[0] == 0 and state[1] and not state[2]
            now = loop.time()
            if state != last:
                last, since, spins = state, now, 0
            if idle and now - since >= quiet:
                return True
            if deadline is not None and now > deadline:
                return False
            # Bare yields first (most hand-offs take one loop turn), then short sleeps while a
            # sync waits on nginx -t or a reload.
            spins += 1
            await asyncio.sleep(0 if spins <= 16 else 0.0005)

    async def start(self) -> None:
        self._started = time.monotonic()
        # Ingressd.start() runs the source's load_once (the trace's t=0 events) and returns
        # before any loop runs: what arrives meanwhile is the initial load.
        self._loading = True
        try:
            await self.ingressd.start()
        finally:
            self._loading = False

    async def wait(self, *, settle_timeout: float = 60.0) -> ReplayResult:
        """Until every event has been handed on and the pipeline is idle; then the result."""
        await self.source.done.wait()
        settled = await self.wait_idle(timeout=settle_timeout)
        return self.result(settled=settled)

    def result(self, *, settled: bool = True, interrupted: bool = False) -> ReplayResult:
        self._attribute_covered()
        worker, nginx = self.ingressd.worker, self.ingressd.nginx
        running = worker.running
        model = running.digest() if running is not None else None
        conf = None
        if running is not None:
            conf = conf_sha256(running, worker.running_settings or nginx.settings, nginx.template)
        return ReplayResult(
            trace=str(self.trace),
            mode="live" if self.live else "dry-run",
            speed=self.speed,
            events=list(self.events),
            syncs=list(self.syncs),
            skipped_kinds=dict(self.ingressd.store.ignored),
            watch_markers=self.source.watch_markers,
            placeholders=self.source.placeholders,
            wall_seconds=time.monotonic() - self._started,
            final_config_hash=config_hash(model, conf),
            final_model_sha256=model,
            final_conf_sha256=conf,
            error=self.source.error,
            settled=settled,
            interrupted=interrupted,
        )

    async def stop(self) -> None:
        await self.ingressd.stop()

    async def __aenter__(self) -> Replay:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def replay(
    trace: Path,
    options: Options,
    *,
    live: bool = False,
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReplayResult:
    """Replay ``trace`` start to end (fast, dry run by default) and return the result."""
    async with Replay(trace, options, live=live, speed=speed, progress=progress) as run:
        return await run.wait()


# -- the command -------------------------------------------------------------------------------


async def command(
    args: argparse.Namespace, make_options: Callable[[argparse.Namespace], Options]
) -> int:
    """``ingressd replay``: replay, print the timeline and summary, write the report and plot.

    Exit status: 0 replayed to the end; 1 stopped at a line that does not parse, or could not
    start; 2 no such trace, or --plot without matplotlib; 130 interrupted (SIGINT/SIGTERM; the
    summary so far is still printed).
    """
    from ingressd.tools.replay import report as replay_report

    if not args.trace.is_file():
        log.error("trace not found", path=str(args.trace))
        return 2
    if args.plot is not None and not _can_plot():
        print(f"error: {PLOT_NEEDS_MATPLOTLIB}", file=sys.stderr)
        return 2
    if args.status_port is None:
        args.status_port = 10254 if args.live else 0
    scratch: Path | None = None
    if args.work_dir is None and not args.live:
        scratch = Path(tempfile.mkdtemp(prefix="ingressd-replay-"))
        os.chmod(scratch, 0o755)
        args.work_dir = scratch
    options = make_options(args)
    speed = None if args.fast else args.speed
    bar = replay_report.ProgressBar(count_lines(args.trace))
    run = Replay(args.trace, options, live=args.live, speed=speed, progress=bar)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        try:
            await run.start()
        except Exception as exc:
            log.error("could not start", error=str(exc))
            return 1
        finished = asyncio.create_task(run.wait())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({finished, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if finished.done():
            result = finished.result()
        else:
            finished.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await finished
            result = run.result(settled=False, interrupted=True)
    finally:
        bar.close()
        await run.stop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    _write_outputs(result, args.report, args.plot)
    if result.interrupted:
        return 130
    return 1 if result.error is not None else 0


def _can_plot() -> bool:
    """Whether ``ingressd.tools.replay.plot`` imports: matplotlib is an extra (``plot``)."""
    try:
        importlib.import_module("ingressd.tools.replay.plot")
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        return False
    return True


def _write_outputs(result: ReplayResult, report_path: Path | None, plot_path: Path | None) -> None:
    from ingressd.tools.replay import report as replay_report

    out = sys.stdout
    out.write(f"replay {result.trace} ({result.mode}, {result.pace})\n")
    for line in replay_report.timeline_lines(result):
        out.write(line + "\n")
    out.write("\nsummary\n")
    for line in replay_report.summary_lines(result):
        out.write("  " + line + "\n")
    if result.error is not None:
        log.error("trace stopped", line=result.error.line, reason=result.error.reason)
    if report_path is not None:
        report_path.write_text(json.dumps(replay_report.report(result), indent=2) + "\n")
        out.write(f"  report             {report_path}\n")
    if plot_path is not None:
        from ingressd.tools.replay.plot import plot

        plot(result, plot_path)
        out.write(f"  plot               {plot_path}\n")
    out.flush()
