"""Files that hold secrets created owner-only, wider ones reported at start; text log lines
that control characters cannot break."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from callgate.calls.admin import upgrade_schema
from callgate.db.engine import make_engine, sqlite_file
from callgate.logs import configure_logging, get_logger
from callgate.settings import Settings
from callgate.wiring import warn_about_open_files


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """The usual umask 022, which would make new files 0644."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[Path]:
    """Logging configured to a file for the test, restored afterwards."""
    path = tmp_path / "service.log"
    yield path
    logging.getLogger().handlers.clear()


def test_db_upgrade_creates_the_sqlite_file_owner_only(wide_umask: None, tmp_path: Path) -> None:
    path = tmp_path / "callgate.db"
    upgrade_schema(f"sqlite:///{path}", "head")
    assert {p.name: mode_of(p) for p in tmp_path.iterdir()} == {"callgate.db": 0o600}


def test_the_log_file_and_each_rollover_are_owner_only(wide_umask: None, logged: Path) -> None:
    configure_logging(logged, "text", "INFO", console=False)
    get_logger("test").info("hello")
    assert mode_of(logged) == 0o600
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    handler.doRollover()
    get_logger("test").info("after rollover")
    assert mode_of(logged) == 0o600
    assert mode_of(logged.with_name("service.log.1")) == 0o600


def test_the_sqlite_file_and_its_journal_files_are_owner_only(
    wide_umask: None, tmp_path: Path
) -> None:
    path = tmp_path / "callgate.db"
    url = f"sqlite:///{path}"
    assert sqlite_file(url) == path
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("postgresql://u@h/db") is None

    async def work() -> None:
        engine = make_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (x INTEGER)"))
            await connection.execute(text("INSERT INTO t VALUES (1)"))
            modes = await asyncio.to_thread(
                lambda: {p.name: mode_of(p) for p in tmp_path.iterdir()}
            )
            assert "callgate.db-wal" in modes, modes
            assert set(modes.values()) == {0o600}, modes
        await engine.dispose()

    asyncio.run(work())
    assert mode_of(path) == 0o600


def test_an_existing_wider_file_is_left_as_it_is_and_warned_about(
    wide_umask: None, tmp_path: Path, logged: Path
) -> None:
    database = tmp_path / "callgate.db"
    database.touch(0o644)
    logged.touch(0o640)
    url = f"sqlite:///{database}"
    make_engine(url)  # an existing file keeps its mode: the operator's to change
    assert mode_of(database) == 0o644
    configure_logging(logged, "json", "INFO", console=False)
    warn_about_open_files(Settings(database_url=url, log_file=logged))
    warnings = [json.loads(line) for line in logged.read_text().splitlines()]
    assert [(w["file"], w["mode"], w["level"]) for w in warnings] == [
        (str(database), "0644", "warning"),
        (str(logged), "0640", "warning"),
    ]
    database.chmod(0o600)
    logged.chmod(0o600)
    warn_about_open_files(Settings(database_url=url, log_file=logged))
    assert len(logged.read_text().splitlines()) == 2  # nothing more to report


def test_text_lines_escape_control_characters(logged: Path) -> None:
    configure_logging(logged, "text", "INFO", console=False)
    log = get_logger("test")
    log.info("event\nforged [info     ] x", path="/a\nb", plain="/a\r\nb c", sep="a\u2028b\x1b[31m")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed", path="/x\n")
    text_lines = logged.read_text(encoding="utf-8")
    first, second, *traceback = text_lines.split("\n")
    assert "event\\x0aforged" in first and "path='/a\\nb'" in first
    assert "plain='/a\\r\\nb c'" in first and "sep=a\\u2028b\\x1b[31m" in first
    assert "failed" in second and "path='/x\\n'" in second
    assert any("ValueError: boom" in line for line in traceback)  # a traceback keeps its lines
