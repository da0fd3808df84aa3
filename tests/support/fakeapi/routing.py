"""API routing: a request path of the fake API server -> what it addresses.  Pure.

    path segments --discovery(segments, address)--> APIVersions | APIGroupList | APIGroup |
                                                    APIResourceList, from ``RESOURCES``; or None
                  --route(segments)--> (Resource, namespace, name, subresource), or ApiError 404
        /api/v1[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]
        /apis/GROUP/VERSION[/namespaces/NS]/PLURAL[/NAME[/SUBRESOURCE]]

``ApiHandler`` (``serving.py``) asks ``discovery`` first, then ``route``, and serves the
resource path it gets.  A path is refused as the real API server does: a namespaced path for a
cluster-scoped resource, a named namespaced object without a namespace, an unknown subresource.
"""

from __future__ import annotations

from typing import Any

from tests.support.fakeapi.machinery import ApiError, status
from tests.support.fakeapi.store import RESOURCES, Resource

__all__ = ["discovery", "route"]

JSON = dict[str, Any]
_Strings = list[str]
_Objects = list[JSON]

#: The verbs discovery lists for every resource.
_VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def discovery(segments: _Strings, address: str) -> JSON | None:
    """The discovery document of ``segments`` (``/api``, ``/apis``, ``/api/v1``, ``/apis/G``,
    ``/apis/G/V``); ``None`` when they are not a discovery path.  ``address``: ``host:port``."""
    if segments == ["api"]:
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }
    groups: dict[str, _Strings] = {}
    for r in RESOURCES:
        if r.group and r.version not in groups.setdefault(r.group, []):
            groups[r.group].append(r.version)

    def group_info(group: str) -> JSON:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in groups[group]]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    if segments == ["apis"]:
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [group_info(g) for g in groups],
        }
    if len(segments) == 2 and segments[0] == "apis" and segments[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **group_info(segments[1])}
    if segments == ["api", "v1"] or (len(segments) == 3 and segments[0] == "apis"):
        group_version = "/".join(segments[1:])
        listed: _Objects = []
        for r in RESOURCES:
            if r.api_version != group_version:
                continue
            listed.append(
                {
                    "name": r.plural,
                    "singularName": r.kind.lower(),
                    "namespaced": r.namespaced,
                    "kind": r.kind,
                    "verbs": _VERBS,
                }
            )
            for sub in sorted(r.subresources):
                listed.append(
                    {
                        "name": f"{r.plural}/{sub}",
                        "singularName": "",
                        "namespaced": r.namespaced,
                        "kind": r.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not listed:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": listed,
        }
    return None


def route(segments: _Strings) -> tuple[Resource, str | None, str | None, str]:
    """``(resource, namespace, name, subresource)`` of a resource path; 404 otherwise."""
    not_found = ApiError(
        status(404, "NotFound", "the server could not find the requested resource")
    )
    if len(segments) >= 2 and segments[0] == "api":
        group_version, rest = segments[1], segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group_version, rest = f"{segments[1]}/{segments[2]}", segments[3:]
    else:
        raise not_found
    by_plural = {r.plural: r for r in RESOURCES if r.api_version == group_version}
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] in by_plural:
        namespace, rest = rest[1], rest[2:]
    if not rest or rest[0] not in by_plural or len(rest) > 3:
        raise not_found
    resource = by_plural[rest[0]]
    if namespace is not None and not resource.namespaced:
        raise not_found
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else ""
    if subresource and subresource not in resource.subresources:
        raise not_found
    if name is not None and resource.namespaced and namespace is None:
        raise not_found
    return resource, namespace, name, subresource
