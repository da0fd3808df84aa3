"""Typed shapes of the Kubernetes objects the builder reads, checked structurally.

    Snapshot (raw dicts) --parse(Ingress | IngressClass, raw)--> pydantic model | ParseError
                         --read_service(raw) / read_endpoint_slice(raw)--> view | ParseError
        -> building.build_configuration() reads typed fields; a ParseError becomes a Problem

Ingress and IngressClass go through pydantic models; Service and EndpointSlice (one of each per
backend, the hot path) are read by hand into small views with the same strictness and field
paths.  Only the fields ingressd uses are modelled; unknown fields are ignored.  Parsing is
strict (a port number must be an ``int``, not ``"80"`` or ``True``): the API server has already
checked types, so a mismatch means a hand-written manifest or a corrupt trace and deserves a
clear message rather than a guess.  ``null`` is accepted wherever a field may be omitted.  Grammar
(host names, paths) is not checked here: that is ``ingressd.model.validation``'s job, item by item,
so a bad path skips one path and not the whole Ingress.

Field names follow the Kubernetes API (camelCase aliases), so the field paths in errors read
like the object: ``spec.rules[0].http.paths[1].backend.service.port.number``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "EndpointSliceView",
    "HTTPIngressPath",
    "HTTPIngressRuleValue",
    "Ingress",
    "IngressBackend",
    "IngressClass",
    "IngressClassSpec",
    "IngressRule",
    "IngressServiceBackend",
    "IngressSpec",
    "IngressTLS",
    "ObjectMeta",
    "ParseError",
    "ServiceBackendPort",
    "ServiceView",
    "SliceEndpointView",
    "TypedLocalObjectReference",
    "field_path",
    "parse",
    "read_endpoint_slice",
    "read_service",
]


@dataclass(frozen=True, slots=True)
class ParseError:
    """Why a raw object does not fit its model: the first offending field and a reason."""

    field: str
    reason: str


class _Kube(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class ObjectMeta(_Kube):
    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    resource_version: str | None = Field(None, alias="resourceVersion")
    creation_timestamp: str | None = Field(None, alias="creationTimestamp")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


# --- Ingress (networking.k8s.io/v1) ---------------------------------------------------------


class ServiceBackendPort(_Kube):
    number: int | None = None
    name: str | None = None


class IngressServiceBackend(_Kube):
    name: str
    port: ServiceBackendPort | None = None


class TypedLocalObjectReference(_Kube):
    api_group: str | None = Field(None, alias="apiGroup")
    kind: str | None = None
    name: str | None = None


class IngressBackend(_Kube):
    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


class HTTPIngressPath(_Kube):
    path: str | None = None
    path_type: str | None = Field(None, alias="pathType")
    backend: IngressBackend


class HTTPIngressRuleValue(_Kube):
    paths: list[HTTPIngressPath] | None = None


class IngressRule(_Kube):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(_Kube):
    hosts: list[str] | None = None
    secret_name: str | None = Field(None, alias="secretName")


class IngressSpec(_Kube):
    ingress_class_name: str | None = Field(None, alias="ingressClassName")
    default_backend: IngressBackend | None = Field(None, alias="defaultBackend")
    rules: list[IngressRule] | None = None
    tls: list[IngressTLS] | None = None


class Ingress(_Kube):
    metadata: ObjectMeta | None = None
    spec: IngressSpec | None = None


class IngressClassSpec(_Kube):
    controller: str | None = None


class IngressClass(_Kube):
    metadata: ObjectMeta | None = None
    spec: IngressClassSpec | None = None


# --- Service and EndpointSlice: read by hand (hot path: one per backend; ~10x pydantic) -----


class ServiceView(NamedTuple):
    """What the builder needs of a v1 Service."""

    type: str
    #: ``(name, port)`` of each ``spec.ports[]`` entry; an unnamed port has name ``""``.
    ports: tuple[tuple[str, int], ...]
    #: ``spec.clusterIP`` as written (``""`` when absent; ``None`` is headless), unchecked.
    cluster_ip: str = ""


class SliceEndpointView(NamedTuple):
    addresses: tuple[str, ...]
    ready: bool | None
    serving: bool | None
    terminating: bool | None


class EndpointSliceView(NamedTuple):
    """What the builder needs of a discovery.k8s.io/v1 EndpointSlice."""

    name: str | None
    address_type: str
    #: ``(name, port)`` of each ``ports[]`` entry with a port; unnamed is ``""``.
    ports: tuple[tuple[str, int], ...]
    endpoints: tuple[SliceEndpointView, ...]


class _Malformed(Exception):
    def __init__(self, field: str, reason: str) -> None:
        self.error = ParseError(field, reason)


_DICT = "input should be a valid dictionary"
_LIST = "input should be a valid list"
_STR = "input should be a valid string"
_INT = "input should be a valid integer"
_BOOL = "input should be a valid boolean"


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is a subclass of int: excluded on purpose


def _read_ports(raw: object, at: str, *, required: bool) -> tuple[tuple[str, int], ...]:
    """``(name or "", port)`` of each entry of a ports list; entries without a port are an
    error when ``required``, else skipped."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Malformed(at, _LIST)
    ports: list[tuple[str, int]] = []
    for i, port in enumerate(raw):
        if not isinstance(port, dict):
            raise _Malformed(f"{at}[{i}]", _DICT)
        number, name = port.get("port"), port.get("name")
        if number is not None and not _is_int(number):
            raise _Malformed(f"{at}[{i}].port", _INT)
        if number is None and required:
            raise _Malformed(f"{at}[{i}].port", "field required")
        if name is not None and not isinstance(name, str):
            raise _Malformed(f"{at}[{i}].name", _STR)
        if number is not None:
            ports.append((name or "", number))
    return tuple(ports)


def read_service(raw: object) -> ServiceView | ParseError:
    """A v1 Service -> ``ServiceView``; never raises."""
    try:
        if not isinstance(raw, dict):
            raise _Malformed("object", _DICT)
        spec = raw.get("spec")
        if spec is None:
            return ServiceView("ClusterIP", ())
        if not isinstance(spec, dict):
            raise _Malformed("spec", _DICT)
        service_type = spec.get("type")
        if service_type is not None and not isinstance(service_type, str):
            raise _Malformed("spec.type", _STR)
        ports = _read_ports(spec.get("ports"), "spec.ports", required=True)
        cluster_ip = spec.get("clusterIP")
        if cluster_ip is not None and not isinstance(cluster_ip, str):
            raise _Malformed("spec.clusterIP", _STR)
        return ServiceView(service_type or "ClusterIP", ports, cluster_ip or "")
    except _Malformed as exc:
        return exc.error


def _read_endpoints(raw: object) -> tuple[SliceEndpointView, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _Malformed("endpoints", _LIST)
    views: list[SliceEndpointView] = []
    for i, endpoint in enumerate(raw):
        if not isinstance(endpoint, dict):
            raise _Malformed(f"endpoints[{i}]", _DICT)
        addresses = endpoint.get("addresses")
        if not isinstance(addresses, list):
            reason = "field required" if addresses is None else _LIST
            raise _Malformed(f"endpoints[{i}].addresses", reason)
        for j, address in enumerate(addresses):
            if not isinstance(address, str):
                raise _Malformed(f"endpoints[{i}].addresses[{j}]", _STR)
        conditions = endpoint.get("conditions")
        if conditions is None:
            views.append(SliceEndpointView(tuple(addresses), None, None, None))
            continue
        if not isinstance(conditions, dict):
            raise _Malformed(f"endpoints[{i}].conditions", _DICT)
        ready = conditions.get("ready")
        serving = conditions.get("serving")
        terminating = conditions.get("terminating")
        for name, value in (("ready", ready), ("serving", serving), ("terminating", terminating)):
            if value is not None and value is not True and value is not False:
                raise _Malformed(f"endpoints[{i}].conditions.{name}", _BOOL)
        views.append(SliceEndpointView(tuple(addresses), ready, serving, terminating))
    return tuple(views)


def read_endpoint_slice(raw: object) -> EndpointSliceView | ParseError:
    """A discovery.k8s.io/v1 EndpointSlice -> ``EndpointSliceView``; never raises."""
    try:
        if not isinstance(raw, dict):
            raise _Malformed("object", _DICT)
        meta = raw.get("metadata")
        if meta is not None and not isinstance(meta, dict):
            raise _Malformed("metadata", _DICT)
        name = meta.get("name") if meta else None
        if name is not None and not isinstance(name, str):
            raise _Malformed("metadata.name", _STR)
        address_type = raw.get("addressType")
        if not isinstance(address_type, str):
            raise _Malformed("addressType", "field required" if address_type is None else _STR)
        ports = _read_ports(raw.get("ports"), "ports", required=False)
        endpoints = _read_endpoints(raw.get("endpoints"))
        return EndpointSliceView(name, address_type, ports, endpoints)
    except _Malformed as exc:
        return exc.error


# --- parsing --------------------------------------------------------------------------------


_M = TypeVar("_M", bound=BaseModel)
#: Pydantic names our classes in "valid dictionary or instance of IngressSpec"; users need not.
_INSTANCE_OF = re.compile(r" or instance of \w+")


def field_path(loc: tuple[int | str, ...]) -> str:
    """``("spec", "rules", 0, "host")`` -> ``"spec.rules[0].host"``; ``()`` -> ``"object"``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "object"


def parse(model: type[_M], raw: Any) -> _M | ParseError:
    """Validate ``raw`` against ``model``; never raises.

    On failure the error with the smallest field path is reported (so the answer does not
    depend on the order of keys in ``raw``), with a count of the others.
    """
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors = sorted(
            (field_path(tuple(e["loc"])), str(e["msg"])) for e in exc.errors(include_url=False)
        )
        field, reason = errors[0]
        reason = _INSTANCE_OF.sub("", reason[:1].lower() + reason[1:])
        if len(errors) > 1:
            reason += f" (and {len(errors) - 1} more errors)"
        return ParseError(field, reason)
    except (TypeError, ValueError, RecursionError) as exc:  # pragma: no cover - defensive
        return ParseError("object", f"cannot be parsed: {exc}")
