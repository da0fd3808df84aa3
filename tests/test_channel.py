"""The updateChannel: FIFO, drop-oldest when full, never blocks."""

from __future__ import annotations

import asyncio

import pytest

from ingressd.model import ObjectKey
from ingressd.pipeline.channel import UpdateChannel
from ingressd.store.events import EventType, Kind, StoreEvent


def _event(n: int) -> StoreEvent:
    return StoreEvent(Kind.INGRESS, EventType.ADDED, ObjectKey(f"default/i{n}"), float(n))


def test_events_come_out_in_order() -> None:
    channel = UpdateChannel(maxsize=10)
    for n in range(3):
        channel.put_nowait(_event(n))
    assert channel.qsize() == 3
    assert [e.received_at for e in channel.get_nowait_all()] == [0.0, 1.0, 2.0]
    assert channel.qsize() == 0
    assert channel.get_nowait_all() == []


def test_full_channel_drops_the_oldest_and_counts_it() -> None:
    channel = UpdateChannel(maxsize=3)
    for n in range(5):
        channel.put_nowait(_event(n))
    assert channel.dropped == 2
    assert channel.qsize() == 3
    assert [e.received_at for e in channel.get_nowait_all()] == [2.0, 3.0, 4.0]


def test_newest_event_is_always_kept() -> None:
    channel = UpdateChannel(maxsize=1)
    for n in range(100):
        channel.put_nowait(_event(n))
    assert channel.dropped == 99
    assert [e.received_at for e in channel.get_nowait_all()] == [99.0]


def test_default_size_is_ingress_nginx_ring_buffer() -> None:
    assert UpdateChannel().maxsize == 1024


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        UpdateChannel(maxsize=0)


async def test_get_waits_for_an_event() -> None:
    channel = UpdateChannel()
    waiter = asyncio.create_task(channel.get())
    await asyncio.sleep(0)
    assert not waiter.done()
    channel.put_nowait(_event(7))
    assert (await asyncio.wait_for(waiter, 5)).received_at == 7.0


async def test_put_wakes_a_waiting_getter_even_when_dropping() -> None:
    channel = UpdateChannel(maxsize=1)
    channel.put_nowait(_event(1))
    channel.put_nowait(_event(2))
    assert (await channel.get()).received_at == 2.0
    assert channel.dropped == 1
