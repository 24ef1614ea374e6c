"""The operator CLI as the tests drive it: invoked in-process, its database looked at directly,
and the fixtures of the CLI tests (a clean environment, a fresh upgraded database)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner, Result

from callgate.cli import app
from callgate.db.executor import Database
from tests.support.database import opened

_T = TypeVar("_T")


def run_cli(*args: str) -> Result:
    """Invoke ``callgate <args>`` in-process."""
    return CliRunner().invoke(app, list(args))


def query(url: str, work: Callable[[Database], Awaitable[_T]]) -> _T:
    """Look at the database directly, as the service would."""

    async def main() -> _T:
        async with opened(url) as database:
            return await work(database)

    return asyncio.run(main())


def secret_of(result: Result) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("secret: ")]
    assert len(lines) == 1, result.output
    return lines[0].removeprefix("secret: ")


# The fixtures below apply only in the test modules that bind them to a name of their own (this
# module is no plugin): `clean_environment` is autouse there, and nowhere else.


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CALLGATE_* setting and no .env file of the developer leaks into these tests."""
    for name in list(os.environ):
        if name.startswith("CALLGATE_") and name not in {
            "CALLGATE_REQUIRE_SERVICES",
            "CALLGATE_TEST_POSTGRES",
        }:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """CALLGATE_DATABASE_URL set to a fresh database, upgraded through the CLI."""
    monkeypatch.setenv("CALLGATE_DATABASE_URL", db_url)
    result = run_cli("db", "upgrade")
    assert result.exit_code == 0, result.output
    yield db_url
