"""Trace replay: a recorded trace through the live pipeline, every sync decision collected.

    TRACE.jsonl --TraceSource--> Store --> updateChannel --> NginxController --> syncQueue
        --> SyncWorker --> DryRunNginx (render + nginx -t; serves nothing)   (--dry-run)
                       --> Nginx (the real one, serving on the run ports)     (--live)
    trace header (if any) --> the ConfigMap and watched namespace the options leave unset
    TraceSource.on_event --> EventLine per trace event (what the Store made of it; a rejected
                             one is logged with its line and why)
    SyncWorker --SyncOutcome--> SyncLine per sync (events it applied, decision, reasons,
                                durations, config hash after it) --on_sync--> printed at once
    end of trace + pipeline idle --> ReplayResult: timeline, summary, final config hash

A sync's line counts the events it applied: those its batch carried, and those no batch
carries but its snapshot held (the initial load's events the Store let pass without a
StoreEvent, a failed sync's events on its retry), so the first sync counts the whole initial
state.

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
included): neither the work dir nor the generation counter of the replay shows in it.  Each
timeline line carries the same hash of what runs after that sync, which ``replay --compare``
(``ingressd.tools.replay.compare``) compares between two replays.
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
from typing import Any, TextIO

import structlog

from ingressd.app.runtime import Ingressd, Options
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.nginx.rendering import NginxPaths
from ingressd.pipeline.syncing import SyncOutcome
from ingressd.store.events import StoreEvent
from ingressd.store.sources.trace import (
    NOT_WATCHED,
    TraceError,
    TraceEvent,
    TraceHeader,
    TraceSource,
    count_lines,
    read_start,
    size_error,
)
from ingressd.tools.replay.result import EventLine, ReplayResult, SyncLine, conf_sha256, config_hash

log = structlog.get_logger("ingressd.replay")

#: How many event keys a SyncLine keeps (the count is always exact).
MAX_KEYS = 5

#: What ``--plot`` says, before replaying anything, when the ``plot`` extra is not installed.
PLOT_NEEDS_MATPLOTLIB = "--plot needs matplotlib: pip install 'ingressd[plot]'"


class Replay:
    """One replay: an ``Ingressd`` fed by a ``TraceSource``; ``start``, ``wait``, ``stop``.

    The trace's header (``header``) fills in what ``options`` and ``watch_namespace`` leave
    unset: the controller's ConfigMap and the watched namespace it was recorded with
    (``from_header`` names what was taken).  ``progress`` is called after every event and every
    sync with (events handed on, syncs); ``on_sync`` with each timeline line as it is made.
    Raises ``TraceError`` when the trace's header, or a line before its first event, is bad.
    """

    def __init__(
        self,
        trace: Path,
        options: Options,
        *,
        live: bool = False,
        speed: float | None = 1.0,
        progress: Callable[[int, int], None] | None = None,
        on_sync: Callable[[SyncLine], None] | None = None,
        watch_namespace: str | None = None,
    ) -> None:
        start = read_start(trace)
        #: The trace's header line (None for a trace recorded before headers).
        self.header: TraceHeader | None = start.header
        #: Whether the trace holds any event at all.
        self.has_events = start.has_events
        self.from_header: dict[str, str] = {}
        header = start.header
        if header is not None and options.configmap is None and header.configmap is not None:
            options = dataclasses.replace(options, configmap=header.configmap)
            self.from_header["configmap"] = header.configmap
        if header is not None and watch_namespace is None and header.watch_namespace:
            watch_namespace = header.watch_namespace
            self.from_header["watch-namespace"] = watch_namespace
        if speed is None:
            options = dataclasses.replace(options, min_sync_interval=0.0)
        self.trace = trace
        self.options = options
        self.live = live
        self.speed = speed
        self.progress = progress
        self.on_sync = on_sync
        self.watch_namespace = watch_namespace
        self.source = TraceSource(
            trace,
            speed=speed,
            settle=self.wait_idle,
            on_event=self._on_event,
            watch_namespace=watch_namespace,
            configmap=options.configmap,
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
        # Events no batch will carry: those of the initial load the Store found irrelevant on
        # arrival (a Service before the Ingress using it; the initial sync reads the whole
        # Store, so it applies them too), and those of a sync that failed and will be retried.
        # The next successful sync that starts after one arrived applied it, and counts it.
        # (arrival time, index into ``events``)
        self._unbatched: list[tuple[float, int]] = []
        self._loading = False
        # (index into ``syncs``, start time, ok) of every sync, for attribution at the end
        self._starts: list[tuple[int, float, bool]] = []
        self._started = 0.0
        self._ignored_seen = 0
        self._rejected_seen = 0
        self._conf_sha256: str | None = None
        self._config_hash: str | None = None

    # -- collecting ------------------------------------------------------------------------------

    def _on_event(self, item: TraceEvent, result: object) -> None:
        store = self.ingressd.store
        ignored, rejected = sum(store.ignored.values()), store.rejected
        reason = None
        if isinstance(result, StoreEvent):
            outcome = "pending"
            self._accepted[id(result)] = (result, len(self.events))
        elif result is NOT_WATCHED:
            outcome = "skipped"
            reason = f"namespace not watched (--watch-namespace {self.watch_namespace})"
        elif ignored > self._ignored_seen:
            outcome = "skipped"
        elif rejected > self._rejected_seen:
            outcome = "rejected"
            reason = rejection_reason(item.event.object)
            log.warning(
                "trace line rejected", line=item.line, kind=item.kind, name=item.name, reason=reason
            )
        elif self._loading:
            outcome = "pending"
            self._unbatched.append((time.monotonic(), len(self.events)))
        else:
            outcome = "unchanged"
        self._ignored_seen, self._rejected_seen = ignored, rejected
        self.events.append(
            EventLine(
                item.line,
                item.t,
                item.event.type.value,
                item.kind,
                item.name,
                outcome,
                reason=reason,
            )
        )
        if self.progress is not None:
            self.progress(len(self.events), len(self.syncs))

    def _on_sync(self, outcome: SyncOutcome) -> None:
        batch, record = outcome.batch, outcome.record
        end = time.monotonic()
        ok = outcome.applied
        covered: list[tuple[int, str, str]] = []  # (index into events, kind, key) for the line
        newest: float | None = None
        for store_event in batch.events:
            kind = store_event.kind.value
            key = f"{kind} {store_event.key} {store_event.type.value}"
            found = self._accepted.pop(id(store_event), None)
            if found is None:
                covered.append((len(self.events), kind, key))
                continue
            covered.append((found[1], kind, key))
            line = self.events[found[1]]
            newest = line.t if newest is None else max(newest, line.t)
            self._settle_event(line, record.number, end, store_event.received_at, ok)
            if record.result == "error":
                # Retried: the next successful sync applies it (a "rejected" one stays failed).
                self._unbatched.append((store_event.received_at, found[1]))
        swept = 0
        if ok:
            # What no batch carries but this sync's snapshot held: it applied those too.
            waiting = []
            for arrived, index in self._unbatched:
                if arrived > batch.started_at:
                    waiting.append((arrived, index))
                    continue
                line = self.events[index]
                newest = line.t if newest is None else max(newest, line.t)
                self._settle_event(line, record.number, end, arrived, True)
                covered.append((index, line.kind, f"{line.kind} {line.name} {line.type}"))
                swept += 1
            self._unbatched = waiting
        covered.sort(key=lambda entry: entry[0])
        self._starts.append((len(self.syncs), batch.started_at, ok))
        sync = SyncLine(
            number=record.number,
            t=newest if newest is not None else self.source.position,
            wall=end - self._started,
            events=record.events + swept,
            kinds=dict(collections.Counter(kind for _, kind, _ in covered)),
            keys=tuple(key for _, _, key in covered[:MAX_KEYS]),
            causes=record.causes,
            decision=record.action,
            result=record.result,
            reasons=record.reasons,
            build_seconds=record.build_seconds,
            diff_seconds=record.diff_seconds,
            apply_seconds=record.apply_seconds,
            backends_posted=record.backends_posted,
            error=record.error,
            config_hash=self._running_hash(ok, record.action),
        )
        self.syncs.append(sync)
        if self.on_sync is not None:
            self.on_sync(sync)
        if self.progress is not None:
            self.progress(len(self.events), len(self.syncs))

    def _running_hash(self, ok: bool, action: str) -> str | None:
        """``config_hash()`` of what runs now.  Worked out again only when a sync changed it:
        the model after a dynamic update or a reload, nginx.conf after a reload ("nothing"
        means the models are equal; a failed sync leaves the running one)."""
        worker, nginx = self.ingressd.worker, self.ingressd.nginx
        running = worker.running
        if not ok or running is None:
            return self._config_hash
        if action == "nothing" and self._config_hash is not None:
            return self._config_hash
        if action == "reload" or self._conf_sha256 is None:
            settings = worker.running_settings or nginx.settings
            self._conf_sha256 = conf_sha256(running, settings, nginx.template)
        self._config_hash = config_hash(running.digest(), self._conf_sha256)
        return self._config_hash

    @staticmethod
    def _settle_event(line: EventLine, sync: int, end: float, arrived: float, ok: bool) -> None:
        line.sync = sync
        line.outcome = "applied" if ok else "failed"
        if ok:
            line.latency = end - arrived

    def _attribute_covered(self) -> None:
        """Events that no batch carried and no sync counted yet (accepted ones whose task was
        coalesced away or that a full channel dropped, failed ones no later sync succeeded
        for yet) were applied by the first successful sync that started after they arrived:
        each sync reads the whole Store.  That sync's line counts them."""
        waiting = [(e.received_at, index) for e, index in self._accepted.values()]
        for arrived, index in sorted([*waiting, *self._unbatched], key=lambda entry: entry[1]):
            for position, started, ok in self._starts:
                if ok and started >= arrived:
                    sync = self.syncs[position]
                    line = self.events[index]
                    end = self._started + sync.wall
                    self._settle_event(line, sync.number, end, arrived, True)
                    kinds = collections.Counter(sync.kinds)
                    kinds[line.kind] += 1
                    keys = sync.keys
                    if len(keys) < MAX_KEYS:
                        keys = (*keys, f"{line.kind} {line.name} {line.type}")
                    self.syncs[position] = dataclasses.replace(
                        sync, events=sync.events + 1, kinds=dict(kinds), keys=keys
                    )
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
        skipped = dict(self.ingressd.store.ignored)
        for kind, count in self.source.unwatched.items():
            skipped[f"{kind} (other namespaces)"] = count
        return ReplayResult(
            trace=str(self.trace),
            mode="live" if self.live else "dry-run",
            speed=self.speed,
            events=list(self.events),
            syncs=list(self.syncs),
            skipped_kinds=skipped,
            watch_markers=self.source.watch_markers,
            placeholders=self.source.placeholders,
            wall_seconds=time.monotonic() - self._started,
            final_config_hash=config_hash(model, conf),
            final_model_sha256=model,
            final_conf_sha256=conf,
            error=self.source.error,
            header=self.header.to_json() if self.header is not None else None,
            from_header=dict(self.from_header),
            trace_sha256=self.source.sha256,
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


def rejection_reason(obj: dict[str, Any]) -> str:
    """Why the Store drops an object of a kind it caches (``Store.rejected``): no usable name."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return "metadata: missing (expected a mapping with a name)"
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return f"metadata.name: expected a non-empty string, got {name!r}"
    return "the Store refused it"


async def replay(
    trace: Path,
    options: Options,
    *,
    live: bool = False,
    speed: float | None = None,
    progress: Callable[[int, int], None] | None = None,
    watch_namespace: str | None = None,
) -> ReplayResult:
    """Replay ``trace`` start to end (fast, dry run by default) and return the result."""
    async with Replay(
        trace,
        options,
        live=live,
        speed=speed,
        progress=progress,
        watch_namespace=watch_namespace,
    ) as run:
        return await run.wait()


# -- the command -------------------------------------------------------------------------------


async def command(
    args: argparse.Namespace, make_options: Callable[[argparse.Namespace], Options]
) -> int:
    """``ingressd replay``: replay, print the timeline and summary, write the report and plot;
    or, with ``--compare A.json B.json``, compare two reports.

    Exit status: 0 replayed to the end (--compare: the two agree); 1 stopped at a line that
    does not parse, a trace with no events or too large, could not start (--compare: they
    diverge); 2 no such trace or report, or --plot without matplotlib; 130 interrupted
    (SIGINT/SIGTERM; the summary so far is still printed).
    """
    if args.compare is not None:
        if args.trace is not None:
            print(
                "error: give a trace to replay or --compare A.json B.json, not both",
                file=sys.stderr,
            )
            return 2
        from ingressd.tools.replay.compare import compare_files

        return compare_files(*args.compare, out=sys.stdout)
    if args.trace is None:
        print("error: replay needs TRACE.jsonl (or --compare A.json B.json)", file=sys.stderr)
        return 2
    if not args.trace.is_file():
        log.error("trace not found", path=str(args.trace))
        return 2
    refused = _refuse(args.trace)
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 1
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
    try:
        return await _replay_command(args, make_options(args))
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)


def _refuse(trace: Path) -> str | None:
    """Why ``trace`` cannot be replayed at all (too large, a bad header, no events), or None."""
    too_large = size_error(trace)
    if too_large is not None:
        return too_large
    try:
        start = read_start(trace)
    except TraceError as exc:
        return f"{trace}: {exc}"
    if not start.has_events:
        return (
            f"{trace}: no events (a trace needs at least one ADDED, MODIFIED or DELETED line; "
            "docs/trace-format.md)"
        )
    return None


async def _replay_command(args: argparse.Namespace, options: Options) -> int:
    from ingressd.tools.replay import report as replay_report

    out = Output(sys.stdout)
    # Piped or redirected: each sync line as it happens (a terminal gets the progress bar).
    streaming = not out.isatty()
    bar = replay_report.ProgressBar(count_lines(args.trace) if sys.stderr.isatty() else 0)

    def print_sync(sync: SyncLine) -> None:
        if streaming:
            out.line(replay_report.timeline_line(sync))

    run = Replay(
        args.trace,
        options,
        live=args.live,
        speed=None if args.fast else args.speed,
        progress=bar,
        on_sync=print_sync,
        watch_namespace=args.watch_namespace,
    )
    mode = "live" if args.live else "dry-run"
    pace = "fast" if args.fast else f"{args.speed:g}x"
    for line in replay_report.preamble_lines(
        str(args.trace), mode, pace, run.header, run.from_header
    ):
        out.line(line)
    if streaming:
        out.line(replay_report.timeline_header())
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
    _write_outputs(result, args.report, args.plot, out, timeline=not streaming)
    if result.interrupted:
        return 130
    return 1 if result.error is not None else 0


class Output:
    """Lines to stdout, flushed one by one; once the reader has gone (``| head``), the rest
    is dropped instead of raising ``BrokenPipeError``, and the replay finishes its work."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False

    def isatty(self) -> bool:
        return self.stream.isatty()

    def line(self, text: str) -> None:
        if self.closed:
            return
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            # Python flushes stdout again at exit: point it at /dev/null so that raises nothing.
            with contextlib.suppress(OSError, ValueError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self.stream.fileno())
                os.close(devnull)


def _can_plot() -> bool:
    """Whether ``ingressd.tools.replay.plot`` imports: matplotlib is an extra (``plot``)."""
    try:
        importlib.import_module("ingressd.tools.replay.plot")
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] != "matplotlib":
            raise
        return False
    return True


def _write_outputs(
    result: ReplayResult,
    report_path: Path | None,
    plot_path: Path | None,
    out: Output,
    *,
    timeline: bool = True,
) -> None:
    from ingressd.tools.replay import report as replay_report

    if timeline:
        for line in replay_report.timeline_lines(result):
            out.line(line)
    out.line("\nsummary")
    for line in replay_report.summary_lines(result):
        out.line("  " + line)
    if result.error is not None:
        log.error("trace stopped", line=result.error.line, reason=result.error.reason)
    if report_path is not None:
        report_path.write_text(json.dumps(replay_report.report(result), indent=2) + "\n")
        out.line(f"  report             {report_path}")
    if plot_path is not None:
        from ingressd.tools.replay.plot import plot

        plot(result, plot_path)
        out.line(f"  plot               {plot_path}")
