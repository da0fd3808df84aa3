"""Keys: the names the model's values refer to each other and to Kubernetes objects by."""

from __future__ import annotations

from typing import NewType

__all__ = ["CATCH_ALL", "BackendName", "ObjectKey"]

#: ``namespace/name`` of a Kubernetes object.
ObjectKey = NewType("ObjectKey", str)

#: Name of an upstream backend, ``<namespace>-<service>-<port>`` as ingress-nginx names them.
BackendName = NewType("BackendName", str)

#: Name of the catch-all server, the one that answers requests for unknown hosts.
CATCH_ALL = "_"
