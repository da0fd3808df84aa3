"""Generate the sample traces in this directory (deterministic: fixed seeds, fixed keys).

    python -m examples.traces.generate [OUT_DIR]     (from the checkout: it uses tests.support)

    scenario() --Simulation + PodSet (pods -> EndpointSlice)--> TraceBuilder --> NAME.jsonl

Each trace starts with a header line (as ``ingressd record`` writes one: the recorder, the start
time, the options; here the controller's ConfigMap ``ingressd/ingressd-controller``, which
``ingressd replay`` then uses), the cluster's state as ADDED events at t=0 (what ``ingressd
record`` writes for its initial lists), then the watch events of the scenario.  See
docs/replay.md for what each one shows.
"""

from __future__ import annotations

import datetime
import random
import sys
from collections.abc import Callable
from pathlib import Path

from ingressd.store.sources.trace import TraceHeader
from tests.support.traceobjects import (
    certificate,
    config_map,
    deployment,
    ingress,
    ingress_class,
    service,
    timestamp,
    tls_secret,
)
from tests.support.traces import PodSet, Simulation, TraceBuilder

CONTROLLER_CONFIGMAP = ("ingressd-controller", "ingressd")
CA = ("Example Internal CA", "ca-2025")

#: What ``ingressd record --configmap ingressd/ingressd-controller --keep-secret-data`` would
#: write first (the traces hold Secret data: their certificates are generated, not secret).
HEADER = TraceHeader(
    recorder="examples/traces/generate.py",
    started_at="2026-03-02T10:00:00.000000Z",
    options={
        "watch-namespace": None,
        "configmap": f"{CONTROLLER_CONFIGMAP[1]}/{CONTROLLER_CONFIGMAP[0]}",
        "resync-period": 600.0,
        "keep-secret-data": True,
    },
)


def _base(trace: TraceBuilder, *namespaces: str) -> dict[str, dict[str, object]]:
    """IngressClass, the controller's ConfigMap and each namespace's kube-root-ca.crt at t=0."""
    trace.added(0, ingress_class())
    controller_cm = config_map(
        *CONTROLLER_CONFIGMAP,
        {"proxy-body-size": "1m", "use-forwarded-headers": "false"},
        labels={"app.kubernetes.io/name": "ingressd"},
    )
    trace.added(0, controller_cm)
    roots = {}
    for ns in namespaces:
        roots[ns] = config_map("kube-root-ca.crt", ns, {"ca.crt": "-----BEGIN CERTIFICATE-----…"})
        trace.added(0, roots[ns])
    return {"controller": controller_cm, **roots}


def _deployment_status(
    trace: TraceBuilder, t: float, dep: dict[str, object], pods: PodSet, revision: str
) -> None:
    status = dep["status"]
    assert isinstance(status, dict)
    live = [p for p in pods.pods if p.state in ("created", "pending", "ready")]
    status["replicas"] = len(live)
    status["updatedReplicas"] = sum(p.revision == revision for p in live)
    status["readyReplicas"] = status["availableReplicas"] = sum(p.state == "ready" for p in live)
    trace.modified(t, dep)


def rolling_update() -> TraceBuilder:
    """A 20-replica Deployment rolled to a new image, maxSurge 25%, maxUnavailable 25%."""
    rng = random.Random(20260302)
    trace, sim = TraceBuilder(), Simulation()
    _base(trace, "shop")
    replicas, surge, unavailable = 20, 5, 5
    old_rev, new_rev = "6d9f8b7c5", "7b4c9d6f8"
    pods = PodSet(trace, sim, rng, "shop", "web")
    pods.initial(old_rev, replicas)
    dep = deployment("web", "shop", replicas, image="registry.example.com/shop/web:1.14.2")
    trace.added(0, service("web", "shop"))
    trace.added(0, pods.slice)
    trace.added(0, ingress("web", "shop", [("shop.example.com", [("/", "Prefix", "web", 80)])]))
    trace.added(0, dep)

    def reconcile(t: float) -> None:
        old = [p for p in pods.pods if p.revision == old_rev and p.state in ("pending", "ready")]
        new = [p for p in pods.pods if p.revision == new_rev and p.state != "terminating"]
        for _ in range(min(replicas + surge - len(old) - len(new), replicas - len(new))):
            pods.start_pod(t, new_rev, on_ready=reconcile)
        available = sum(p.state == "ready" for p in old + new)
        for pod in old[: max(0, min(len(old), available - (replicas - unavailable)))]:
            pods.stop_pod(t, pod)
        _deployment_status(trace, t + 0.01, dep, pods, new_rev)

    def roll(t: float) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        assert isinstance(meta, dict) and isinstance(spec, dict)
        meta["generation"] = 2
        spec["template"]["spec"]["containers"][0]["image"] = "registry.example.com/shop/web:1.15.0"
        trace.modified(t, dep)
        reconcile(t + 0.02)

    sim.at(2.0, roll)
    sim.run()
    return trace


def scale() -> TraceBuilder:
    """A Deployment scaled from 1 to 50 replicas, then back to 1."""
    rng = random.Random(50)
    trace, sim = TraceBuilder(), Simulation()
    _base(trace, "shop")
    pods = PodSet(trace, sim, rng, "shop", "api", batch=0.2)
    first = pods.initial("58c7d9b4f6", 1)
    dep = deployment("api", "shop", 1, image="registry.example.com/shop/api:3.2.0")
    trace.added(0, service("api", "shop"))
    trace.added(0, pods.slice)
    trace.added(0, ingress("api", "shop", [("api.example.com", [("/", "Prefix", "api", 80)])]))
    trace.added(0, dep)
    started = []

    def set_replicas(count: int) -> Callable[[float], None]:
        def act(t: float) -> None:
            spec, meta = dep["spec"], dep["metadata"]
            assert isinstance(spec, dict) and isinstance(meta, dict)
            spec["replicas"] = count
            meta["generation"] += 1
            trace.modified(t, dep)
            if count > 1:
                for _ in range(count - 1):
                    started.append(
                        pods.start_pod(t, "58c7d9b4f6", ip_after=(0.5, 4.0), ready_after=(2, 12))
                    )
            else:
                for pod in reversed(started):
                    pods.stop_pod(t, pod, gone_after=(5.0, 30.0))
            sim.at(t + 15, lambda now: _deployment_status(trace, now, dep, pods, "58c7d9b4f6"))

        return act

    sim.at(2.0, set_replicas(50))
    sim.at(30.0, set_replicas(1))
    sim.run()
    assert first[0].state == "ready"
    return trace


def ingresses() -> TraceBuilder:
    """Ingresses added, edited and removed, including one of another class."""
    rng = random.Random(7)
    trace, sim = TraceBuilder(), Simulation()
    _base(trace, "web")
    sets = {}
    for name, count in (("web", 3), ("api", 2), ("docs", 2)):
        sets[name] = PodSet(trace, sim, rng, "web", name)
        sets[name].initial("5f6b7c8d9", count)
        trace.added(0, service(name, "web"))
        trace.added(0, sets[name].slice)
    web = ingress("web", "web", [("www.example.com", [("/", "Prefix", "web", 80)])])
    trace.added(0, web)
    api = ingress("api", "web", [("api.example.com", [("/", "Prefix", "api", 80)])], created=1.0)
    trace.added(1.0, api)
    api_status = {**api, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}
    trace.modified(1.6, api_status)  # status only: the Store lets it pass without a sync
    docs = ingress(
        "docs",
        "web",
        [("docs.example.com", [("/docs", "Prefix", "docs", 80),
                               ("/docs/v1", "Exact", "docs", 80)])],
        created=3.0,
    )
    trace.added(3.0, docs)
    web_v2 = ingress(
        "web",
        "web",
        [("www.example.com", [("/", "Prefix", "web", 80), ("/static", "Prefix", "static", 80)])],
        generation=2,
    )
    trace.modified(5.0, web_v2)  # Service "static" does not exist yet: /static answers 503
    static = PodSet(trace, sim, rng, "web", "static")
    static.initial("6c7d8e9f1", 2)
    trace.added(6.5, service("static", "web"))
    trace.added(6.6, static.slice)
    other = ingress(
        "legacy", "web", [("legacy.example.com", [("/", "Prefix", "web", 80)])],
        ingress_class_name="nginx", created=8.0,
    )
    trace.added(8.0, other)  # another controller's class: ignored
    trace.deleted(10.0, api)
    trace.deleted(12.0, docs)
    trace.modified(14.0, {**web, "metadata": {**web["metadata"], "generation": 3}})
    sim.run()
    return trace


def tls_rotation() -> TraceBuilder:
    """cert-manager renews a TLS Secret; unrelated Secret updates pass without a reload."""
    rng = random.Random(443)
    trace, sim = TraceBuilder(), Simulation()
    _base(trace, "shop")
    pods = PodSet(trace, sim, rng, "shop", "web")
    pods.initial("6d9f8b7c5", 3)
    hosts = ("shop.example.com", "www.shop.example.com")
    ca_pem, _ = certificate(key_seed=CA[1], not_before=_day(2025, 1, 1), days=3650)
    old_crt, old_key = certificate(
        *hosts, key_seed="shop-tls-1", not_before=_day(2026, 1, 5), days=90, issuer=CA, serial=101
    )
    new_crt, new_key = certificate(
        *hosts, key_seed="shop-tls-2", not_before=_day(2026, 3, 2), days=90, issuer=CA, serial=102
    )
    annotations = {
        "cert-manager.io/certificate-name": "shop-tls",
        "cert-manager.io/common-name": hosts[0],
        "cert-manager.io/alt-names": ",".join(hosts),
        "cert-manager.io/issuer-kind": "ClusterIssuer",
        "cert-manager.io/issuer-name": "internal-ca",
    }
    secret = tls_secret("shop-tls", "shop", old_crt + ca_pem, old_key, ca_pem=ca_pem,
                        annotations=annotations)
    helm = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "sh.helm.release.v1.shop.v7",
            "namespace": "shop",
            "uid": "2f4e6a8c-0b1d-4f3e-8a5c-7e9d1b3f5a70",
            "resourceVersion": "0",
            "creationTimestamp": timestamp(-3600),
            "labels": {"owner": "helm", "name": "shop", "status": "deployed", "version": "7"},
        },
        "type": "helm.sh/release.v1",
        "data": {"release": "SDRzSUFBQUFBQUFDLysxOWEzUGJ1Ukx2WDBIRlQ4bnZp"},
    }
    trace.added(0, service("web", "shop"))
    trace.added(0, pods.slice)
    trace.added(0, secret)
    trace.added(0, helm)
    trace.added(
        0,
        ingress("web", "shop", [(h, [("/", "Prefix", "web", 80)]) for h in hosts],
                tls_hosts=hosts, tls_secret="shop-tls"),
    )
    cert_cr = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": "shop-tls", "namespace": "shop", "generation": 1,
                     "uid": "0c1d2e3f-4a5b-4c6d-8e7f-901a2b3c4d5e", "resourceVersion": "0",
                     "creationTimestamp": timestamp(-86400 * 60)},
        "spec": {"secretName": "shop-tls", "dnsNames": list(hosts),
                 "issuerRef": {"kind": "ClusterIssuer", "name": "internal-ca"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    }
    trace.added(0, cert_cr)
    cert_cr["status"] = {"conditions": [{"type": "Ready", "status": "False"},
                                        {"type": "Issuing", "status": "True"}]}
    trace.modified(3.0, cert_cr)
    renewed = tls_secret("shop-tls", "shop", new_crt + ca_pem, new_key, ca_pem=ca_pem,
                         annotations=annotations)
    trace.modified(4.5, renewed)  # the rotation: the one reload of this trace
    cert_cr["status"] = {"conditions": [{"type": "Ready", "status": "True"}],
                         "notAfter": "2026-05-31T00:00:00Z"}
    trace.modified(4.6, cert_cr)
    helm["metadata"]["labels"]["status"] = "superseded"  # type: ignore[index]
    trace.modified(7.0, helm)  # a Secret no Ingress uses: no sync
    relabelled = {**renewed, "metadata": {**renewed["metadata"], "labels": {"team": "shop"}}}
    trace.modified(9.0, relabelled)  # metadata only: the certificate is unchanged
    sim.at(11.0, lambda t: pods.stop_pod(t, pods.pods[0]))
    sim.at(11.0, lambda t: pods.start_pod(t, "6d9f8b7c5"))
    sim.run()
    return trace


def configmap() -> TraceBuilder:
    """The controller's ConfigMap edited twice, next to ConfigMap changes that do not matter."""
    rng = random.Random(1024)
    trace, sim = TraceBuilder(), Simulation()
    maps = _base(trace, "shop")
    pods = PodSet(trace, sim, rng, "shop", "web")
    pods.initial("6d9f8b7c5", 4)
    trace.added(0, service("web", "shop"))
    trace.added(0, pods.slice)
    trace.added(0, ingress("web", "shop", [("shop.example.com", [("/", "Prefix", "web", 80)])]))
    controller, root = maps["controller"], maps["shop"]
    data = controller["data"]
    assert isinstance(data, dict)
    data["proxy-body-size"] = "8m"
    trace.modified(3.0, controller)  # forces a sync (with --configmap ingressd/ingressd-controller)
    root_data = root["data"]
    assert isinstance(root_data, dict)
    root_data["ca.crt"] = "-----BEGIN CERTIFICATE-----… (rotated)"
    trace.modified(5.0, root)  # not the controller's: no sync
    meta = controller["metadata"]
    assert isinstance(meta, dict)
    meta["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    trace.modified(7.0, controller)  # metadata only: no sync
    data["proxy-read-timeout"] = "120s"
    trace.modified(9.0, controller)
    sim.at(11.0, lambda t: pods.stop_pod(t, pods.pods[0]))
    sim.run()
    return trace


def _day(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, tzinfo=datetime.UTC)


SCENARIOS: dict[str, Callable[[], TraceBuilder]] = {
    "rolling-update": rolling_update,
    "scale": scale,
    "ingresses": ingresses,
    "tls-rotation": tls_rotation,
    "configmap": configmap,
}


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    for name, scenario in SCENARIOS.items():
        trace = scenario()
        trace.header = HEADER
        size = trace.write(out / f"{name}.jsonl")
        print(f"{name}.jsonl: {len(trace.lines())} events, {size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
