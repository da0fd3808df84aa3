"""The deploy manifests: valid Kubernetes objects, wired to each other, RBAC exactly as needed.

manifests/{deploy,demo}/*.yaml --kubernetes-validate (1.30 schemas, strict, offline)
manifests/deploy RBAC rules == tests.support.rbac.REQUIRED
                           == the calls the code makes against the fake API server
                              (Kubernetes source, leader election, status, Events)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ingressd.build.building import BuildOptions, build_configuration
from ingressd.cli.arguments import parser
from ingressd.cluster.client import api_client
from ingressd.cluster.election import LeaderElector
from ingressd.cluster.events import EventRecorder, IngressEvents, involved_ingress
from ingressd.cluster.status import StatusUpdater
from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.configmap import parse_configmap
from ingressd.store.sources.kubernetes import KubernetesSource
from ingressd.store.store import Store
from tests.support import rbac
from tests.support.fakeapi import FakeApiServer
from tests.support.objects import ingress, path, rule, service

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "manifests" / "deploy"
DEMO = ROOT / "manifests" / "demo"
KUBERNETES_VERSION = "1.30.0"


def documents(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for file in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(file.read_text()):
            if doc is not None:
                out.append((file.name, doc))
    return out


def deploy_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for _, d in documents(DEPLOY)}


@pytest.mark.parametrize(
    ("file", "obj"),
    [
        pytest.param(f, o, id=f"{f}:{o['kind']}/{o['metadata']['name']}")
        for directory in (DEPLOY, DEMO)
        for f, o in documents(directory)
    ],
)
def test_every_manifest_validates_against_the_kubernetes_schemas(
    file: str, obj: dict[str, Any]
) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_strict_validation_catches_a_misspelled_field() -> None:
    bad = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "x"},
        "spec": {"port": [{"port": 80}]},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_deploy_has_every_part_in_the_ingressd_namespace() -> None:
    objects = deploy_objects()
    assert set(objects) == {
        ("Namespace", "ingressd"),
        ("ServiceAccount", "ingressd"),
        ("ClusterRole", "ingressd"),
        ("ClusterRoleBinding", "ingressd"),
        ("Role", "ingressd"),
        ("RoleBinding", "ingressd"),
        ("IngressClass", "ingressd"),
        ("ConfigMap", "ingressd-controller"),
        ("ConfigMap", "ingressd-tcp-services"),
        ("ConfigMap", "ingressd-udp-services"),
        ("Service", "ingressd-controller"),
        ("Deployment", "ingressd-controller"),
    }
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "IngressClass"}
    for (kind, _), obj in objects.items():
        assert obj["metadata"].get("namespace") == (None if kind in cluster_scoped else "ingressd")
    assert (
        objects["IngressClass", "ingressd"]["spec"]["controller"]
        == "ingressd.io/ingress-controller"
    )
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        binding = objects[kind, "ingressd"]
        assert binding["roleRef"]["kind"] == kind.replace("Binding", "")
        assert binding["roleRef"]["name"] == "ingressd"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "ingressd", "namespace": "ingressd"}
        ]


def test_the_configmap_holds_only_valid_options() -> None:
    configmap = deploy_objects()["ConfigMap", "ingressd-controller"]
    options, problems = parse_configmap(configmap)
    assert problems == ()
    assert options.proxy_body_size == "1m" and options.ssl_redirect


def test_the_deployment_runs_the_controller_as_documented() -> None:
    objects = deploy_objects()
    deployment = objects["Deployment", "ingressd-controller"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ingressd:0.1.0"
    assert pod["serviceAccountName"] == "ingressd"
    assert pod["terminationGracePeriodSeconds"] == 300
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in container["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    # The image's entrypoint is `ingressd run`: the args must parse as its flags.
    args = [re.sub(r"\$\(POD_NAMESPACE\)", "ingressd", a) for a in container["args"]]
    parsed = parser().parse_args(["run", *args])
    assert not parsed.allow_loopback_endpoints  # pods in a cluster are never on loopback
    assert parsed.configmap == "ingressd/ingressd-controller"
    assert ("ConfigMap", parsed.configmap.split("/")[1]) in objects
    assert parsed.publish_service == "ingressd/ingressd-controller"
    assert ("Service", parsed.publish_service.split("/")[1]) in objects
    lease_names = {p.name for p in rbac.permissions_of(objects["Role", "ingressd"]) if p.name}
    assert lease_names == {parsed.election_id}
    assert parsed.ingress_class == objects["IngressClass", "ingressd"]["metadata"]["name"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 80, "https": 443, "metrics": 10254}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 101
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert parsed.work_dir == Path("/var/lib/ingressd") and str(parsed.work_dir) in mounts
    service_obj = objects["Service", "ingressd-controller"]
    assert service_obj["spec"]["type"] == "LoadBalancer"
    assert {(p["port"], p["targetPort"]) for p in service_obj["spec"]["ports"]} == {
        (80, "http"),
        (443, "https"),
    }
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service_obj["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


#: Packages `make install` adds for the tests and benchmarks only, not for nginx to run.
_TEST_ONLY_PACKAGES = {"lua-check", "wrk", "openssl", "curl"}


def _runtime_packages() -> list[str]:
    """The Makefile's APT_PACKAGES that nginx or ingressd need at run time (nginx's modules)."""
    text = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("APT_PACKAGES :="))
    packages = line.split(":=", 1)[1].split()
    assert "libnginx-mod-stream" in packages  # the parse found the continuation lines
    return [p for p in packages if p not in _TEST_ONLY_PACKAGES]


def test_the_dockerfile_builds_the_image_the_deployment_runs() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "\nFROM debian:12-slim\n" in text
    for package in (*_runtime_packages(), "python3-venv"):
        assert re.search(rf"\s{re.escape(package)}\s", text), package
    assert "\nUSER 101:101\n" in text
    assert '\nENTRYPOINT ["/usr/bin/tini", "--", "ingressd", "run"]\n' in text
    for source in re.findall(r"^COPY (\S+) ", text, re.MULTILINE):
        assert (ROOT / source).exists(), source


def granted_by_manifests() -> set[rbac.Permission]:
    objects = deploy_objects()
    return rbac.permissions_of(objects["ClusterRole", "ingressd"]) | rbac.permissions_of(
        objects["Role", "ingressd"]
    )


def test_rbac_rules_are_exactly_the_required_permissions() -> None:
    required = {
        rbac.Permission("", p.scope, p.group, p.resource, p.verb, p.subresource, p.name)
        for p in rbac.REQUIRED
    }
    granted = granted_by_manifests()
    assert granted - required == set(), "granted but not needed"
    assert required - granted == set(), "needed but not granted"


async def test_every_call_the_code_makes_is_granted_and_every_grant_is_used(
    fake_api: FakeApiServer, tmp_path: Path
) -> None:
    """Source, election, status and Events against the fake API, as in a pod."""
    fake_api.create(deploy_objects()["ConfigMap", "ingressd-controller"])
    fake_api.create(deploy_objects()["IngressClass", "ingressd"])
    publish = service("ingressd-controller", "ingressd", type="LoadBalancer")
    publish["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    fake_api.create(publish)
    fake_api.create(service("web"))
    fake_api.create(ingress("web", rules=[rule("a.test", path("/", "web"), path("/{x}", "web"))]))
    client = await api_client(fake_api.write_kubeconfig(tmp_path / "kubeconfig"))
    store = Store(channel=UpdateChannel(), configmap=ObjectKey("ingressd/ingressd-controller"))
    source = KubernetesSource(client, configmap=ObjectKey("ingressd/ingressd-controller"))
    elector = LeaderElector(
        api=client, namespace="ingressd", lease_duration=1, renew_deadline=0.5, retry_period=0.1
    )
    recorder = EventRecorder(api=client, instance="ingressd-test")
    tasks: list[asyncio.Task[None]] = []
    try:
        await source.load_once(store.apply)
        tasks.append(asyncio.create_task(source.run(store.apply)))
        tasks.append(asyncio.create_task(recorder.run()))
        election = asyncio.create_task(elector.run())
        await fake_api.wait_for_watches(len(source.informers))
        async with asyncio.timeout(5):
            while not elector.is_leader:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # a few renewals
        snapshot = store.snapshot()
        build = build_configuration(snapshot, BuildOptions())
        updater = StatusUpdater(
            api=client,
            snapshot=store.snapshot,
            is_leader=lambda: True,
            publish_service=ObjectKey("ingressd/ingressd-controller"),
        )
        updater.notify(build, snapshot)
        assert await updater.sync_once() == 1
        IngressEvents(recorder).observe(build, snapshot, ok=True)  # Sync, Rejected: created
        web = involved_ingress(snapshot.ingresses[ObjectKey("default/web")])
        recorder.record(web, "Normal", "Sync", "Scheduled for sync")  # again: patched
        await recorder.flush()
        assert (recorder.created, recorder.patched) == (2, 1)
        election.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await election  # releases the lease: one more update
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await client.close()
    observed = {(r.verb, r.resource, r.subresource) for r in fake_api.requests}
    granted = granted_by_manifests()
    for call in sorted(observed):
        assert rbac.allows(granted, call), f"not granted: {call}"
    assert observed == {p.call() for p in granted}  # and every grant was used
