"""Backend policy: how the Lua balancer spreads one backend's requests.  The dynamic part.

    annotations (load-balance, upstream-hash-by, affinity, session-cookie-*, canary-*)
        --annotations.parse_annotations()--> BackendPolicy (+ TrafficShaping on a canary)
        --building--> Backend.policy
        --Backend.to_lua()--> JSON POSTed to the Lua endpoint (``ingressd.nginx.dynamic``)

Nothing here is written into nginx.conf: a change of policy alone is a dynamic update, never a
reload (``Backend.structure()`` blanks it, and ``diffing`` compares what is left).  Immutable
values, like the rest of ``ingressd.model``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ingressd.model.keys import BackendName


class LoadBalance(enum.Enum):
    """``load-balance``: the algorithm of the Lua balancer (ingress-nginx's names)."""

    ROUND_ROBIN = "round_robin"
    EWMA = "ewma"


class AffinityMode(enum.Enum):
    """``affinity-mode``: ``balanced`` moves some sessions when pods are added, ``persistent``
    keeps every session on its pod for as long as the pod exists."""

    BALANCED = "balanced"
    PERSISTENT = "persistent"


@dataclass(frozen=True, slots=True)
class CookieAffinity:
    """``affinity: cookie`` and its ``session-cookie-*`` settings."""

    name: str = "INGRESSCOOKIE"
    mode: AffinityMode = AffinityMode.BALANCED
    #: ``None``: the path of the location that set the affinity.
    path: str | None = None
    max_age: int | None = None
    #: Seconds from now for the ``Expires`` attribute.
    expires: int | None = None
    samesite: str | None = None
    #: ``Secure`` always; without it the cookie is ``Secure`` on HTTPS requests only.
    secure: bool = False
    change_on_failure: bool = False
    #: ``session-cookie-domain``: the ``Domain`` attribute.
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class TrafficShaping:
    """Which requests a canary backend takes (its ``trafficShapingPolicy``).

    Precedence as ingress-nginx: the header (``always``/``never``, or ``header_value`` /
    ``header_pattern``), then the cookie (``always``/``never``), then ``weight`` out of
    ``weight_total``.
    """

    weight: int = 0
    weight_total: int = 100
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""


@dataclass(frozen=True, slots=True)
class BackendPolicy:
    """How the Lua side balances one backend; every field is dynamic (no reload to change)."""

    load_balance: LoadBalance = LoadBalance.ROUND_ROBIN
    #: ``upstream-hash-by``: nginx variables (and text) hashed onto the endpoints; ``""`` = off.
    hash_by: str = ""
    affinity: CookieAffinity | None = None
    #: Set on a canary backend: which requests it takes from its main backend.
    traffic_shaping: TrafficShaping | None = None
    #: Canary backends tried first for this (main) backend's requests, in order.
    alternatives: tuple[BackendName, ...] = ()


DEFAULT_POLICY = BackendPolicy()
