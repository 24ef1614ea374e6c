"""Fixtures for the integration tests; their logic lives in ``tests/support``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.sshd import SimUser, SshdServer, require_sshd, sim_user_session


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
