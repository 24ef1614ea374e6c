"""The leak scanner really finds planted values, and says where without repeating them."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.hygiene import STACK_PHONE, Registry

ROOT = Path(__file__).resolve().parents[2]


def test_planted_secret_in_a_log_file_is_found_without_being_shown(tmp_path: Path) -> None:
    """A secret written to a recorded log (or its rotated copy) is a finding naming file and
    line; the finding's text does not contain the secret."""
    registry = Registry()
    planted = secrets.token_hex(16)
    log = tmp_path / "callgate.log"
    log.write_text(f"ok line\nclient={planted[:8]}…\nleak client={planted}\n")
    log.with_name("callgate.log.2").write_text(f"old leak {planted}\n")
    registry.record_stack(planted, log)
    found = registry.scan_log_files()
    assert [(f.where, f.kind) for f in found] == [
        (f"{log}, line 3", "secret"),
        (f"{log}.2, line 1", "secret"),
    ]
    assert all(planted not in str(finding) for finding in found)
    assert registry.findings() == sorted(found)


def test_phone_in_captured_output_is_found_but_masked_one_is_not() -> None:
    """The stack's number in clear (also URL-encoded) is a leak; its masked form is not."""
    registry = Registry()
    registry.record_stack(secrets.token_hex(16), None)
    masked = [("Captured stdout call", "phone=+375*******70 ext=150\n")]
    assert registry.scan_sections("t::masked", masked) == []
    leaked = [("Captured log call", "GET /api?phone=%2B" + STACK_PHONE[1:] + "\n")]
    found = registry.scan_sections("t::leaked", leaked)
    assert [(f.where, f.kind) for f in found] == [
        ("t::leaked [Captured log call], line 1", "phone")
    ]


def test_kinds_are_told_apart_and_short_values_ignored() -> None:
    """Each kind is reported once per place; values too short to scan for are not recorded."""
    registry = Registry()
    password, dsn_password = secrets.token_urlsafe(24), secrets.token_urlsafe(12)
    registry.record("ssh_password", password)
    registry.record("db_password", dsn_password)
    registry.record("secret", "short")
    text = f"a {password}\nb {dsn_password}\nc {password}\nd short\n"
    found = registry.scan_text(text, "out")
    assert sorted((f.where, f.kind) for f in found) == [
        ("out, line 1", "ssh_password"),
        ("out, line 2", "db_password"),
    ]


@pytest.mark.timeout(60)
def test_a_session_that_prints_a_recorded_secret_fails(tmp_path: Path) -> None:
    """End to end through the conftest hooks: a passing test that prints a recorded secret
    makes the pytest run fail, and the run's output never contains the secret."""
    planted = secrets.token_hex(16)
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_runtest_logreport, pytest_sessionfinish\n"
    )
    (tmp_path / "test_leaky.py").write_text(
        textwrap.dedent(
            f"""
            from tests.support.hygiene import record

            def test_leaks():
                record("secret", "{planted}")
                print("client", "{planted}")

            def test_clean():
                print("nothing to see")
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    output = done.stdout + done.stderr
    assert "2 passed" in output, output[-2000:].replace(planted, "<planted>")
    assert done.returncode == pytest.ExitCode.TESTS_FAILED
    assert "leak hygiene" in output
    assert "test_leaky.py::test_leaks [Captured stdout call], line 1: a secret in clear" in output
    assert planted not in output
