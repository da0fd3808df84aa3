"""Factories for Kubernetes objects shaped exactly like the API server's, for tests and benchmarks.

    ingress(...), service(...), endpoint_slice(...), tls_secret(...), ingress_class(...)
        -> dicts as a watch would deliver them --snapshot(*objects)--> Snapshot
        -> building.build_configuration() / the Store / the e2e sources

Every object has ``apiVersion``, ``kind`` and ``metadata`` with ``namespace`` (not for the
cluster-scoped IngressClass), ``name``, a ``uid`` derived from kind + key (so equal inputs give
equal objects), ``resourceVersion`` and ``creationTimestamp``.  Field names are the API's:
``spec.ingressClassName``, ``spec.rules[].http.paths[].pathType``, EndpointSlice ``addressType``,
``endpoints[].conditions.ready/serving/terminating``, label ``kubernetes.io/service-name``.

Shortcuts: a backend port given as ``int`` is ``port.number``, as ``str`` is ``port.name``.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from ingressd.model import ObjectKey
from ingressd.store.snapshot import KubeObject, Snapshot

__all__ = [
    "SERVICE_NAME_LABEL",
    "backend",
    "endpoint",
    "endpoint_slice",
    "ingress",
    "ingress_class",
    "path",
    "pem_pair",
    "rule",
    "self_signed_certificate",
    "service",
    "service_port",
    "snapshot",
    "tls",
    "tls_secret",
]

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
DEFAULT_TIMESTAMP = "2024-01-01T00:00:00Z"


def _metadata(
    kind: str,
    name: str,
    namespace: str | None,
    *,
    created: str | None = DEFAULT_TIMESTAMP,
    resource_version: str = "1",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    key = f"{namespace}/{name}" if namespace is not None else name
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["uid"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"ingressd-test:{kind}:{key}"))
    meta["resourceVersion"] = resource_version
    if created is not None:
        meta["creationTimestamp"] = created
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


# --- Ingress -------------------------------------------------------------------------------


def backend(service: str, port: int | str) -> dict[str, Any]:
    """An IngressBackend to a Service port: ``int`` -> ``port.number``, ``str`` -> ``port.name``."""
    port_ref: dict[str, Any] = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": port_ref}}


def path(
    path: str | None = "/",
    service: str = "web",
    port: int | str = 80,
    path_type: str | None = "Prefix",
) -> dict[str, Any]:
    """An HTTPIngressPath; ``None`` leaves ``path`` / ``pathType`` out."""
    out: dict[str, Any] = {}
    if path is not None:
        out["path"] = path
    if path_type is not None:
        out["pathType"] = path_type
    out["backend"] = backend(service, port)
    return out


def rule(host: str | None, *paths: Mapping[str, Any]) -> dict[str, Any]:
    """An IngressRule; ``host=None`` for the catch-all; no paths -> no ``http``."""
    out: dict[str, Any] = {}
    if host is not None:
        out["host"] = host
    if paths:
        out["http"] = {"paths": [dict(p) for p in paths]}
    return out


def tls(*hosts: str, secret_name: str | None) -> dict[str, Any]:
    """An IngressTLS entry; ``secret_name=None`` leaves ``secretName`` out."""
    out: dict[str, Any] = {"hosts": list(hosts)}
    if secret_name is not None:
        out["secretName"] = secret_name
    return out


def ingress(
    name: str,
    namespace: str = "default",
    *,
    rules: Iterable[Mapping[str, Any]] = (),
    tls_entries: Iterable[Mapping[str, Any]] = (),
    default_backend: Mapping[str, Any] | None = None,
    ingress_class_name: str | None = "ingressd",
    annotations: Mapping[str, str] | None = None,
    created: str | None = DEFAULT_TIMESTAMP,
    resource_version: str = "1",
) -> KubeObject:
    """A networking.k8s.io/v1 Ingress (of class ``ingressd`` unless told otherwise)."""
    spec: dict[str, Any] = {}
    if ingress_class_name is not None:
        spec["ingressClassName"] = ingress_class_name
    if default_backend is not None:
        spec["defaultBackend"] = dict(default_backend)
    rule_list = [dict(r) for r in rules]
    if rule_list:
        spec["rules"] = rule_list
    tls_list = [dict(t) for t in tls_entries]
    if tls_list:
        spec["tls"] = tls_list
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(
            "Ingress",
            name,
            namespace,
            created=created,
            resource_version=resource_version,
            annotations=annotations,
        ),
        "spec": spec,
        "status": {"loadBalancer": {}},
    }


def ingress_class(
    name: str = "ingressd",
    controller: str = "ingressd.io/ingress-controller",
    *,
    default: bool = False,
) -> KubeObject:
    """A networking.k8s.io/v1 IngressClass (cluster-scoped)."""
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else None
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": _metadata("IngressClass", name, None, annotations=annotations),
        "spec": {"controller": controller},
    }


# --- Service and EndpointSlice ---------------------------------------------------------------


def service_port(
    port: int = 80,
    name: str | None = None,
    *,
    target_port: int | str | None = None,
    protocol: str = "TCP",
) -> dict[str, Any]:
    """A ServicePort; ``name=None`` leaves it out (allowed for a single port)."""
    out: dict[str, Any] = {}
    if name is not None:
        out["name"] = name
    out["port"] = port
    out["protocol"] = protocol
    out["targetPort"] = target_port if target_port is not None else port
    return out


def service(
    name: str,
    namespace: str = "default",
    *,
    ports: Sequence[Mapping[str, Any]] = (),
    type: str = "ClusterIP",
    external_name: str | None = None,
) -> KubeObject:
    """A v1 Service; default one unnamed port 80 -> 8080."""
    port_list = [dict(p) for p in ports] or [service_port(80, target_port=8080)]
    spec: dict[str, Any] = {"type": type, "ports": port_list}
    if type == "ExternalName":
        spec = {"type": type, "externalName": external_name or "example.com"}
    else:
        spec["clusterIP"] = "10.96.0.10"
        spec["selector"] = {"app": name}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata("Service", name, namespace),
        "spec": spec,
    }


def endpoint(
    *addresses: str,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = False,
    node_name: str | None = None,
) -> dict[str, Any]:
    """One EndpointSlice endpoint; ``serving`` defaults to ``ready``; ``None`` omits a condition."""
    conditions: dict[str, Any] = {}
    for key, value in (
        ("ready", ready),
        ("serving", ready if serving is None else serving),
        ("terminating", terminating),
    ):
        if value is not None:
            conditions[key] = value
    out: dict[str, Any] = {"addresses": list(addresses), "conditions": conditions}
    if node_name is not None:
        out["nodeName"] = node_name
    return out


def endpoint_slice(
    service: str,
    namespace: str = "default",
    *,
    name: str | None = None,
    endpoints: Iterable[Mapping[str, Any] | str] = (),
    port: int = 8080,
    port_name: str | None = None,
    ports: Sequence[Mapping[str, Any]] | None = None,
    address_type: str = "IPv4",
) -> KubeObject:
    """A discovery.k8s.io/v1 EndpointSlice of ``service``; a ``str`` endpoint is a ready address.

    ``ports`` overrides the single ``{name: port_name, port, protocol: TCP}`` port.
    """
    if ports is None:
        slice_port: dict[str, Any] = {"port": port, "protocol": "TCP"}
        if port_name is not None:
            slice_port = {"name": port_name, **slice_port}
        ports = [slice_port]
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _metadata(
            "EndpointSlice",
            name or f"{service}-abcde",
            namespace,
            labels={SERVICE_NAME_LABEL: service},
        ),
        "addressType": address_type,
        "endpoints": [endpoint(e) if isinstance(e, str) else dict(e) for e in endpoints],
        "ports": [dict(p) for p in ports],
    }


# --- Secret --------------------------------------------------------------------------------


def self_signed_certificate(
    *hosts: str,
    days: int = 365,
    not_before: datetime.datetime | None = None,
) -> tuple[str, str]:
    """A fresh EC P-256 self-signed certificate for ``hosts`` (SANs): ``(cert_pem, key_pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "test")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), critical=False
        )
    cert = builder.sign(key, hashes.SHA256())
    return pem_pair(cert, key)


def pem_pair(cert: x509.Certificate, key: PrivateKeyTypes) -> tuple[str, str]:
    """``(certificate PEM, unencrypted PKCS#8 key PEM)``, as a TLS Secret holds them."""
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return cert_pem, key_pem


def tls_secret(
    name: str,
    namespace: str = "default",
    *,
    cert_pem: str,
    key_pem: str,
    type: str = "kubernetes.io/tls",
) -> KubeObject:
    """A v1 Secret holding ``tls.crt`` / ``tls.key`` base64-encoded, as the API serves them."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata("Secret", name, namespace),
        "type": type,
        "data": {
            "tls.crt": base64.b64encode(cert_pem.encode()).decode(),
            "tls.key": base64.b64encode(key_pem.encode()).decode(),
        },
    }


# --- Snapshot ------------------------------------------------------------------------------


def snapshot(*objects: KubeObject) -> Snapshot:
    """A Snapshot holding ``objects``, keyed and indexed the way the Store does it.

    Namespaced objects by ``namespace/name``, IngressClasses by name; EndpointSlices indexed by
    their ``kubernetes.io/service-name`` label, sorted by slice name.  Later objects replace
    earlier ones with the same key.
    """
    by_kind: dict[str, dict[ObjectKey, KubeObject]] = {}
    slices: dict[ObjectKey, dict[str, KubeObject]] = {}
    for obj in objects:
        kind = obj["kind"]
        meta = obj["metadata"]
        if kind == "IngressClass":
            key = ObjectKey(meta["name"])
        else:
            key = ObjectKey(f"{meta.get('namespace', 'default')}/{meta['name']}")
        if kind == "EndpointSlice":
            service_name = meta.get("labels", {}).get(SERVICE_NAME_LABEL)
            if service_name is not None:
                service_key = ObjectKey(f"{meta.get('namespace', 'default')}/{service_name}")
                slices.setdefault(service_key, {})[meta["name"]] = obj
        else:
            by_kind.setdefault(kind, {})[key] = obj
    return Snapshot(
        ingresses=by_kind.get("Ingress", {}),
        ingress_classes=by_kind.get("IngressClass", {}),
        services=by_kind.get("Service", {}),
        endpoint_slices={k: tuple(v[n] for n in sorted(v)) for k, v in slices.items()},
        secrets=by_kind.get("Secret", {}),
        config_maps=by_kind.get("ConfigMap", {}),
    )
