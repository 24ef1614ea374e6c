"""Fixtures for the integration tests; their logic lives in ``tests/support``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.sshd import SimUser, SshdServer, require_sshd, sim_user_session
from tests.support.stack import Stack, call_stack


@pytest.fixture(scope="session")
def sshd_user() -> Iterator[SimUser]:
    """The ``callgate-sim`` account with this session's random password and client key."""
    require_sshd()
    with sim_user_session() as user:
        yield user


@pytest.fixture
def sshd(sshd_user: SimUser) -> Iterator[SshdServer]:
    """A fresh real sshd on 127.0.0.1 for one test, killed and removed afterwards."""
    with SshdServer(sshd_user) as server:
        yield server


@pytest.fixture(params=["rx", "console"])
async def stack(
    request: pytest.FixtureRequest, pg_url: str, sshd: SshdServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The service on PostgreSQL, its enterprise's host a real sshd with simulated Asterisk,
    reached through each PBX transport in turn (`asterisk -rx` per command, and the console)."""
    host = {"transport": request.param}
    async with call_stack(pg_url, sshd, tmp_path, host=host) as running:
        yield running
