"""The command line: ``ingressd run``, ``ingressd render`` and ``ingressd record``.

    ingressd run --manifests DIR  -> ManifestsSource -> runtime.Ingressd, until SIGTERM/SIGINT
    ingressd run --kubeconfig PATH (or in a pod) -> KubernetesSource -> runtime.Ingressd, same
    ingressd record --kubeconfig PATH --out TRACE.jsonl -> KubernetesSource -> recording.record
        (line 1: a header naming this ingressd and the options recorded with)
    ingressd render --manifests DIR -> Store -> build -> render -> stdout (nothing runs)
    ingressd check --manifests DIR | --kubeconfig PATH -> Store -> checking.check -> report
    ingressd replay TRACE.jsonl -> TraceSource -> runtime.Ingressd (dry run or live nginx)
        -> timeline + summary on stdout, --report JSON, --plot PNG (ingressd.tools.replay.replaying)
    ingressd replay --compare A.json B.json -> the first sync two reports diverge at (.compare)

``--log-level`` and ``--log-format`` may come before the command or after it.

``main`` parses the command line (``ingressd.cli.arguments``: every flag, and the Namespace ->
``Options`` step), sets up logging and runs one subcommand; the functions below are the
subcommands, each returning the exit status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from ingressd.app.runtime import Ingressd, Source
from ingressd.build.building import build_configuration
from ingressd.cli.arguments import options_from, parser
from ingressd.cluster.client import api_client, in_cluster
from ingressd.logs import configure
from ingressd.model import ObjectKey
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import NginxPaths, WorkDirError, render, route_context
from ingressd.nginx.routes import RouteTable, route_table
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.configmap import parse_configmap, unusable_options
from ingressd.store.sources.files import ManifestsSource
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.store import Store
from ingressd.tools.check import check
from ingressd.tools.record import record, trace_header

log = structlog.get_logger("ingressd")


async def _kube_client(args: argparse.Namespace) -> Any:
    """The ApiClient of ``--kubeconfig`` or of the pod; None (reported) when there is none."""
    if args.kubeconfig is None and not in_cluster():
        log.error("no source: give --manifests DIR or --kubeconfig PATH, or run in a pod")
        return None
    try:
        return await api_client(args.kubeconfig)
    except Exception as exc:
        log.error(
            "cannot load the Kubernetes configuration", path=str(args.kubeconfig), error=str(exc)
        )
        return None


def _kube_source(args: argparse.Namespace, api: Any, *, as_sent: bool = False) -> KubernetesSource:
    """``as_sent``: objects exactly as the API server sent them (``record``)."""
    return KubernetesSource(
        api,
        watch_namespace=args.watch_namespace,
        configmap=args.configmap,
        stream_configmaps=tuple(
            ObjectKey(getattr(args, name))
            for name in ("tcp_services_configmap", "udp_services_configmap")
            if getattr(args, name, None)
        ),
        resync_period=args.resync_period,
        keep_managed_fields=as_sent,
    )


async def _run(args: argparse.Namespace) -> int:
    if args.manifests is not None:
        if args.kubeconfig is not None:
            log.error("give one source: --manifests or --kubeconfig, not both")
            return 2
        if not args.manifests.is_dir():
            log.error("manifests directory not found", path=str(args.manifests))
            return 2
        if args.publish_service or args.publish_status_address:
            log.warning(
                "--publish-service / --publish-status-address need a Kubernetes source: "
                "no leader election, no Ingress status with --manifests"
            )
        return await _serve(args, ManifestsSource(args.manifests))
    api = await _kube_client(args)
    if api is None:
        return 2
    try:
        return await _serve(args, _kube_source(args, api), api=api)
    finally:
        await api.close()


async def _serve(args: argparse.Namespace, source: Source, api: Any = None) -> int:
    # A long-lived controller: the objects of the first sync leave the collector's generations.
    options = dataclasses.replace(options_from(args), freeze_gc=True)
    controller = Ingressd(options, source=source, api=api)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        # The first list may wait for an unreachable API server: a signal still stops us.
        starting = asyncio.create_task(controller.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("stopped before the first sync")
            await controller.stop()
            return 0
        starting.result()
    except Exception as exc:
        log.error("could not start", error=str(exc))
        await controller.stop()
        return 1
    await stop.wait()
    log.info("stopping: nginx finishes its requests first")
    await controller.stop()
    return 0


async def _record(args: argparse.Namespace) -> int:
    api = await _kube_client(args)
    if api is None:
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        count = await record(
            _kube_source(args, api, as_sent=True),
            args.out,
            duration=args.duration,
            keep_secret_data=args.keep_secret_data,
            stop=stop,
            header=trace_header(
                watch_namespace=args.watch_namespace,
                configmap=args.configmap,
                resync_period=args.resync_period,
                keep_secret_data=args.keep_secret_data,
            ),
        )
    finally:
        await api.close()
    log.info("trace recorded", path=str(args.out), events=count)
    return 0


def _render(args: argparse.Namespace) -> int:
    if args.manifests is None:
        print("error: render needs --manifests DIR", file=sys.stderr)
        return 2
    options = options_from(args)
    paths = NginxPaths(options.work_dir)  # first: a work dir it refuses wastes no build
    store = Store(
        channel=UpdateChannel(maxsize=1 << 30),
        configmap=args.configmap,
        stream_configmaps=options_from(args).stream_configmaps,
    )
    ManifestsSource(args.manifests).load_once(store.apply)
    snapshot = store.snapshot()
    configmap = snapshot.config_maps.get(args.configmap) if args.configmap else None
    global_options, option_problems = parse_configmap(configmap, snapshot.config_maps)
    result = build_configuration(snapshot, global_options.build_options(options.build_options()))
    for problem in (*option_problems, *result.problems):
        print(f"# skipped: {problem}", file=sys.stderr)
    settings = global_options.render_settings(options.render_settings())
    try:
        text = render(
            result.configuration,
            settings=settings,
            paths=paths,
            generation=1,
            template=args.template,
        )
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    if settings.routing == "lua":
        sys.stdout.write(
            _route_table_comment(route_table(result.configuration, route_context(settings)))
        )
    return 0


def _route_table_comment(table: RouteTable) -> str:
    """The hosts Lua routes (``--routing lua``), as comments after nginx.conf: what
    ``/debug/routes`` would show once ingressd sent them."""
    lines = ["", "# --routing lua: the route table ingressd sends to Lua (GET /debug/routes)"]
    lines += [f"# {host}: {entry}" for host, entry in sorted(table.entries.items())]
    lines += [
        f"# certificate of {host}: {uid}" for host, uid in sorted(table.certificate_hosts.items())
    ]
    return "\n".join(lines) + "\n"


async def _check(args: argparse.Namespace) -> int:
    """``ingressd check``: load every object once, build, report; 1 when behaviour changes."""
    store = Store(
        channel=UpdateChannel(maxsize=1 << 30),
        configmap=args.configmap,
        stream_configmaps=options_from(args).stream_configmaps,
    )
    if args.manifests is not None:
        if args.kubeconfig is not None:
            print("error: give one source: --manifests or --kubeconfig", file=sys.stderr)
            return 2
        if not args.manifests.is_dir():
            print(f"error: {args.manifests} is not a directory", file=sys.stderr)
            return 2
        ManifestsSource(args.manifests).load_once(store.apply)
    else:
        api = await _kube_client(args)
        if api is None:
            return 2
        try:
            await _kube_source(args, api).load_once(store.apply)
        finally:
            await api.close()
    snapshot = store.snapshot()
    configmap = snapshot.config_maps.get(args.configmap) if args.configmap else None
    global_options, option_problems = parse_configmap(configmap, snapshot.config_maps)
    build_options = global_options.build_options(options_from(args).build_options())
    moot = unusable_options(global_options, build_options, args.configmap)
    report = check(snapshot, build_options, option_problems=(*option_problems, *moot))
    if args.json:
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(report.format_table())
    return 1 if report.changes_behaviour else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fmt = args.log_format
    level = args.log_level or ("warning" if args.command == "replay" else "info")
    configure(level=level, json=None if fmt == "auto" else fmt == "json")
    try:
        return _command(args)
    except WorkDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _command(args: argparse.Namespace) -> int:
    if args.command == "run":
        return asyncio.run(_run(args))
    if args.command == "render":
        return _render(args)
    if args.command == "check":
        return asyncio.run(_check(args))
    if args.command == "record":
        return asyncio.run(_record(args))
    if args.command == "replay":
        from ingressd.tools.replay.replaying import command as replay

        if args.speed is not None and not args.speed > 0:
            print("error: --speed must be > 0", file=sys.stderr)
            return 2
        return asyncio.run(replay(args, options_from))
    return 2


if __name__ == "__main__":
    sys.exit(main())
