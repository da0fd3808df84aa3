"""Shared fixtures: a started ingressd over a manifests directory, a started fake API server.

    harness    --> tests.support.harness.Harness, started over an empty manifests dir
    fake_api   --> tests.support.fakeapi.FakeApiServer, started and empty

The harnesses themselves and their helpers live in ``tests/support/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.fakeapi import FakeApiServer
from tests.support.harness import Harness, running_harness

#: Fixtures that start a real nginx: a test using one is marked ``nginx`` (``make test-fast``
#: runs the others).
_NGINX_FIXTURES = frozenset(
    {"harness", "lua_harness", "world_readable_tmp", "kube_harness", "lua_nginx", "nginx"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _NGINX_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nginx)


@pytest.fixture
def world_readable_tmp() -> Iterator[Path]:
    """A temp dir nginx's unprivileged workers can traverse (pytest's tmp_path is 0700)."""
    path = Path(tempfile.mkdtemp(prefix="ingressd-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def harness(
    world_readable_tmp: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Harness]:
    """A started ingressd with an empty manifests dir; write manifests to make it do things.

    Its routing mode is ``INGRESSD_TEST_ROUTING`` (lua by default), or the test's
    ``@pytest.mark.routing("nginx")`` when what it checks belongs to one mode.
    """
    async with running_harness(world_readable_tmp, request) as h:
        yield h


@pytest.fixture
async def lua_harness(world_readable_tmp: Path) -> AsyncIterator[Harness]:
    """Like ``harness``, with ``--routing lua``."""
    async with running_harness(world_readable_tmp, routing="lua") as h:
        yield h


@pytest.fixture
async def fake_api() -> AsyncIterator[FakeApiServer]:
    """A started fake Kubernetes API server (``tests.support.fakeapi``), empty."""
    api = FakeApiServer(bookmark_interval=0.5)
    await api.start()
    try:
        yield api
    finally:
        await api.stop()
