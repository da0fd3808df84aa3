"""Screening: a raw Ingress -> its spec when it is plainly well-formed; else pydantic decides.

    raw Ingress --plain_spec(raw)--> ``spec`` (a dict), read as it is
        every field that ``kube.Ingress`` models has its JSON type: metadata strings and
        string maps, ``ingressClassName``, backends, rules, paths, TLS entries
    anything else --> ``Irregular``: ``plan_ingress`` (``ingressd.build.plan``) parses the object
        with ``kube.Ingress`` (pydantic), which says what is wrong or reads what is merely unusual

The common case (an object as the API server or a manifest writes it) skips pydantic.  What
``plain_spec`` accepts ``kube.Ingress`` accepts too, and the plan is the same either way
(``tests/test_planning.py`` checks both on random mutations).  Only types are checked here;
values (host names, paths, ports) are the planning's business.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Irregular", "plain_spec"]


class Irregular(Exception):
    """The object is not plainly well-formed: pydantic (``kube.Ingress``) decides."""


def _list(value: object) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise Irregular
    return value


def _str_map(value: object) -> None:
    if value is None:
        return
    if type(value) is not dict:
        raise Irregular
    for k, v in value.items():
        if type(k) is not str or type(v) is not str:
            raise Irregular


def _backend(value: object) -> None:
    if type(value) is not dict:
        raise Irregular
    service = value.get("service")
    if service is not None:
        if type(service) is not dict or type(service.get("name")) is not str:
            raise Irregular
        port = service.get("port")
        if port is not None:
            if type(port) is not dict:
                raise Irregular
            number, name = port.get("number"), port.get("name")
            if (number is not None and type(number) is not int) or (
                name is not None and type(name) is not str
            ):
                raise Irregular
    resource = value.get("resource")
    if resource is not None:
        if type(resource) is not dict:
            raise Irregular
        for name in ("apiGroup", "kind", "name"):
            field_value = resource.get(name)
            if field_value is not None and type(field_value) is not str:
                raise Irregular


_META_STRINGS = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")


def plain_spec(raw: object) -> dict[str, Any]:
    """The spec of an Ingress that ``kube.Ingress`` would accept as it is (every field it
    models has its type); raises ``Irregular`` on anything else, accepted or not."""
    if type(raw) is not dict:
        raise Irregular
    meta = raw.get("metadata")
    if meta is not None:
        if type(meta) is not dict:
            raise Irregular
        for name in _META_STRINGS:
            value = meta.get(name)
            if value is not None and type(value) is not str:
                raise Irregular
        _str_map(meta.get("labels"))
        _str_map(meta.get("annotations"))
    spec = raw.get("spec")
    if spec is None:
        return {}
    if type(spec) is not dict:
        raise Irregular
    class_name = spec.get("ingressClassName")
    if class_name is not None and type(class_name) is not str:
        raise Irregular
    default = spec.get("defaultBackend")
    if default is not None:
        _backend(default)
    for rule in _list(spec.get("rules")):
        if type(rule) is not dict:
            raise Irregular
        host = rule.get("host")
        if host is not None and type(host) is not str:
            raise Irregular
        http = rule.get("http")
        if http is None:
            continue
        if type(http) is not dict:
            raise Irregular
        for path in _list(http.get("paths")):
            if type(path) is not dict:
                raise Irregular
            path_value, path_type = path.get("path"), path.get("pathType")
            if (path_value is not None and type(path_value) is not str) or (
                path_type is not None and type(path_type) is not str
            ):
                raise Irregular
            _backend(path.get("backend"))
    for entry in _list(spec.get("tls")):
        if type(entry) is not dict:
            raise Irregular
        for host in _list(entry.get("hosts")):
            if type(host) is not str:
                raise Irregular
        secret_name = entry.get("secretName")
        if secret_name is not None and type(secret_name) is not str:
            raise Irregular
    return spec
