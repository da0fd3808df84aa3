"""The command line: ``ingressd run`` and ``ingressd render``.

    ingressd run --manifests DIR  -> ManifestsSource -> runtime.Ingressd, until SIGTERM/SIGINT
    ingressd render --manifests DIR -> Store -> build -> render -> stdout (nothing runs)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import structlog

from ingressd import __version__
from ingressd.building import build_configuration
from ingressd.channel import UpdateChannel
from ingressd.configmap import parse_configmap
from ingressd.logs import configure
from ingressd.model import ObjectKey
from ingressd.nginx.rendering import DEFAULT_TEMPLATE, NginxPaths, RenderError, render
from ingressd.runtime import CONTROLLER_NAME, Ingressd, Options
from ingressd.store.sources.files import ManifestsSource
from ingressd.store.store import Store

log = structlog.get_logger("ingressd")


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port (1-65535)")
    return value


def _configmap(text: str) -> ObjectKey:
    namespace, sep, name = text.partition("/")
    if not sep or not namespace or not name:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAMESPACE/NAME")
    return ObjectKey(text)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests", type=Path, required=True, metavar="DIR",
        help="directory of YAML/JSON Kubernetes manifests, watched for changes",
    )
    parser.add_argument(
        "--ingress-class", default="ingressd", metavar="NAME",
        help="IngressClass name this controller serves (default: ingressd); an IngressClass "
        f"with spec.controller {CONTROLLER_NAME} is served too",
    )
    parser.add_argument(
        "--configmap", type=_configmap, metavar="NAMESPACE/NAME",
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
        "--min-sync-interval", type=float, default=0.05, metavar="SECONDS",
        help="under sustained change, start syncs at most this often; the first change after "
        "a quiet period is applied at once (default: 0.05)",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ingressd",
        description="Kubernetes Ingress controller driving a real nginx: endpoint changes through "
        "Lua with no reload, validated reloads only when nginx.conf must change.",
    )
    top.add_argument("--version", action="version", version=f"ingressd {__version__}")
    top.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
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

    rend = sub.add_parser("render", help="print the nginx.conf the manifests produce; runs nothing")
    _common(rend)
    rend.add_argument(
        "--work-dir", type=Path, default=Path("/var/lib/ingressd"), metavar="DIR",
        help="work dir the printed paths refer to (default: /var/lib/ingressd)",
    )
    return top


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
    )


async def _run(args: argparse.Namespace) -> int:
    if not args.manifests.is_dir():
        log.error("manifests directory not found", path=str(args.manifests))
        return 2
    controller = Ingressd(_options(args), source=ManifestsSource(args.manifests))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await controller.start()
    except Exception as exc:
        log.error("could not start", error=str(exc))
        await controller.stop()
        return 1
    await stop.wait()
    log.info("stopping: nginx finishes its requests first")
    await controller.stop()
    return 0


def _render(args: argparse.Namespace) -> int:
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    fmt = args.log_format
    configure(level=args.log_level, json=None if fmt == "auto" else fmt == "json")
    if args.command == "run":
        return asyncio.run(_run(args))
    if args.command == "render":
        return _render(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
