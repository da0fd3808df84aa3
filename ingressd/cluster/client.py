"""Connecting to a Kubernetes API server: kubeconfig or in-cluster config -> ``ApiClient``.

    --kubeconfig PATH  --load_kube_config()-------\
                                                    >--> Configuration --> ApiClient (one aiohttp
    in a pod (service account token, CA, env) -----/       session, shared by every caller)
         --load_incluster_config()

The caller owns the client: ``await client.close()`` when done (or ``async with``).
"""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration

__all__ = ["SERVICE_ACCOUNT_DIR", "api_client", "in_cluster"]

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

#: Connections per client.  Every informer holds one for its watch (six), and leader election,
#: status updates and Events need their own; the library default (5 x CPUs) can starve them.
POOL_SIZE = 32


def in_cluster() -> bool:
    """True inside a pod: the API server's address is in the environment and the service
    account token is mounted."""
    return (
        bool(os.environ.get("KUBERNETES_SERVICE_HOST"))
        and (SERVICE_ACCOUNT_DIR / "token").is_file()
    )


async def api_client(kubeconfig: Path | None, *, context: str | None = None) -> ApiClient:
    """A client for the cluster of ``kubeconfig`` (its current context, or ``context``), or for
    the cluster this pod runs in when ``kubeconfig`` is ``None``.

    Raises ``kubernetes_asyncio.config.ConfigException`` when the configuration is unusable.
    """
    configuration = Configuration()
    if kubeconfig is None:
        config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    else:
        await config.load_kube_config(
            config_file=str(kubeconfig), context=context, client_configuration=configuration
        )
    configuration.connection_pool_maxsize = POOL_SIZE
    return ApiClient(configuration)
