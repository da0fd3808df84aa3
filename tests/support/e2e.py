"""Helpers for the end-to-end tests: deploy fake Services and wait for nginx to serve them."""

from __future__ import annotations

from typing import Any

from tests.support.harness import Harness, Response
from tests.support.objects import endpoint_slice, service, service_port


async def deploy(
    h: Harness,
    name: str,
    replicas: int = 1,
    *,
    namespace: str = "default",
    port: int = 80,
    port_name: str | None = "http",
) -> list[str]:
    """Start ``replicas`` pods named ``<name>-<i>`` and write their Service and EndpointSlice."""
    addresses, target = await h.start_pods(replicas, prefix=name)
    h.write(
        f"svc-{namespace}-{name}.yaml",
        service(name, namespace, ports=[service_port(port, port_name, target_port=target)]),
        endpoint_slice(name, namespace, endpoints=addresses, port=target, port_name=port_name),
    )
    return addresses


async def expect(
    h: Harness,
    path: str,
    *,
    host: str | None = None,
    status: int = 200,
    service: str | None = None,
    https: bool = False,
    timeout: float = 5.0,
    **kwargs: Any,
) -> Response:
    """Wait until ``path`` on ``host`` answers ``status`` (from a pod of ``service``), then
    until the pipeline is idle: a reload's new workers may answer before its sync has ended
    and been counted."""

    async def check() -> Response:
        resp = await h.get(path, host=host, https=https, **kwargs)
        where = f"{host or '<no host>'}{path}"
        assert resp.status == status, f"{where}: {resp.status} != {status}: {resp.body[:200]}"
        if service is not None:
            assert resp.pod is not None and resp.pod.rsplit("-", 1)[0] == service, (
                f"{where}: served by {resp.pod}, expected a pod of {service}"
            )
        return resp

    resp = await h.eventually(check, timeout=timeout)
    await h.settled()
    return resp
