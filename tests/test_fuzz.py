"""Hostile objects through the Store, the build and the render: nothing raises, nothing from an
object becomes nginx syntax, and what nginx is given passes ``nginx -t``.

    tests/support/fuzz.py --objects--> Store.apply --> build_configuration --> render
        (a sample of the configurations through ``nginx -t``: ``DryRunNginx``)

A short fixed-seed pass runs in ``make test``; ``make fuzz`` runs 100,000 objects
(``INGRESSD_FUZZ_OBJECTS``, ``INGRESSD_FUZZ_SEED``) and prints the rate and totals.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ingressd.build import BuildCache, BuildOptions, build_configuration
from ingressd.logs import configure
from ingressd.model import ObjectKey
from ingressd.nginx.dryrun import DryRunNginx
from ingressd.nginx.process import ConfigTestError
from ingressd.nginx.rendering import NginxPaths, RenderSettings, render
from ingressd.pipeline.channel import UpdateChannel
from ingressd.pipeline.configmap import parse_configmap
from ingressd.store.events import EventType, WatchEvent
from ingressd.store.store import Store
from tests.support.fuzz import CONFIGMAP, INJECTED, Fuzzer
from tests.support.objects import endpoint_slice, ingress, ingress_class, path, rule, service

#: Objects per build: each build sees the Store after this many more hostile objects.
BATCH = 40


def unquoted(text: str, needle: str) -> int | None:
    """Where ``needle`` appears in nginx.conf text outside quotes and comments, or None."""
    quote: str | None = None
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote is not None:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif text.startswith(needle, i):
            return i
        i += 1
    return None


@dataclass
class Totals:
    objects: int = 0
    builds: int = 0
    problems: int = 0
    nginx_tests: int = 0
    nginx_failures: list[str] = field(default_factory=list)
    injections: list[str] = field(default_factory=list)


#: A long run starts a fresh cluster after this many objects, so its cost stays linear.
WINDOW = 2000


def fresh_cluster() -> Store:
    store = Store(channel=UpdateChannel(maxsize=1 << 20), configmap=ObjectKey("/".join(CONFIGMAP)))
    for obj in (
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoints=["10.0.0.1"]),
        ingress("good", rules=[rule("good.test", path("/", "web"))]),
    ):
        store.apply(WatchEvent(EventType.ADDED, obj))
    return store


async def fuzz(seed: int, count: int, *, nginx_every: int, work: Path) -> Totals:
    fuzzer = Fuzzer(seed)
    store = fresh_cluster()
    driver: DryRunNginx | None = None
    totals = Totals()
    options = BuildOptions()
    cache = BuildCache()
    while totals.objects < count:
        if totals.objects and totals.objects % WINDOW == 0:
            store, cache = fresh_cluster(), BuildCache()
        for obj in fuzzer.objects(min(BATCH, count - totals.objects)):
            event = fuzzer.rng.choice((EventType.ADDED, EventType.MODIFIED, EventType.DELETED))
            store.apply(
                WatchEvent(event if event is not EventType.DELETED else EventType.ADDED, obj)
            )
            totals.objects += 1
        snapshot = store.snapshot()
        configmap = snapshot.config_maps.get(ObjectKey("/".join(CONFIGMAP)))
        global_options, _ = parse_configmap(configmap, snapshot.config_maps)
        settings = global_options.render_settings(RenderSettings(http_port=18080, https_port=18443))
        result = build_configuration(snapshot, global_options.build_options(options), cache=cache)
        totals.builds += 1
        totals.problems += len(result.problems)
        text = render(result.configuration, settings=settings, paths=NginxPaths(work), generation=1)
        at = unquoted(text, INJECTED)
        if at is not None:
            totals.injections.append(f"seed {seed}: {text[max(0, at - 120) : at + 40]!r}")
        if nginx_every and totals.builds % nginx_every == 1:
            if driver is None:
                driver = DryRunNginx(settings=settings, paths=NginxPaths(work))
                await driver.start()
            totals.nginx_tests += 1
            try:
                await driver.apply_reload(result.configuration, settings)
            except ConfigTestError as exc:
                totals.nginx_failures.append(f"seed {seed}: {str(exc)[-400:]}")
    return totals


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_hostile_objects_never_raise_inject_or_fail_nginx_t(
    seed: int, world_readable_tmp: Path
) -> None:
    totals = await fuzz(seed, 400, nginx_every=4, work=world_readable_tmp / "work")
    assert totals.builds == 10 and totals.nginx_tests >= 2
    assert totals.problems > 0  # the hostile values were seen, and refused
    assert totals.injections == []
    assert totals.nginx_failures == []


async def test_buffer_annotations_nginx_would_refuse_together_are_refused_by_ingressd(
    world_readable_tmp: Path,
) -> None:
    """Every combination of the buffer annotations: what ingressd accepts passes nginx -t."""
    objects: list[dict[str, object]] = [
        ingress_class(),
        service("web"),
        endpoint_slice("web", endpoints=["10.0.0.1"]),
    ]
    combos = itertools.product(
        (None, "1k", "4k", "16k"),
        (None, "1", "2", "3", "8"),
        (None, "1k", "4k", "8k", "64k"),
        (None, "0", "1k", "1m"),
    )
    names: tuple[str, ...] = ("proxy-buffer-size", "proxy-buffers-number")
    names += ("proxy-busy-buffers-size",)
    names += ("proxy-max-temp-file-size",)
    for i, combo in enumerate(combos):
        annotations = {
            f"nginx.ingress.kubernetes.io/{n}": v for n, v in zip(names, combo, strict=True) if v
        }
        objects.append(
            ingress(f"b{i}", rules=[rule(f"b{i}.test", path("/", "web"))], annotations=annotations)
        )
    store = Store(channel=UpdateChannel(maxsize=1 << 16))
    for obj in objects:
        store.apply(WatchEvent(EventType.ADDED, obj))
    result = build_configuration(store.snapshot(), BuildOptions())
    refused = {p.key for p in result.problems}
    assert 0 < len(refused) < 400
    settings = RenderSettings(http_port=18080, https_port=18443)
    driver = DryRunNginx(settings=settings, paths=NginxPaths(world_readable_tmp / "work"))
    await driver.start()
    await driver.apply_reload(result.configuration, settings)  # raises ConfigTestError


def test_an_injection_outside_quotes_is_found() -> None:
    assert unquoted(f'set $a "x;{INJECTED} on;";\n# {INJECTED}\n', INJECTED) is None
    assert unquoted(f'set $a "x";{INJECTED} on;\n', INJECTED) is not None


async def main() -> None:
    """``make fuzz``: a long run, with its rate and totals."""
    configure(level="warning", json=False)
    count = int(os.environ.get("INGRESSD_FUZZ_OBJECTS", "100000"))
    seed = int(os.environ.get("INGRESSD_FUZZ_SEED", "1"))
    work = Path("/tmp") / f"ingressd-fuzz-{os.getpid()}"
    work.mkdir(mode=0o755, exist_ok=True)
    started = time.perf_counter()
    totals = await fuzz(seed, count, nginx_every=50, work=work / "work")
    seconds = time.perf_counter() - started
    print(
        f"fuzz seed {seed}: {totals.objects} objects in {seconds:.1f} s "
        f"({totals.objects / seconds:.0f} objects/s), {totals.builds} builds and renders, "
        f"{totals.problems} problems reported, {totals.nginx_tests} nginx -t runs, "
        f"{len(totals.injections)} injections, {len(totals.nginx_failures)} nginx -t failures, "
        "0 crashes"
    )
    for line in totals.injections[:5] + totals.nginx_failures[:5]:
        print("  ", line)
    if totals.injections or totals.nginx_failures:
        raise SystemExit(1)


if __name__ == "__main__":
    import asyncio

    asyncio.run(main())
