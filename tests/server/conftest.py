"""Fixtures of the server tests: two mock upstreams, ``main`` and ``fallback``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from failover.mock_upstream import MockUpstream


@pytest.fixture
async def mocks() -> AsyncIterator[tuple[MockUpstream, MockUpstream]]:
    """Two healthy mock upstreams on loopback, named in their answers."""
    async with (
        MockUpstream("healthy", name="main", seed=1) as main,
        MockUpstream("healthy", name="fallback", seed=2) as fallback,
    ):
        yield main, fallback
