"""Shared fixtures: a fresh database per test, on SQLite and on PostgreSQL; leak hygiene hooks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

# The support modules' asserts explain a failure as the tests' own do (pytest rewrites only
# test modules and conftest files unless told): before any of them is imported.
pytest.register_assert_rewrite("tests.support")

from tests.support.hygiene import REGISTRY  # noqa: E402
from tests.support.postgres import fresh_database  # noqa: E402
from tests.support.redis import fresh_prefix  # noqa: E402
from tests.support.services import REDIS_URL  # noqa: E402

# The websockets library logs each handshake's headers (`Authorization` included) at DEBUG, on
# the test clients' side and on the in-process servers'; whatever level a test leaves the root
# logger at, those lines stay out of the captured logs (the service's own logging does the same,
# callgate/logs.py).
logging.getLogger("websockets").setLevel(logging.WARNING)
logging.getLogger("uvicorn.error").setLevel(logging.INFO)  # the servers' handshake lines


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (``postgresql://`` URL), dropped after the test."""
    with fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A new SQLite database file under the test's tmp_path."""
    return f"sqlite+aiosqlite:///{tmp_path / 'callgate.db'}"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def db_url(request: pytest.FixtureRequest) -> str:
    """The same test on both databases: an empty SQLite file, then an empty PostgreSQL DB."""
    name = "pg_url" if request.param == "postgres" else "sqlite_url"
    return str(request.getfixturevalue(name))


@pytest.fixture(
    params=[pytest.param("memory", id="memory"), pytest.param("redis", marks=pytest.mark.redis)]
)
def limit_store(request: pytest.FixtureRequest) -> Iterator[dict[str, object]]:
    """The settings that count the rate limits in memory, then in the real Redis (a key prefix
    of the test's own)."""
    if request.param == "memory":
        yield {}
        return
    with fresh_prefix() as prefix:
        yield {"redis_url": REDIS_URL, "redis_prefix": prefix}


# -- leak hygiene (tests/support/hygiene.py) ----------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Scan what each test printed or logged (captured stdout, stderr, log) for recorded values."""
    REGISTRY.scan_sections(report.nodeid, report.sections)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Scan the services' log files, then fail the run if any recorded value was seen in clear."""
    REGISTRY.scan_log_files()
    findings = REGISTRY.findings()
    if not findings:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{len(findings)} leak(s) of recorded test values:", *map(str, findings)]
    if reporter is not None:
        reporter.write_sep("=", "leak hygiene", red=True, bold=True)
        for line in lines:
            reporter.write_line(line, red=True)
    # Even a run whose tests all passed fails: a leak is a defect of the service or the suite.
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
