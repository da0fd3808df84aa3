"""Planning reads plainly well-formed Ingresses by hand and leaves everything else to pydantic:
what it accepts, ``kube.Ingress`` accepts too, and the plan is the same either way."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from ingressd.annotations import AnnotationOptions
from ingressd.build import kube
from ingressd.build._screen import Irregular, plain_spec
from ingressd.build.plan import IngressPlan, plan_ingress
from ingressd.model import ObjectKey
from tests.support import objects as o

ODD_VALUES: list[Any] = [None, 1, True, 1.5, "x", "", [], {}, ["x"], {"a": 1}, {"a": "b"}]


def sample() -> dict[str, Any]:
    return o.ingress(
        "app",
        rules=[
            o.rule("a.test", o.path("/", "web"), o.path("/api", "api", "http", "Exact")),
            o.rule(None, o.path("/x", "web")),
        ],
        tls_entries=[o.tls("a.test", secret_name="tls")],
        default_backend=o.backend("web", 80),
        annotations={"nginx.ingress.kubernetes.io/proxy-body-size": "8m"},
    )


def leaves(obj: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value in a JSON-like object."""
    found = [at]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += leaves(v, (*at, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            found += leaves(v, (*at, i))
    return found


def mutated(rng: random.Random) -> dict[str, Any]:
    raw = sample()
    for _ in range(rng.randint(1, 2)):
        where = rng.choice(leaves(raw)[1:])
        parent = raw
        for part in where[:-1]:
            parent = parent[part]
        parent[where[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
    return raw


def shape(plan: IngressPlan) -> tuple[Any, ...]:
    return (
        plan.invalid,
        plan.notes,
        plan.rules,
        plan.tls,
        plan.has_default_backend,
        plan.default_backend,
        plan.default_backend_issue,
        plan.hosts,
        plan.services,
        plan.secrets,
    )


@pytest.mark.parametrize("seed", range(20))
def test_what_planning_reads_by_hand_pydantic_accepts_too(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(50):
        raw = mutated(rng)
        try:
            plain_spec(raw)
        except Irregular:
            continue
        assert not isinstance(kube.parse(kube.Ingress, raw), kube.ParseError), raw


def test_an_unusual_but_valid_ingress_is_planned_as_the_plain_one() -> None:
    class Text(str):
        pass

    plain = sample()
    unusual = sample()
    unusual["spec"]["rules"][0]["host"] = Text("a.test")  # not a plain str: pydantic reads it
    with pytest.raises(Irregular):
        plain_spec(unusual)
    key = ObjectKey("default/app")
    options = AnnotationOptions()
    assert shape(plan_ingress(key, unusual, options)) == shape(plan_ingress(key, plain, options))
