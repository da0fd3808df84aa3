"""Bisection of the Ingresses that make nginx -t refuse a candidate (pipeline.quarantine)."""

from __future__ import annotations

import math

import pytest

from ingressd.model import ObjectKey
from ingressd.pipeline.quarantine import isolate


def keys(n: int) -> list[ObjectKey]:
    return [ObjectKey(f"default/i{i:04d}") for i in range(n)]


class Nginx:
    """``passes(excluded)``: the candidate passes when every bad key is excluded."""

    def __init__(self, bad: set[ObjectKey], *, always_fails: bool = False) -> None:
        self.bad = bad
        self.always_fails = always_fails
        self.checks = 0

    async def passes(self, excluded: set[ObjectKey]) -> bool:
        self.checks += 1
        return not self.always_fails and self.bad <= excluded


@pytest.mark.parametrize("n", [1, 2, 7, 100, 1000])
async def test_one_culprit_is_found_in_about_log2_n_checks(n: int) -> None:
    candidates = keys(n)
    nginx = Nginx({candidates[n // 3]})
    assert await isolate(candidates, nginx.passes) == [candidates[n // 3]]
    assert nginx.checks <= max(1, math.ceil(math.log2(n))) + 1


async def test_one_poisoned_and_one_good_ingress_cost_a_single_check() -> None:
    new, poison = ObjectKey("default/new"), ObjectKey("default/poison")
    nginx = Nginx({poison})
    assert await isolate([new, poison], nginx.passes) == [poison]
    assert nginx.checks == 1


async def test_several_culprits_are_all_found() -> None:
    candidates = keys(64)
    bad = {candidates[3], candidates[40], candidates[41]}
    nginx = Nginx(bad)
    assert set(await isolate(candidates, nginx.passes)) == bad


async def test_nothing_is_quarantined_when_the_cause_is_elsewhere() -> None:
    nginx = Nginx(set(), always_fails=True)
    assert await isolate(keys(10), nginx.passes) == []
