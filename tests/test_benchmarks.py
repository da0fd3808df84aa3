"""Every benchmark at a smoke size, so they cannot rot; figures are not asserted, only shape."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from benchmarks import burst, churn, dataplane, pipeline, routing, scale
from benchmarks.common import parse_wrk

pytestmark = pytest.mark.nginx


async def test_burst_smoke_applies_the_final_set_without_reload(
    world_readable_tmp: Path,
) -> None:
    result = await burst.run_burst(events=50, pods=3, rate=None, root=world_readable_tmp)
    assert result.final_set_served
    assert result.reloads == 0
    assert 1 <= result.syncs <= 50


async def test_churn_smoke_counts_reloads_only_in_reload_always_mode(
    world_readable_tmp: Path,
) -> None:
    args = argparse.Namespace(
        services=3,
        endpoints=3,
        changes=30,
        rate=200,
        probe_every=10,
        reloads=2,
        wrk_seconds=1,
        modes="both",
    )
    dynamic, reload_always = await churn.main_async(args)
    assert dynamic.reloads == 0 and dynamic.dynamic_posts >= 1
    assert reload_always.reloads >= 1 and reload_always.dynamic_posts == 0
    assert dynamic.probes == 3 and dynamic.probes_timed_out == 0
    assert "reloads 0" in churn.describe(dynamic)


async def test_scale_smoke_measures_every_figure() -> None:
    result = await scale.measure(20)
    assert result.ingresses == 20 and result.tls_hosts == 2
    assert result.problems == 0
    assert result.conf_bytes > 10_000
    assert "20 Ingresses" in scale.describe(result)


async def test_dataplane_smoke_compares_lua_and_static() -> None:
    result = await dataplane.run(pods=2, seconds=1, rounds=1, connections=4)
    assert result.errors == 0
    assert result.lua_rps[0] > 0 and result.static_rps[0] > 0
    assert result.ewma_rps[0] > 0 and result.chash_rps[0] > 0 and result.static_hash_rps[0] > 0
    assert "EWMA" in dataplane.describe(result)


async def test_pipeline_smoke_moves_every_event_through() -> None:
    result = await pipeline.run(services=20, events=2000, batch=100)
    assert result.reloads == 0
    assert result.dynamic_updates >= 1


async def test_routing_smoke_reloads_only_where_each_mode_must() -> None:
    result = await routing.measure(
        ingresses=20,
        tls_every=5,
        samples=2,
        nginx_samples=1,
        rotations_count=1,
        nginx_rotations=1,
        changes=10,
        rate=200,
        rounds=1,
        seconds=1,
        small_hosts=0,
        rss_modes=(),
    )
    lua, ngx = result.modes["lua"], result.modes["nginx"]
    served = lua.new_ingress + lua.rotation + ngx.new_ingress + ngx.rotation
    assert all(s.ms is not None for s in served)
    # lua mode: a new Ingress, a rotation and route/endpoint churn reload nothing
    assert [s.reloads for s in lua.new_ingress] == [0, 0]
    assert [s.reloads for s in lua.rotation] == [0]
    assert lua.churn is not None and lua.churn.reloads == 0
    assert lua.churn.non_2xx == 0 and lua.churn.final_state_served
    # only a new settings class does, once
    assert lua.new_class is not None and lua.new_class.reloads == 1
    # nginx mode reloads for each
    assert ngx.new_ingress[0].reloads >= 1 and ngx.rotation[0].reloads >= 1
    assert ngx.churn is not None and ngx.churn.reloads >= 1
    assert lua.settings_classes >= 1 and ngx.server_blocks >= 20
    assert result.dataplane[0].hosts == 20 and result.dataplane[0].errors == 0
    assert "| figure |" in routing.describe(result)


@pytest.mark.parametrize("source", ["memory", "kubernetes"])
def test_routing_rss_is_measured_in_a_fresh_process(source: str) -> None:
    figures = routing.rss_in_fresh_process("lua", 10, 5, source)
    assert figures["rss_mb"] >= figures["rss_code_mb"] > 0


def test_wrk_output_is_parsed() -> None:
    output = """Running 1s test @ http://127.0.0.1:1/
  Latency Distribution
     50%  412.00us
     99%    2.10ms
  9000 requests in 1.00s, 1.2MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   9000.50
"""
    result = parse_wrk(output)
    assert result.requests == 9000
    assert result.latency_p50_ms == pytest.approx(0.412)
    assert result.latency_p99_ms == pytest.approx(2.1)
    assert (result.non_2xx, result.socket_errors) == (7, 4)
