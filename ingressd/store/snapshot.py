"""A consistent, read-only view of the Store's caches, taken by the sync worker at sync start.

    Store caches --Store.snapshot()--> Snapshot --building.build_configuration()--> Configuration

Objects are the raw Kubernetes objects (dicts, as the API server sends them).  By convention nobody
mutates them: the Store replaces an object on change, it never edits one in place, so a snapshot
stays valid while the Store moves on, and what is derived from an object stays right for as long
as a snapshot holds that very object (the build's ``BuildCache`` relies on it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ingressd.model import ObjectKey

#: A Kubernetes object as JSON.
KubeObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The caches at one instant.

    Namespaced kinds are keyed ``namespace/name``; IngressClass (cluster-scoped) by its bare name.
    ``endpoint_slices`` is the Store's index: Service key -> the EndpointSlices labelled with
    ``kubernetes.io/service-name`` = that Service, in a stable order (by slice name).
    """

    ingresses: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    ingress_classes: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    services: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    endpoint_slices: Mapping[ObjectKey, tuple[KubeObject, ...]] = field(default_factory=dict)
    secrets: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
    config_maps: Mapping[ObjectKey, KubeObject] = field(default_factory=dict)
