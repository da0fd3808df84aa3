"""How raw objects are named and what they point at: pure readers the Store indexes with.

    raw object    --object_key()-----------> ObjectKey  (cache key: ``namespace/name`` or ``name``)
    Ingress       --ingress_service_keys()--> Service keys  (index service -> ingresses)
    Ingress       --ingress_secret_keys()---> Secret keys   (index secret -> ingresses)
    Ingress       --ingress_configmap_keys()-> ConfigMap keys (index configmap -> ingresses)
    controller's ConfigMap --configmap_header_refs()--> the ConfigMaps it names
    EndpointSlice --slice_service_key()-----> Service key   (index service -> slices)
    EndpointSlice --slice_content()---------> SliceContent  (is this update worth a sync?)

Every reader tolerates malformed objects: a missing or mistyped field means "nothing there", never
an exception, because sources hand on whatever a user wrote or a server sent.  Nothing here
mutates its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ingressd.model import ObjectKey

#: Namespace given to namespaced objects that name none, as ``kubectl apply`` does.
DEFAULT_NAMESPACE = "default"

#: Label tying an EndpointSlice to its Service (set by the EndpointSlice controller).
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

#: Built-in kinds that live outside namespaces; every other kind is taken as namespaced.
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "IPAddress",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "ServiceCIDR",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)

#: Normalized endpoint content of an EndpointSlice: ``(addressType, ports, endpoints)`` where
#: ports are ``(name, port, protocol)`` and endpoints ``(addresses, ready, serving, terminating)``.
#: Two slices with equal content send traffic to the same places.
SliceContent = tuple[Any, tuple[tuple[Any, Any, Any], ...], tuple[tuple[Any, ...], ...]]


def is_namespaced(kind: str) -> bool:
    """Whether objects of ``kind`` live in a namespace."""
    return kind not in CLUSTER_SCOPED_KINDS


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The object's namespace, ``default`` when it names none (or names it badly)."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        namespace = meta.get("namespace")
        if isinstance(namespace, str) and namespace:
            return namespace
    return DEFAULT_NAMESPACE


def object_key(obj: Mapping[str, Any], *, namespaced: bool) -> ObjectKey | None:
    """``namespace/name`` (or the bare name when not ``namespaced``); ``None`` without a name."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return None
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        return None
    if not namespaced:
        return ObjectKey(name)
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = DEFAULT_NAMESPACE
    return ObjectKey(f"{namespace}/{name}")


def _backend_service(backend: Any, namespace: str) -> ObjectKey | None:
    if not isinstance(backend, dict):
        return None
    service = backend.get("service")
    if not isinstance(service, dict):
        return None
    name = service.get("name")
    if not isinstance(name, str) or not name:
        return None
    return ObjectKey(f"{namespace}/{name}")


#: Annotation names (after any prefix) whose value names a Secret / a Service of the Ingress's
#: namespace (``auth-secret: name`` or ``namespace/name``); matched by suffix so that the index
#: does not depend on ``--annotations-prefix`` (a spare entry costs at most a spare sync).
SECRET_ANNOTATIONS = ("/auth-secret", "/proxy-ssl-secret", "/auth-tls-secret")
SERVICE_ANNOTATIONS = ("/default-backend",)
CONFIGMAP_ANNOTATIONS = ("/auth-proxy-set-headers", "/custom-headers")
#: Keys of the controller's ConfigMap whose value names another ConfigMap (``namespace/name``).
CONFIG_MAP_KEYS = ("add-headers", "proxy-set-headers")


def _annotation_refs(
    ingress: Mapping[str, Any], suffixes: tuple[str, ...], namespace: str
) -> set[ObjectKey]:
    meta = ingress.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    keys: set[ObjectKey] = set()
    if not isinstance(annotations, dict):
        return keys
    for name, value in annotations.items():
        if isinstance(name, str) and name.endswith(suffixes) and isinstance(value, str):
            ref = value.strip()
            if ref and ref.count("/") <= 1:
                keys.add(ObjectKey(ref if "/" in ref else f"{namespace}/{ref}"))
    return keys


def ingress_service_keys(ingress: Mapping[str, Any]) -> frozenset[ObjectKey]:
    """Services an Ingress routes to: its rules' path backends, its default backend and the
    ``default-backend`` annotation."""
    spec = ingress.get("spec")
    if not isinstance(spec, dict):
        return frozenset()
    namespace = namespace_of(ingress)
    keys: set[ObjectKey] = _annotation_refs(ingress, SERVICE_ANNOTATIONS, namespace)
    default = _backend_service(spec.get("defaultBackend"), namespace)
    if default is not None:
        keys.add(default)
    rules = spec.get("rules")
    if isinstance(rules, list):
        for rule in rules:
            if not isinstance(rule, dict):
                continue
            http = rule.get("http")
            if not isinstance(http, dict):
                continue
            paths = http.get("paths")
            if not isinstance(paths, list):
                continue
            for path in paths:
                if isinstance(path, dict):
                    key = _backend_service(path.get("backend"), namespace)
                    if key is not None:
                        keys.add(key)
    return frozenset(keys)


def ingress_secret_keys(ingress: Mapping[str, Any]) -> frozenset[ObjectKey]:
    """Secrets an Ingress uses: TLS certificates (``spec.tls[].secretName``) and those its
    annotations name (``auth-secret``, ``proxy-ssl-secret``)."""
    namespace = namespace_of(ingress)
    keys: set[ObjectKey] = _annotation_refs(ingress, SECRET_ANNOTATIONS, namespace)
    spec = ingress.get("spec")
    if not isinstance(spec, dict):
        return frozenset(keys)
    tls = spec.get("tls")
    if not isinstance(tls, list):
        return frozenset(keys)
    for entry in tls:
        if isinstance(entry, dict):
            name = entry.get("secretName")
            if isinstance(name, str) and name:
                keys.add(ObjectKey(f"{namespace}/{name}"))
    return frozenset(keys)


def ingress_configmap_keys(ingress: Mapping[str, Any]) -> frozenset[ObjectKey]:
    """ConfigMaps an Ingress's annotations name (``auth-proxy-set-headers``,
    ``custom-headers``)."""
    return frozenset(_annotation_refs(ingress, CONFIGMAP_ANNOTATIONS, namespace_of(ingress)))


def configmap_header_refs(config_map: Mapping[str, Any] | None) -> frozenset[ObjectKey]:
    """ConfigMaps the controller's ConfigMap names (``add-headers``, ``proxy-set-headers``)."""
    data = config_map.get("data") if config_map is not None else None
    if not isinstance(data, dict):
        return frozenset()
    keys: set[ObjectKey] = set()
    for name in CONFIG_MAP_KEYS:
        value = data.get(name)
        if isinstance(value, str) and value.strip().count("/") == 1:
            keys.add(ObjectKey(value.strip()))
    return frozenset(keys)


def slice_service_key(endpoint_slice: Mapping[str, Any]) -> ObjectKey | None:
    """The Service an EndpointSlice belongs to, from its ``kubernetes.io/service-name`` label."""
    meta = endpoint_slice.get("metadata")
    if not isinstance(meta, dict):
        return None
    labels = meta.get("labels")
    if not isinstance(labels, dict):
        return None
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        return None
    namespace = meta.get("namespace")
    if not isinstance(namespace, str) or not namespace:
        namespace = DEFAULT_NAMESPACE
    return ObjectKey(f"{namespace}/{service}")


def slice_content(endpoint_slice: Mapping[str, Any]) -> SliceContent:
    """The parts of an EndpointSlice that decide where traffic goes, as comparable tuples.

    Everything else (resourceVersion, nodeName, zone, hints, targetRef, ...) is left out, so an
    update touching only those compares equal.  Order is kept: a reordering counts as a change.
    """
    raw_ports = endpoint_slice.get("ports")
    ports: tuple[tuple[Any, Any, Any], ...] = ()
    if isinstance(raw_ports, list):
        ports = tuple(
            (p.get("name"), p.get("port"), p.get("protocol"))
            for p in raw_ports
            if isinstance(p, dict)
        )
    raw_endpoints = endpoint_slice.get("endpoints")
    endpoints: list[tuple[Any, ...]] = []
    if isinstance(raw_endpoints, list):
        for endpoint in raw_endpoints:
            if not isinstance(endpoint, dict):
                continue
            raw_addresses = endpoint.get("addresses")
            addresses = tuple(raw_addresses) if isinstance(raw_addresses, list) else ()
            conditions = endpoint.get("conditions")
            if isinstance(conditions, dict):
                endpoints.append(
                    (
                        addresses,
                        conditions.get("ready"),
                        conditions.get("serving"),
                        conditions.get("terminating"),
                    )
                )
            else:
                endpoints.append((addresses, None, None, None))
    return (endpoint_slice.get("addressType"), ports, tuple(endpoints))


def stream_service_keys(configmap: Mapping[str, Any]) -> frozenset[ObjectKey]:
    """The Services a tcp/udp services ConfigMap's entries name (``"<port>": "<ns>/<svc>:..."``);
    malformed entries name none (the builder reports them)."""
    data = configmap.get("data")
    if not isinstance(data, dict):
        return frozenset()
    keys = set()
    for value in data.values():
        if isinstance(value, str):
            target = value.partition(":")[0]
            namespace, slash, name = target.partition("/")
            if slash and namespace and name:
                keys.add(ObjectKey(target))
    return frozenset(keys)
