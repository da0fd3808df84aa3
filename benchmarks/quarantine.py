"""Quarantine: another tenant's new Ingress next to a poisoned one, at N Ingresses.

    N Ingresses served (--routing nginx, snippets allowed) -> one file write adds a poisoned
    Ingress (a configuration-snippet nginx -t refuses) and another tenant's new Ingress
    -> time until the new host answers 200, against the time of one nginx -t of the config

Target (issue 13): the new Ingress is served within 3 x (one nginx -t), never blocked;
ingress-nginx blocks every reload until the poisoned object is fixed.

    python -m benchmarks.quarantine [--ingresses 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.common import machine, temp_root
from ingressd.logs import configure
from tests.support.harness import Harness
from tests.support.objects import endpoint_slice, ingress, path, rule, service, service_port

P = "nginx.ingress.kubernetes.io/"


@dataclass
class QuarantineResult:
    ingresses: int
    nginx_t_seconds: float
    new_ingress_served_seconds: float
    ratio: float
    target_ratio: float
    quarantined: float
    machine: str


async def run(ingresses: int) -> QuarantineResult:
    root = temp_root("quarantine")
    try:
        h = Harness(root)
        h.options = dataclasses.replace(h.options, allow_snippet_annotations=True)
        await h.start()
        try:
            addresses, port = await h.start_pods(1, prefix="web")
            objects = [
                service("web", ports=[service_port(80, "http", target_port=port)]),
                endpoint_slice("web", endpoints=addresses, port=port, port_name="http"),
            ]
            objects += [
                ingress(f"i{i}", rules=[rule(f"h{i}.test", path("/", "web"), path("/a", "web"))])
                for i in range(ingresses)
            ]
            h.write("cluster.yaml", *objects)
            await _served(h, f"h{ingresses - 1}.test", timeout=300)
            await h.settled()
            controller = h.ingressd
            running = controller.worker.running
            settings = controller.worker.running_settings
            assert running is not None and settings is not None
            started = time.perf_counter()
            await controller.nginx.check(running, settings)
            nginx_t = time.perf_counter() - started

            poisoned = ingress(
                "poisoned",
                rules=[rule("poisoned.test", path("/", "web"))],
                annotations={P + "configuration-snippet": "no_such_directive on;"},
            )
            tenant = ingress("tenant", rules=[rule("tenant.test", path("/", "web"))])
            started = time.perf_counter()
            h.write("change.yaml", poisoned, tenant)
            await _served(h, "tenant.test", timeout=120)
            served = time.perf_counter() - started
            await h.settled()
            quarantined = h.metric("ingressd_quarantined_objects")
        finally:
            await h.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return QuarantineResult(
        ingresses=ingresses,
        nginx_t_seconds=round(nginx_t, 3),
        new_ingress_served_seconds=round(served, 3),
        ratio=round(served / nginx_t, 2),
        target_ratio=3.0,
        quarantined=quarantined,
        machine=machine(),
    )


async def _served(h: Harness, host: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (await h.get("/", host=host)).status == 200:
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{host} not served after {timeout} s")
        await asyncio.sleep(0.02)


def report(result: QuarantineResult) -> list[str]:
    met = "met" if result.ratio <= result.target_ratio else "missed"
    return [
        "## Quarantine: a new Ingress next to a poisoned one",
        "",
        f"At {result.ingresses} Ingresses (--routing nginx), one write adds an Ingress whose "
        "snippet nginx -t refuses and another tenant's new Ingress.",
        "",
        "| one nginx -t | new Ingress served after | ratio | target | quarantined |",
        "| ---: | ---: | ---: | ---: | ---: |",
        f"| {result.nginx_t_seconds} s | {result.new_ingress_served_seconds} s | "
        f"{result.ratio} x | <= {result.target_ratio} x ({met}) | {int(result.quarantined)} |",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingresses", type=int, default=1000)
    args = parser.parse_args()
    configure(level="error")
    result = asyncio.run(run(args.ingresses))
    out = Path(__file__).resolve().parent / "results" / "quarantine.json"
    out.write_text(json.dumps(asdict(result), indent=2) + "\n")
    print("\n".join(report(result)))


if __name__ == "__main__":
    main()
