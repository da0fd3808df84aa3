"""The command line: ``ingressd run``, ``ingressd render`` and ``ingressd record``.

    ingressd run --manifests DIR  -> ManifestsSource -> runtime.Ingressd, until SIGTERM/SIGINT
    ingressd run --kubeconfig PATH (or in a pod) -> KubernetesSource -> runtime.Ingressd, same
    ingressd record --kubeconfig PATH --out TRACE.jsonl -> KubernetesSource -> recording.record
    ingressd render --manifests DIR -> Store -> build -> render -> stdout (nothing runs)
    ingressd check --manifests DIR | --kubeconfig PATH -> Store -> checking.check -> report
    ingressd replay TRACE.jsonl -> TraceSource -> runtime.Ingressd (dry run or live nginx)
        -> timeline + summary on stdout, --report JSON, --plot PNG (ingressd.replaying)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from ingressd import __version__
from ingressd.annotations import DEFAULT_PREFIX
from ingressd.building import build_configuration
from ingressd.channel import UpdateChannel
from ingressd.checking import check
from ingressd.cluster import ClusterOptions
from ingressd.configmap import parse_configmap
from ingressd.election import DEFAULT_ELECTION_ID
from ingressd.kubeclient import api_client, in_cluster
from ingressd.logs import configure
from ingressd.model import ObjectKey
from ingressd.nginx.quoting import RenderError
from ingressd.nginx.rendering import DEFAULT_TEMPLATE, NginxPaths, render
from ingressd.recording import record
from ingressd.runtime import (
    CONTROLLER_NAME,
    DEFAULT_MIN_SYNC_INTERVAL,
    Ingressd,
    Options,
    Source,
)
from ingressd.store.sources.files import ManifestsSource
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.store import Store
from ingressd.validation import validate_dns1123_subdomain

log = structlog.get_logger("ingressd")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def _namespaced_name(text: str) -> ObjectKey:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAMESPACE/NAME")
    return ObjectKey(text)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests", type=Path, default=None, metavar="DIR",
        help="directory of YAML/JSON Kubernetes manifests, watched for changes (run: instead "
        "of --kubeconfig)",
    )
    parser.add_argument(
        "--ingress-class", default="ingressd", metavar="NAME",
        help="IngressClass name this controller serves (default: ingressd); an IngressClass "
        f"with spec.controller {CONTROLLER_NAME} is served too",
    )
    parser.add_argument(
        "--configmap", type=_namespaced_name, metavar="NAMESPACE/NAME",
        help="the controller's ConfigMap; changes to it force a sync",
    )
    parser.add_argument(
        "--template", type=Path, default=DEFAULT_TEMPLATE, metavar="FILE",
        help="nginx.conf jinja2 template (default: templates/nginx.conf.j2)",
    )
    parser.add_argument("--http-port", type=_port, default=80, help="HTTP port (default: 80)")
    parser.add_argument("--https-port", type=_port, default=443, help="HTTPS port (default: 443)")
    parser.add_argument(
        "--control-port", type=_port, default=10246,
        help="loopback port of nginx's Lua configuration endpoint (default: 10246)",
    )
    parser.add_argument(
        "--worker-processes", default="auto", help="nginx worker_processes (default: auto)"
    )
    parser.add_argument(
        "--min-sync-interval", type=float, default=DEFAULT_MIN_SYNC_INTERVAL, metavar="SECONDS",
        help="under sustained change, start syncs at most this often; the first change after "
        f"a quiet period is applied at once (default: {DEFAULT_MIN_SYNC_INTERVAL})",
    )
    _annotation_flags(parser)


def _annotation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations-prefix", type=_annotations_prefix, default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"prefix of the ingress-nginx annotations read (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--allow-snippet-annotations", action="store_true",
        help="accept configuration-snippet and server-snippet: raw nginx directives from "
        "whoever may edit an Ingress (off by default, see CVE-2021-25742)",
    )


def _annotations_prefix(text: str) -> str:
    prefix = text.rstrip("/")
    if validate_dns1123_subdomain(prefix) is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a DNS name such as {DEFAULT_PREFIX}")
    return prefix


def _kubernetes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, metavar="PATH",
        help="watch the cluster of this kubeconfig (its current context); without it and "
        "without --manifests, inside a pod: the in-cluster configuration",
    )
    parser.add_argument(
        "--watch-namespace", default=None, metavar="NS",
        help="watch namespaced objects in this namespace only (default: all namespaces)",
    )
    parser.add_argument(
        "--resync-period", type=float, default=600.0, metavar="SECONDS",
        help="relist every kind this often; only differences are applied (default: 600)",
    )


def _cluster(parser: argparse.ArgumentParser) -> None:
    """Leader election and Ingress status (with a Kubernetes source only)."""
    parser.add_argument(
        "--election-id", default=DEFAULT_ELECTION_ID, metavar="NAME",
        help="the coordination.k8s.io Lease replicas elect a leader through; only the leader "
        f"writes Ingress status (default: {DEFAULT_ELECTION_ID})",
    )
    parser.add_argument(
        "--election-namespace", default=None, metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument(
        "--publish-service", type=_namespaced_name, default=None, metavar="NAMESPACE/NAME",
        help="write this Service's load balancer addresses (or external/cluster IPs) into "
        "the status of the Ingresses served",
    )
    parser.add_argument(
        "--publish-status-address", default=None, metavar="ADDR[,ADDR]",
        help="write these addresses (IPs and host names) into the Ingress status instead",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ingressd",
        description="Kubernetes Ingress controller driving a real nginx: endpoint changes through "
        "Lua with no reload, validated reloads only when nginx.conf must change.",
    )
    top.add_argument("--version", action="version", version=f"ingressd {__version__}")
    top.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=None,
        help="default: info (replay: warning, its timeline shows every sync)",
    )
    top.add_argument(
        "--log-format", choices=["auto", "json", "console"], default="auto",
        help="auto: JSON unless stderr is a terminal",
    )
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve the Ingresses of a manifests directory through nginx")
    _common(run)
    run.add_argument(
        "--status-port", type=_port, default=10254,
        help="admin server port: /healthz, /metrics, /debug/* (default: 10254)",
    )
    run.add_argument(
        "--reload-always", action="store_true",
        help="apply every change, endpoint changes too, by a full nginx reload (as controllers "
        "without a dynamic path do; for comparisons and benchmarks)",
    )
    run.add_argument(
        "--status-address", default="0.0.0.0", help="admin server address (default: 0.0.0.0)"
    )
    run.add_argument(
        "--work-dir", type=Path, default=None, metavar="DIR",
        help="nginx prefix: nginx.conf, certificates, logs, temp files "
        "(default: /tmp/ingressd-<http port>)",
    )
    _kubernetes(run)
    _cluster(run)

    chk = sub.add_parser(
        "check",
        help="migration check: how ingressd would treat each Ingress's ingress-nginx "
        "annotations, missing Services/Secrets, host/path conflicts; exit 1 when behaviour "
        "would change",
    )
    _common(chk)
    _kubernetes(chk)
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.set_defaults(work_dir=Path("/var/lib/ingressd"))

    rend = sub.add_parser("render", help="print the nginx.conf the manifests produce; runs nothing")
    _common(rend)
    rend.add_argument(
        "--work-dir", type=Path, default=Path("/var/lib/ingressd"), metavar="DIR",
        help="work dir the printed paths refer to (default: /var/lib/ingressd)",
    )

    rec = sub.add_parser(
        "record", help="write every event the Kubernetes informers see to a trace (JSON lines)"
    )
    _kubernetes(rec)
    rec.add_argument("--out", type=Path, required=True, metavar="TRACE.jsonl",
                     help="the trace file (replaced); format: docs/trace-format.md")
    rec.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="stop after this long (default: at SIGINT/SIGTERM)")
    rec.add_argument("--keep-secret-data", action="store_true",
                     help="keep Secret data values (default: replaced by \"REDACTED\")")
    rec.add_argument("--configmap", type=_namespaced_name, metavar="NAMESPACE/NAME",
                     help="record this ConfigMap too")
    _replay_parser(sub)
    return top


def _replay_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "replay",
        help="feed a recorded trace through the pipeline; print every sync decision",
        description="Replay a trace (docs/trace-format.md) through the Store, updateChannel, "
        "NginxController, syncQueue and sync worker; print one line per sync and a summary "
        "(docs/replay.md).",
    )
    rep.add_argument("trace", type=Path, metavar="TRACE.jsonl", help="the recorded trace")
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", dest="live", action="store_false",
        help="render and nginx -t every candidate configuration; serve nothing (default)",
    )
    mode.add_argument(
        "--live", dest="live", action="store_true",
        help="run nginx as `run` does, on the same ports: traffic can be sent during the replay",
    )
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed", type=float, default=1.0, metavar="X",
        help="replay at X times the recorded pace (default: 1)",
    )
    pace.add_argument(
        "--fast", action="store_true",
        help="as fast as the pipeline takes it: each group of events sharing a time waits for "
        "the previous one to be applied (deterministic)",
    )
    rep.add_argument("--report", type=Path, metavar="FILE.json", help="write everything as JSON")
    rep.add_argument(
        "--plot", type=Path, metavar="FILE.png", help="draw the timeline and latencies (PNG)"
    )
    _common(rep)
    rep.add_argument(
        "--status-port", type=lambda text: 0 if text == "0" else _port(text), default=None,
        help="admin server port (default: 10254 with --live, any free port for a dry run)",
    )
    rep.add_argument(
        "--status-address", default="0.0.0.0", help="admin server address (default: 0.0.0.0)"
    )
    rep.add_argument(
        "--work-dir", type=Path, default=None, metavar="DIR",
        help="nginx prefix (default: --live /tmp/ingressd-<http port>; a dry run uses a "
        "temporary directory, removed afterwards)",
    )
    rep.set_defaults(live=False)


def _options(args: argparse.Namespace) -> Options:
    work_dir = args.work_dir or Path(tempfile.gettempdir()) / f"ingressd-{args.http_port}"
    return Options(
        work_dir=work_dir.resolve(),
        http_port=args.http_port,
        https_port=args.https_port,
        status_port=getattr(args, "status_port", 10254),
        status_address=getattr(args, "status_address", "0.0.0.0"),
        control_port=args.control_port,
        ingress_class=args.ingress_class,
        configmap=args.configmap,
        worker_processes=args.worker_processes,
        min_sync_interval=args.min_sync_interval,
        reload_always=getattr(args, "reload_always", False),
        template=args.template,
        annotations_prefix=getattr(args, "annotations_prefix", DEFAULT_PREFIX),
        allow_snippet_annotations=getattr(args, "allow_snippet_annotations", False),
        cluster=ClusterOptions(
            election_id=getattr(args, "election_id", DEFAULT_ELECTION_ID),
            election_namespace=getattr(args, "election_namespace", None),
            publish_service=getattr(args, "publish_service", None),
            publish_status_address=tuple(
                a.strip() for a in (getattr(args, "publish_status_address", None) or "").split(",")
                if a.strip()
            ),
        ),
    )


async def _kube_client(args: argparse.Namespace) -> Any:
    """The ApiClient of ``--kubeconfig`` or of the pod; None (reported) when there is none."""
    if args.kubeconfig is None and not in_cluster():
        log.error("no source: give --manifests DIR or --kubeconfig PATH, or run in a pod")
        return None
    try:
        return await api_client(args.kubeconfig)
    except Exception as exc:
        log.error("cannot load the Kubernetes configuration", path=str(args.kubeconfig),
                  error=str(exc))
        return None


def _kube_source(
    args: argparse.Namespace, api: Any, *, as_sent: bool = False
) -> KubernetesSource:
    """``as_sent``: objects exactly as the API server sent them (``record``)."""
    return KubernetesSource(
        api,
        watch_namespace=args.watch_namespace,
        configmap=args.configmap,
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
            log.warning("--publish-service / --publish-status-address need a Kubernetes source: "
                        "no leader election, no Ingress status with --manifests")
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
    options = dataclasses.replace(_options(args), freeze_gc=True)
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
        )
    finally:
        await api.close()
    log.info("trace recorded", path=str(args.out), events=count)
    return 0


def _render(args: argparse.Namespace) -> int:
    if args.manifests is None:
        print("error: render needs --manifests DIR", file=sys.stderr)
        return 2
    options = _options(args)
    store = Store(channel=UpdateChannel(maxsize=1 << 30), configmap=args.configmap)
    ManifestsSource(args.manifests).load_once(store.apply)
    snapshot = store.snapshot()
    configmap = snapshot.config_maps.get(args.configmap) if args.configmap else None
    global_options, option_problems = parse_configmap(configmap)
    result = build_configuration(snapshot, global_options.build_options(options.build_options()))
    for problem in (*option_problems, *result.problems):
        print(f"# skipped: {problem}", file=sys.stderr)
    try:
        text = render(
            result.configuration,
            settings=global_options.render_settings(options.render_settings()),
            paths=NginxPaths(options.work_dir),
            generation=1,
            template=args.template,
        )
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0


async def _check(args: argparse.Namespace) -> int:
    """``ingressd check``: load every object once, build, report; 1 when behaviour changes."""
    store = Store(channel=UpdateChannel(maxsize=1 << 30), configmap=args.configmap)
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
    global_options, _ = parse_configmap(configmap)
    report = check(snapshot, global_options.build_options(_options(args).build_options()))
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
    if args.command == "run":
        return asyncio.run(_run(args))
    if args.command == "render":
        return _render(args)
    if args.command == "check":
        return asyncio.run(_check(args))
    if args.command == "record":
        return asyncio.run(_record(args))
    if args.command == "replay":
        from ingressd.replaying import command as replay

        if args.speed is not None and not args.speed > 0:
            print("error: --speed must be > 0", file=sys.stderr)
            return 2
        return asyncio.run(replay(args, _options))
    return 2


if __name__ == "__main__":
    sys.exit(main())
