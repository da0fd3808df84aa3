"""Trace objects: Kubernetes objects as a real API server sends them, for traces.  Pure.

    names, hosts, ports, seeds --ingress_class / config_map / service / ingress / deployment /
        tls_secret (+ certificate: PEM cert and key)--> Obj, a dict as a watch delivers it
        --> TraceBuilder.add(t, type, obj) (``tests.support.traces``) --> JSON lines
    metadata(kind, name, namespace, ...) -> the ``metadata`` every one of them carries
    timestamp(t), uid(...), suffix(rng) -> creationTimestamp, metadata.uid, generated names

Objects carry the fields the API server sends (``metadata.uid``, ``resourceVersion``,
``creationTimestamp``, ``generation``, labels, ``ownerReferences``, ``status``).
``resourceVersion`` is ``"0"`` here: ``TraceBuilder.lines()`` assigns it in event order.  Every
value derives from the arguments (uids from kind + key, timestamps from ``EPOCH``, generated names
from the caller's seeded ``random.Random``): the same calls give the same objects.  Certificates
come from fixed Ed25519 keys, whose signatures are deterministic too.

``tests.support.objects`` makes objects of the same kinds for snapshots and the fake API
server; these are the traces' own, dated against ``EPOCH`` (``examples/traces/generate.py``
makes the sample traces from them).
"""

from __future__ import annotations

import base64
import datetime
import random
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from tests.support.objects import pem_pair

__all__ = [
    "EPOCH",
    "Obj",
    "certificate",
    "config_map",
    "deployment",
    "ingress",
    "ingress_class",
    "metadata",
    "service",
    "suffix",
    "timestamp",
    "tls_secret",
    "uid",
]

#: Wall-clock time of ``t = 0`` in the sample traces.
EPOCH = datetime.datetime(2026, 3, 2, 10, 0, 0, tzinfo=datetime.UTC)

_UID_NAMESPACE = uuid.UUID("6f0b8a52-3c1e-4c55-9d1f-1c7e2a5b9e10")
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what Kubernetes uses for generated names

Obj = dict[str, Any]


def timestamp(t: float) -> str:
    """RFC 3339 UTC, to the second, as the API server writes it: ``EPOCH + t``."""
    moment = EPOCH + datetime.timedelta(seconds=t)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def uid(*parts: str) -> str:
    return str(uuid.uuid5(_UID_NAMESPACE, "/".join(parts)))


def suffix(rng: random.Random, length: int = 5) -> str:
    return "".join(rng.choice(_NAME_ALPHABET) for _ in range(length))


def metadata(
    kind: str,
    name: str,
    namespace: str | None,
    *,
    created: float = -86400.0,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    generation: int | None = None,
    owner: Obj | None = None,
) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["uid"] = uid(kind, namespace or "", name)
    meta["resourceVersion"] = "0"  # assigned by TraceBuilder.lines()
    if generation is not None:
        meta["generation"] = generation
    meta["creationTimestamp"] = timestamp(created)
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    if owner is not None:
        meta["ownerReferences"] = [
            {
                "apiVersion": owner["apiVersion"],
                "kind": owner["kind"],
                "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    return meta


# -- objects ----------------------------------------------------------------------------------


def ingress_class(
    name: str = "ingressd", controller: str = "ingressd.io/ingress-controller"
) -> Obj:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": metadata("IngressClass", name, None, generation=1),
        "spec": {"controller": controller},
    }


def config_map(name: str, namespace: str, data: Mapping[str, str], **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata("ConfigMap", name, namespace, **meta),
        "data": dict(data),
    }


def service(name: str, namespace: str, *, port: int = 80, target_port: int = 8080) -> Obj:
    digest = int(uid("Service", namespace, name)[:4], 16)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata("Service", name, namespace, labels={"app": name}),
        "spec": {
            "clusterIP": f"10.96.{digest % 250}.{digest // 250 % 250 + 1}",
            "clusterIPs": [f"10.96.{digest % 250}.{digest // 250 % 250 + 1}"],
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "http", "port": port, "protocol": "TCP", "targetPort": target_port}],
            "selector": {"app": name},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        },
        "status": {"loadBalancer": {}},
    }


def ingress(
    name: str,
    namespace: str,
    rules: Iterable[tuple[str, Iterable[tuple[str, str, str, int]]]],
    *,
    ingress_class_name: str = "ingressd",
    tls_hosts: Iterable[str] = (),
    tls_secret: str | None = None,
    created: float = -86400.0,
    generation: int = 1,
) -> Obj:
    """``rules``: ``(host, [(path, pathType, service, port), ...])``."""
    spec: Obj = {"ingressClassName": ingress_class_name, "rules": []}
    for host, paths in rules:
        spec["rules"].append(
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "backend": {"service": {"name": svc, "port": {"number": port}}},
                            "path": path,
                            "pathType": path_type,
                        }
                        for path, path_type, svc, port in paths
                    ]
                },
            }
        )
    hosts = list(tls_hosts)
    if hosts:
        spec["tls"] = [{"hosts": hosts, "secretName": tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata("Ingress", name, namespace, created=created, generation=generation),
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def deployment(name: str, namespace: str, replicas: int, *, image: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata("Deployment", name, namespace, labels={"app": name}, generation=1),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]},
            },
        },
        "status": {
            "observedGeneration": 1,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        },
    }


def tls_secret(
    name: str,
    namespace: str,
    cert_pem: str,
    key_pem: str,
    *,
    ca_pem: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Obj:
    data = {
        "tls.crt": base64.b64encode(cert_pem.encode()).decode(),
        "tls.key": base64.b64encode(key_pem.encode()).decode(),
    }
    if ca_pem is not None:
        data = {"ca.crt": base64.b64encode(ca_pem.encode()).decode(), **data}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata("Secret", name, namespace, annotations=annotations),
        "type": "kubernetes.io/tls",
        "data": data,
    }


def _ed25519_key(seed: str) -> ed25519.Ed25519PrivateKey:
    raw = uuid.uuid5(_UID_NAMESPACE, seed).bytes + uuid.uuid5(_UID_NAMESPACE, seed + "/2").bytes
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw)


def certificate(
    *hosts: str,
    key_seed: str,
    not_before: datetime.datetime,
    days: int,
    issuer: tuple[str, str] | None = None,
    serial: int = 1,
) -> tuple[str, str]:
    """A deterministic certificate (Ed25519) for ``hosts``: ``(cert_pem, key_pem)``.

    ``issuer``: ``(common name, key seed)`` of the CA that signs it; self-signed when ``None``
    (and then, with no hosts, a CA certificate).
    """
    key = _ed25519_key(key_seed)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else key_seed)])
    if issuer is None:
        issuer_name, signer = subject, key
    else:
        issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer[0])])
        signer = _ed25519_key(issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + datetime.timedelta(days=days))
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
    else:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
    cert = builder.sign(signer, None)
    return pem_pair(cert, key)
