"""Leader election over a coordination.k8s.io/v1 Lease, against the fake API server over HTTP.

LeaderElector x N --kubernetes-asyncio (one ApiClient each, like separate pods)--> FakeApiServer
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from ingressd.cluster.client import api_client
from ingressd.cluster.election import LeaderElector
from ingressd.pipeline.metrics import Metrics
from tests.support import rbac
from tests.support.fakeapi import FakeApiServer

LEASE = ("Lease", "ingressd-leader", "ingressd")
#: Short timings: takeover within ~1 s instead of 30.
TIMINGS = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.15}

Make = Callable[..., Awaitable[LeaderElector]]


class Electors:
    """Electors with their own ApiClient and task; everything stopped at the end."""

    def __init__(self, api: FakeApiServer, tmp: Path) -> None:
        self.kubeconfig = api.write_kubeconfig(tmp / "kubeconfig")
        self.clients: list[Any] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.transitions: list[tuple[str, bool]] = []

    async def make(self, name: str, *, start: bool = True, **options: Any) -> LeaderElector:
        client = await api_client(self.kubeconfig)
        self.clients.append(client)
        elector = LeaderElector(
            api=client,
            namespace="ingressd",
            identity=name,
            metrics=Metrics(),
            **{**TIMINGS, **options},
        )
        elector.listeners.append(lambda leading: self.transitions.append((name, leading)))
        if start:
            self.start(elector)
        return elector

    def start(self, elector: LeaderElector) -> None:
        self.tasks[elector.identity] = asyncio.create_task(elector.run())

    async def stop(self, elector: LeaderElector) -> None:
        task = self.tasks.pop(elector.identity)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def close(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        for task in self.tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in self.clients:
            await client.close()


@pytest.fixture
async def electors(fake_api: FakeApiServer, tmp_path: Path) -> AsyncIterator[Electors]:
    group = Electors(fake_api, tmp_path)
    try:
        yield group
    finally:
        await group.close()


async def until(check: Callable[[], bool], timeout: float = 5.0) -> float:
    """Wait until ``check()``; returns how long it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.01)
    return loop.time() - start


def status(elector: LeaderElector) -> float:
    assert elector.metrics is not None
    return elector.metrics.value(
        "nginx_ingress_controller_leader_election_status", {"name": "ingressd-leader"}
    )


def holder(api: FakeApiServer) -> str:
    return str(api.get(*LEASE)["spec"].get("holderIdentity") or "")


async def test_two_electors_make_exactly_one_leader(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a, b = await electors.make("a"), await electors.make("b")
    await until(lambda: a.is_leader or b.is_leader)
    leader, other = (a, b) if a.is_leader else (b, a)
    for _ in range(80):  # ~1 s, several renewals: never two leaders, the Lease agrees
        assert leader.is_leader and not other.is_leader
        assert holder(fake_api) == leader.identity
        await asyncio.sleep(0.0125)
    assert (status(leader), status(other)) == (1, 0)
    assert other.leader == leader.identity
    spec = fake_api.get(*LEASE)["spec"]
    assert spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 0
    assert spec["renewTime"].endswith("Z") and len(spec["renewTime"]) == 27  # MicroTime
    assert electors.transitions == [(leader.identity, True)]


async def test_the_other_takes_over_when_the_leader_stops_renewing(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a", release_on_cancel=False)  # a crash: no release
    await until(lambda: a.is_leader)
    b = await electors.make("b")
    await asyncio.sleep(0.3)
    assert not b.is_leader
    await electors.stop(a)
    took = await until(lambda: b.is_leader, timeout=3.0)
    # Not before the lease expired (as b measures it), not much after.
    assert 1.0 - TIMINGS["retry_period"] - 0.05 <= took <= 1.0 + 3 * TIMINGS["retry_period"] + 0.5
    assert holder(fake_api) == "b"
    assert fake_api.get(*LEASE)["spec"]["leaseTransitions"] == 1
    assert status(b) == 1


async def test_a_released_lease_is_taken_at_once(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a")
    await until(lambda: a.is_leader)
    b = await electors.make("b")
    await asyncio.sleep(0.2)
    await electors.stop(a)  # graceful: the lease is released
    assert status(a) == 0 and not a.is_leader
    took = await until(lambda: b.is_leader, timeout=3.0)
    assert took < 0.8  # well under the 1 s lease: b did not wait it out
    assert electors.transitions == [("a", True), ("a", False), ("b", True)]


async def test_simultaneous_creates_make_one_holder(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a", start=False)
    b = await electors.make("b", start=False)
    results = await asyncio.gather(a.try_acquire_or_renew(), b.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert holder(fake_api) == ("a" if results[0] else "b")
    creates = [r for r in fake_api.requests if r.verb == "create"]
    assert 1 <= len(creates) <= 2  # the second create, if any, got 409 AlreadyExists


async def test_a_conflicting_write_means_someone_else_won(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a")
    await until(lambda: a.is_leader)
    # Another replica's write: a's next renewal carries a stale resourceVersion -> 409.
    lease = fake_api.get(*LEASE)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease["spec"].update(holderIdentity="intruder", renewTime=now, acquireTime=now)
    fake_api.update(lease)
    await until(lambda: not a.is_leader, timeout=2.0)
    assert a.leader == "intruder" and status(a) == 0
    assert holder(fake_api) == "intruder"  # a did not overwrite it
    # The intruder never renews: a takes the lease back once it has expired.
    await until(lambda: a.is_leader, timeout=3.0)
    assert holder(fake_api) == "a"
    assert electors.transitions == [("a", True), ("a", False), ("a", True)]


async def test_leader_steps_down_when_it_cannot_renew_before_the_deadline(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a")
    await until(lambda: a.is_leader)
    with structlog.testing.capture_logs() as logs:
        await fake_api.set_down(True)
        lost = await until(lambda: not a.is_leader, timeout=3.0)
    assert lost <= TIMINGS["retry_period"] + TIMINGS["renew_deadline"] + 0.3
    assert lost < TIMINGS["lease_duration"]  # before anyone else may take over
    # every failed renewal said why, before leadership was lost
    failures = [e for e in logs if e["event"] == "lease renewal failed"]
    assert failures and all(e["log_level"] == "warning" and e["error"] for e in failures)
    assert logs.index(failures[0]) < next(
        i for i, e in enumerate(logs) if e["event"].startswith("lost leadership")
    )
    await fake_api.set_down(False)
    await until(lambda: a.is_leader, timeout=3.0)


async def test_election_calls_are_the_ones_rbac_grants(
    electors: Electors, fake_api: FakeApiServer
) -> None:
    a = await electors.make("a")
    await until(lambda: a.is_leader)
    b = await electors.make("b")
    await asyncio.sleep(0.5)
    await electors.stop(a)
    await until(lambda: b.is_leader)
    seen = {tuple(r) for r in fake_api.requests}
    needed = {p.call() for p in rbac.REQUIRED if p.component == "election"}
    assert (
        seen
        == needed
        == {
            ("get", "leases.coordination.k8s.io", ""),
            ("create", "leases.coordination.k8s.io", ""),
            ("update", "leases.coordination.k8s.io", ""),
        }
    )


def test_timings_must_leave_the_leader_time_to_step_down() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaderElector(
            api=object(),  # type: ignore[arg-type]
            namespace="x",
            lease_duration=10,
            renew_deadline=10,
            retry_period=2,
        )
