"""Leader election: one coordination.k8s.io/v1 Lease, many replicas, at most one leader.

    LeaderElector.run()
        acquire: every retry period (jittered) try_acquire_or_renew() until it succeeds
            GET lease -> 404: CREATE it holding it (409 AlreadyExists: someone was faster)
                      -> held by another and not expired: wait
                      -> absent holder, or expired: UPDATE it with the read resourceVersion
                         (409 Conflict: someone else updated first -> re-read next time)
        lead:    is_leader = True, metric 1, listeners(True); every retry period renew (UPDATE
                 with the last resourceVersion; on 409 re-read); while renewing fails, retry
                 each retry period until the renew deadline -> lost
        lost:    is_leader = False, metric 0, listeners(False), back to acquire
        cancel:  a leader releases the lease (empty holder, 1 s) so another takes over at once

What client-go's leaderelection does, with ingress-nginx's timings (lease 30 s, renew deadline
15 s, retry period 7.5 s; constructor arguments, so tests use short ones).  "Expired" is
client-go's rule: the lease record has not changed for ``leaseDurationSeconds`` as measured by
*this* replica's monotonic clock since it first saw that record, so clocks that disagree
between nodes cannot make two leaders.  A leader that sees the lease held by someone else
steps down at once, and one that cannot renew within the renew deadline (shorter than the lease
duration) stops before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio.client import ApiClient, CoordinationV1Api
from kubernetes_asyncio.client.exceptions import ApiException

from ingressd.pipeline.metrics import Metrics

__all__ = ["DEFAULT_ELECTION_ID", "LeaderElector", "default_identity", "default_namespace"]

log = structlog.get_logger("ingressd.cluster.election")

DEFAULT_ELECTION_ID = "ingressd-leader"
#: client-go's JitterFactor for the acquire loop: waits are retry_period * [1, 2.2).
JITTER = 1.2

#: Errors of one API call that a later attempt may not have.
_TRANSIENT = (ApiException, aiohttp.ClientError, OSError, TimeoutError)


def default_identity() -> str:
    """``POD_NAME`` (or the host name) and a random suffix: unique even across restarts."""
    base = os.environ.get("POD_NAME") or socket.gethostname() or "ingressd"
    return f"{base}_{secrets.token_hex(4)}"


def default_namespace() -> str:
    """The controller's namespace: ``POD_NAMESPACE``, else ``default``."""
    return os.environ.get("POD_NAMESPACE") or "default"


def _micro_time(moment: datetime) -> str:
    """RFC 3339 with microseconds, as Kubernetes writes a MicroTime."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _spec(lease: dict[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, dict) else {}


class LeaderElector:
    """Campaigns for one Lease and tells listeners when this replica leads or stops leading."""

    def __init__(
        self,
        *,
        api: ApiClient,
        name: str = DEFAULT_ELECTION_ID,
        namespace: str | None = None,
        identity: str | None = None,
        lease_duration: float = 30.0,
        renew_deadline: float = 15.0,
        retry_period: float = 7.5,
        release_on_cancel: bool = True,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("expected retry_period < renew_deadline < lease_duration")
        self.name = name
        self.namespace = namespace or default_namespace()
        self.identity = identity or default_identity()
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self.metrics = metrics
        self.clock = clock
        self._api = CoordinationV1Api(api)
        self._sanitize = api.sanitize_for_serialization
        #: Called with True when this replica starts leading, False when it stops.
        self.listeners: list[Callable[[bool], None]] = []
        #: The holder of the lease as last observed ("" when released, None before any read).
        self.leader: str | None = None
        self._leading = False
        self._lease: dict[str, Any] | None = None
        self._observed: tuple[object, ...] | None = None
        self._observed_at = 0.0
        if metrics is not None:
            metrics.set_leader(name, False)

    @property
    def is_leader(self) -> bool:
        return self._leading

    # -- the loop -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing, until cancelled."""
        log.info(
            "leader election started", lease=f"{self.namespace}/{self.name}", identity=self.identity
        )
        try:
            while True:
                while not await self._attempt(self.retry_period):
                    await asyncio.sleep(self.retry_period * (1 + random.random() * JITTER))
                self._set_leading(True)
                await self._renew_until_lost()
                self._set_leading(False)
        finally:
            if self._leading:
                self._set_leading(False)
                if self.release_on_cancel:
                    with contextlib.suppress(*_TRANSIENT):
                        async with asyncio.timeout(self.retry_period):
                            await self._release()

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            deadline = self.clock() + self.renew_deadline
            while True:
                remaining = deadline - self.clock()
                if remaining > 0 and await self._attempt(remaining):
                    break
                if self.leader not in (None, self.identity):
                    log.warning(
                        "lost leadership: the lease is held by another replica", holder=self.leader
                    )
                    return
                if self.clock() >= deadline:
                    log.warning(
                        "lost leadership: could not renew the lease in time",
                        renew_deadline=self.renew_deadline,
                    )
                    return
                await asyncio.sleep(min(self.retry_period, max(0.0, deadline - self.clock())))

    def _set_leading(self, leading: bool) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        if self.metrics is not None:
            self.metrics.set_leader(self.name, leading)
        if leading:
            log.info("became leader", lease=f"{self.namespace}/{self.name}", identity=self.identity)
        for listener in list(self.listeners):
            try:
                listener(leading)
            except Exception as exc:  # a listener must not stop the election
                log.error("leader election listener failed", error=repr(exc))

    # -- one attempt (client-go's tryAcquireOrRenew) ----------------------------------------------

    async def _attempt(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                return await self.try_acquire_or_renew()
        except _TRANSIENT as exc:
            if self._leading:
                # A leader failing to renew is worth a line each time: leadership is lost
                # renew_deadline later if none succeeds.
                log.warning(
                    "lease renewal failed",
                    lease=f"{self.namespace}/{self.name}",
                    error=_describe(exc),
                    retry_in_s=self.retry_period,
                )
            else:
                log.debug("lease attempt failed", error=_describe(exc))
            return False

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to become or stay the holder; True when this replica holds the lease."""
        now = datetime.now(UTC)
        if self._leading and self._lease is not None:
            # Fast path: renew what we wrote last; a 409 means someone else wrote since.
            try:
                await self._update(self._lease, now)
                return True
            except ApiException as exc:
                if exc.status != 409:
                    raise
                log.debug("lease changed since our last renewal: re-reading")
        try:
            lease = self._sanitize(await self._api.read_namespaced_lease(self.name, self.namespace))
        except ApiException as exc:
            if exc.status != 404:
                raise
            return await self._create(now)
        self._observe(lease)
        spec = _spec(lease)
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(spec):
            return False
        try:
            await self._update(lease, now)
        except ApiException as exc:
            if exc.status == 409:
                log.debug("lease conflict: another replica updated it first")
                return False
            raise
        return True

    async def _create(self, now: datetime) -> bool:
        body = self._body(self._record(now, previous={}))
        try:
            created = await self._api.create_namespaced_lease(self.namespace, body)
        except ApiException as exc:
            if exc.status == 409:
                return False  # AlreadyExists: another replica created it first
            raise
        self._took(self._sanitize(created))
        return True

    async def _update(self, lease: dict[str, Any], now: datetime) -> None:
        body = self._body(self._record(now, previous=_spec(lease)), of=lease)
        replaced = await self._api.replace_namespaced_lease(self.name, self.namespace, body)
        self._took(self._sanitize(replaced))

    def _body(self, spec: dict[str, Any], *, of: dict[str, Any] | None = None) -> Any:
        """Our Lease with ``spec``; ``of``: the Lease it replaces (its resourceVersion, so a
        concurrent write gets a 409)."""
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if of is not None:
            metadata["resourceVersion"] = (of.get("metadata") or {}).get("resourceVersion")
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    def _record(self, now: datetime, *, previous: dict[str, Any]) -> dict[str, Any]:
        ours = previous.get("holderIdentity") == self.identity
        transitions = int(previous.get("leaseTransitions") or 0)
        stamp = _micro_time(now)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": previous.get("acquireTime") if ours else stamp,
            "renewTime": stamp,
            "leaseTransitions": transitions if ours or not previous else transitions + 1,
        }

    def _took(self, lease: dict[str, Any]) -> None:
        self._lease = lease
        self._observe(lease)

    def _observe(self, lease: dict[str, Any]) -> None:
        """Remember the record and when this replica first saw it (client-go's observedTime)."""
        spec = _spec(lease)
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseDurationSeconds"),
            spec.get("acquireTime"),
        )
        if record != self._observed:
            self._observed = record
            self._observed_at = self.clock()
        holder = spec.get("holderIdentity") or ""
        if holder != self.leader:
            if holder and holder != self.identity:
                log.info("new leader observed", holder=holder)
            self.leader = holder

    def _expired(self, spec: dict[str, Any]) -> bool:
        duration = spec.get("leaseDurationSeconds")
        seconds = float(duration) if isinstance(duration, int | float) else self.lease_duration
        return self.clock() > self._observed_at + seconds

    async def _release(self) -> None:
        """Give the lease up: no holder, 1 s, so the next replica need not wait it out."""
        if self._lease is None:
            return
        now = _micro_time(datetime.now(UTC))
        previous = _spec(self._lease)
        body = self._body(
            {
                "leaseDurationSeconds": 1,
                "acquireTime": now,
                "renewTime": now,
                "leaseTransitions": previous.get("leaseTransitions") or 0,
            },
            of=self._lease,
        )
        await self._api.replace_namespaced_lease(self.name, self.namespace, body)
        self._lease = None
        log.info("lease released", lease=f"{self.namespace}/{self.name}")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return repr(exc)
