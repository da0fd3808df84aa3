"""Arguments: the command line -> argparse.Namespace -> runtime Options.  Nothing runs here.

    argv --parser().parse_args()--> Namespace (one subcommand: run, check, render, record, replay)
        flag groups shared by the subcommands:
            _common             manifests, IngressClass, ConfigMap, template, ports, sync pace,
                                loopback endpoints, annotation prefix and snippets
            _kubernetes         kubeconfig, watched namespace, resync period
            _cluster            leader election, published status addresses (run only)
        typed values checked as they are read: TCP ports, NAMESPACE/NAME, annotation prefix
    Namespace --options_from()--> Options (work dir, ports, class, ClusterOptions, ...)
        --> ingressd.cli.commands runs the subcommand with them

Every flag and its default is defined here, once; the commands themselves (serving, rendering,
checking, recording, replaying) are in ``ingressd.cli.commands`` and
``ingressd.tools.replay.replaying``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from ingressd import __version__
from ingressd.annotations import DEFAULT_PREFIX, Risk
from ingressd.app.runtime import CONTROLLER_NAME, DEFAULT_MIN_SYNC_INTERVAL, Options
from ingressd.cluster.duties import ClusterOptions
from ingressd.cluster.election import DEFAULT_ELECTION_ID
from ingressd.model import ObjectKey
from ingressd.model.validation import validate_dns1123_subdomain
from ingressd.nginx.rendering import DEFAULT_TEMPLATE

__all__ = ["options_from", "parser"]


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


def _manifests(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--manifests",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of YAML/JSON Kubernetes manifests, watched for changes (run: instead "
        "of --kubeconfig)",
    )


def _global(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--log-level`` and ``--log-format``: before the command (``top``) or after it.

    After it they default to ``SUPPRESS``: absent, the subcommand leaves what was given before
    the command (or its default) alone; given, it wins.
    """
    parser.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],
        default=None if top else argparse.SUPPRESS,
        help="default: info (replay: warning, its timeline shows every sync)",
    )
    parser.add_argument(
        "--log-format",
        choices=["auto", "json", "console"],
        default="auto" if top else argparse.SUPPRESS,
        help="auto: JSON unless stderr is a terminal",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ingress-class",
        default="ingressd",
        metavar="NAME",
        help="IngressClass name this controller serves (default: ingressd); an IngressClass "
        f"with spec.controller {CONTROLLER_NAME} is served too",
    )
    parser.add_argument(
        "--configmap",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help="the controller's ConfigMap; changes to it force a sync (replay: default the "
        "trace header's)",
    )
    parser.add_argument(
        "--tcp-services-configmap",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help='ConfigMap of TCP services: "<port>": "<namespace>/<service>:<port>[:PROXY][:PROXY]"',
    )
    parser.add_argument(
        "--udp-services-configmap",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help='ConfigMap of UDP services: "<port>": "<namespace>/<service>:<port>"',
    )
    parser.add_argument(
        "--enable-ssl-passthrough",
        action="store_true",
        help="serve the ssl-passthrough annotation: the HTTPS port reads the SNI name and sends "
        "those hosts' TLS connections to their pods untouched",
    )
    parser.add_argument(
        "--default-backend-service",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help="Service (its first port) that unknown hosts and unmatched paths reach, and "
        "where custom-http-errors go, instead of the built-in 404",
    )
    parser.add_argument(
        "--template",
        type=Path,
        default=DEFAULT_TEMPLATE,
        metavar="FILE",
        help="nginx.conf jinja2 template (default: templates/nginx.conf.j2)",
    )
    parser.add_argument("--http-port", type=_port, default=80, help="HTTP port (default: 80)")
    parser.add_argument("--https-port", type=_port, default=443, help="HTTPS port (default: 443)")
    parser.add_argument(
        "--worker-processes", default="auto", help="nginx worker_processes (default: auto)"
    )
    parser.add_argument(
        "--routing",
        choices=("nginx", "lua"),
        default="lua",
        help="nginx: a server block per host and a location per path, every new host or path "
        "reloads; lua: Lua routes each request to a named location per settings class, a new "
        "host, path or certificate needs no reload (docs/routing.md; default: lua)",
    )
    parser.add_argument(
        "--min-sync-interval",
        type=float,
        default=DEFAULT_MIN_SYNC_INTERVAL,
        metavar="SECONDS",
        help="under sustained change, start syncs at most this often; the first change after "
        f"a quiet period is applied at once (default: {DEFAULT_MIN_SYNC_INTERVAL})",
    )
    parser.add_argument(
        "--allow-loopback-endpoints",
        action="store_true",
        help="accept EndpointSlice addresses in 127.0.0.0/8 and ::1, for pods on loopback in "
        "a local demo or tests (off by default: in a cluster they point nginx at its own host; "
        "link-local and unspecified addresses are refused regardless)",
    )
    _annotation_flags(parser)


def _annotation_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--annotations-prefix",
        type=_annotations_prefix,
        default=DEFAULT_PREFIX,
        metavar="PREFIX",
        help=f"prefix of the ingress-nginx annotations read (default: {DEFAULT_PREFIX})",
    )
    parser.add_argument(
        "--allow-snippet-annotations",
        action="store_true",
        help="accept configuration-snippet and server-snippet: raw nginx directives from "
        "whoever may edit an Ingress (off by default, see CVE-2021-25742); they are Critical, "
        "so they also need --annotations-risk-level Critical. A configuration-snippet made "
        "only of header rules is accepted without either",
    )
    parser.add_argument(
        "--annotations-risk-level",
        type=_risk_level,
        default=Risk.HIGH,
        metavar="LEVEL",
        help="refuse annotations whose ingress-nginx risk level is above LEVEL: Low, Medium, "
        "High or Critical (default: High; the ConfigMap's annotations-risk-level wins)",
    )


def _risk_level(text: str) -> Risk:
    try:
        return Risk.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def _annotations_prefix(text: str) -> str:
    prefix = text.rstrip("/")
    if validate_dns1123_subdomain(prefix) is not None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a DNS name such as {DEFAULT_PREFIX}")
    return prefix


def _kubernetes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="PATH",
        help="watch the cluster of this kubeconfig (its current context); without it and "
        "without --manifests, inside a pod: the in-cluster configuration",
    )
    parser.add_argument(
        "--watch-namespace",
        default=None,
        metavar="NS",
        help="watch namespaced objects in this namespace only (default: all namespaces)",
    )
    parser.add_argument(
        "--resync-period",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="relist every kind this often; only differences are applied (default: 600)",
    )


def _cluster(parser: argparse.ArgumentParser) -> None:
    """Leader election and Ingress status (with a Kubernetes source only)."""
    parser.add_argument(
        "--election-id",
        default=DEFAULT_ELECTION_ID,
        metavar="NAME",
        help="the coordination.k8s.io Lease replicas elect a leader through; only the leader "
        f"writes Ingress status (default: {DEFAULT_ELECTION_ID})",
    )
    parser.add_argument(
        "--election-namespace",
        default=None,
        metavar="NS",
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument(
        "--publish-service",
        type=_namespaced_name,
        default=None,
        metavar="NAMESPACE/NAME",
        help="write this Service's load balancer addresses (or external/cluster IPs) into "
        "the status of the Ingresses served",
    )
    parser.add_argument(
        "--publish-status-address",
        default=None,
        metavar="ADDR[,ADDR]",
        help="write these addresses (IPs and host names) into the Ingress status instead",
    )


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="ingressd",
        description="Kubernetes Ingress controller driving a real nginx: endpoint changes through "
        "Lua with no reload, validated reloads only when nginx.conf must change.",
    )
    top.add_argument("--version", action="version", version=f"ingressd {__version__}")
    _global(top, top=True)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="serve the Ingresses of a manifests directory through nginx")
    _global(run)
    _manifests(run)
    _common(run)
    run.add_argument(
        "--status-port",
        type=_port,
        default=10254,
        help="admin server port: /healthz, /metrics, /debug/* (default: 10254)",
    )
    run.add_argument(
        "--reload-always",
        action="store_true",
        help="apply every change, endpoint changes too, by a full nginx reload (as controllers "
        "without a dynamic path do; for comparisons and benchmarks)",
    )
    run.add_argument(
        "--sync-stall-timeout",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="/healthz fails once a change has waited this long with no sync succeeding, so "
        "Kubernetes restarts a controller that stopped applying changes (default: 300)",
    )
    run.add_argument(
        "--status-address", default="0.0.0.0", help="admin server address (default: 0.0.0.0)"
    )
    run.add_argument(
        "--expose-debug-endpoints",
        action="store_true",
        help="serve /debug/* (every tenant's configuration) to every peer, not only loopback",
    )
    run.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
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
    _global(chk)
    _manifests(chk)
    _common(chk)
    _kubernetes(chk)
    chk.add_argument("--json", action="store_true", help="print the report as JSON")
    chk.set_defaults(work_dir=Path("/var/lib/ingressd"))

    rend = sub.add_parser("render", help="print the nginx.conf the manifests produce; runs nothing")
    _global(rend)
    _manifests(rend)
    _common(rend)
    rend.add_argument(
        "--work-dir",
        type=Path,
        default=Path("/var/lib/ingressd"),
        metavar="DIR",
        help="work dir the printed paths refer to (default: /var/lib/ingressd)",
    )

    rec = sub.add_parser(
        "record", help="write every event the Kubernetes informers see to a trace (JSON lines)"
    )
    _global(rec)
    _kubernetes(rec)
    rec.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="TRACE.jsonl",
        help="the trace file (replaced); format: docs/trace-format.md",
    )
    rec.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this long (default: at SIGINT/SIGTERM)",
    )
    rec.add_argument(
        "--keep-secret-data",
        action="store_true",
        help="keep Secret data values (default: each replaced by a digest, "
        '"REDACTED:hmac-sha256:<16 hex>", so that a changed value still shows)',
    )
    rec.add_argument(
        "--configmap",
        type=_namespaced_name,
        metavar="NAMESPACE/NAME",
        help="record this ConfigMap too (the controller's: written into the trace's header, "
        "replay uses it)",
    )
    _replay_parser(sub)
    return top


def _replay_parser(sub: Any) -> None:
    rep = sub.add_parser(
        "replay",
        help="feed a recorded trace through the pipeline; print every sync decision",
        description="Replay a trace (docs/trace-format.md) through the Store, updateChannel, "
        "NginxController, syncQueue and sync worker; print one line per sync and a summary "
        "(docs/replay.md). Or compare two replays' reports: --compare A.json B.json.",
    )
    _global(rep)
    rep.add_argument(
        "trace",
        type=Path,
        nargs="?",
        default=None,
        metavar="TRACE.jsonl",
        help="the recorded trace",
    )
    rep.add_argument(
        "--compare",
        type=Path,
        nargs=2,
        default=None,
        metavar=("A.json", "B.json"),
        help="instead of replaying: name the first sync where two --report files of earlier "
        "replays diverge (decision, reasons, config hash); exit 0 when they agree, 1 otherwise",
    )
    mode = rep.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run",
        dest="live",
        action="store_false",
        help="render and nginx -t every candidate configuration; serve nothing (default)",
    )
    mode.add_argument(
        "--live",
        dest="live",
        action="store_true",
        help="run nginx as `run` does, on the same ports: traffic can be sent during the replay",
    )
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="replay at X times the recorded pace (default: 1)",
    )
    pace.add_argument(
        "--fast",
        action="store_true",
        help="as fast as the pipeline takes it: each group of events sharing a time waits for "
        "the previous one to be applied (deterministic)",
    )
    rep.add_argument("--report", type=Path, metavar="FILE.json", help="write everything as JSON")
    rep.add_argument(
        "--plot",
        type=Path,
        metavar="FILE.png",
        help="draw the timeline and latencies (PNG; needs matplotlib: the plot extra)",
    )
    _common(rep)
    rep.add_argument(
        "--watch-namespace",
        default=None,
        metavar="NS",
        help="replay as a controller watching only NS: namespaced objects of other namespaces "
        "are skipped (default: the trace header's, else all namespaces)",
    )
    rep.add_argument(
        "--status-port",
        type=lambda text: 0 if text == "0" else _port(text),
        default=None,
        help="admin server port (default: 10254 with --live, any free port for a dry run)",
    )
    rep.add_argument(
        "--status-address", default="0.0.0.0", help="admin server address (default: 0.0.0.0)"
    )
    rep.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="nginx prefix (default: --live /tmp/ingressd-<http port>; a dry run uses a "
        "temporary directory, removed afterwards)",
    )
    rep.set_defaults(live=False)


def options_from(args: argparse.Namespace) -> Options:
    """The runtime Options of a parsed ``run``, ``check``, ``render`` or ``replay`` command line;
    flags a subcommand does not have take their defaults."""
    work_dir = args.work_dir or Path(tempfile.gettempdir()) / f"ingressd-{args.http_port}"
    return Options(
        work_dir=work_dir.resolve(),
        http_port=args.http_port,
        https_port=args.https_port,
        status_port=getattr(args, "status_port", 10254),
        status_address=getattr(args, "status_address", "0.0.0.0"),
        expose_debug=getattr(args, "expose_debug_endpoints", False),
        ingress_class=args.ingress_class,
        configmap=args.configmap,
        tcp_services_configmap=getattr(args, "tcp_services_configmap", None),
        udp_services_configmap=getattr(args, "udp_services_configmap", None),
        enable_ssl_passthrough=getattr(args, "enable_ssl_passthrough", False),
        default_backend_service=getattr(args, "default_backend_service", None),
        worker_processes=args.worker_processes,
        routing=getattr(args, "routing", "lua"),
        min_sync_interval=args.min_sync_interval,
        reload_always=getattr(args, "reload_always", False),
        sync_stall_timeout=getattr(args, "sync_stall_timeout", 300.0),
        template=args.template,
        annotations_prefix=getattr(args, "annotations_prefix", DEFAULT_PREFIX),
        allow_snippet_annotations=getattr(args, "allow_snippet_annotations", False),
        annotations_risk_level=getattr(args, "annotations_risk_level", Risk.HIGH),
        allow_loopback_endpoints=args.allow_loopback_endpoints,
        cluster=ClusterOptions(
            election_id=getattr(args, "election_id", DEFAULT_ELECTION_ID),
            election_namespace=getattr(args, "election_namespace", None),
            publish_service=getattr(args, "publish_service", None),
            publish_status_address=tuple(
                a.strip()
                for a in (getattr(args, "publish_status_address", None) or "").split(",")
                if a.strip()
            ),
        ),
    )
