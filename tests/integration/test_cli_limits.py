"""`callgate enterprise limits`: an enterprise's own limits, stored apart, on both databases."""

from __future__ import annotations

from callgate.db.enterprise_limits import list_limits
from tests.support import cli
from tests.support.cli import query, run_cli

# The CLI tests' fixtures: a clean environment and a fresh, upgraded database.
clean_environment = cli.clean_environment
cli_db = cli.cli_db


def test_limits_are_shown_set_and_reset(cli_db: str) -> None:
    added = run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    assert added.exit_code == 0, added.output
    shown = run_cli("enterprise", "limits", "0367")
    assert shown.exit_code == 0, shown.output
    assert "extension_per_minute: 10 (default)" in shown.stdout.splitlines()
    changed = run_cli(
        "enterprise", "limits", "0367", "--extension-per-minute", "3",
        "--live-calls-per-enterprise", "0",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    lines = changed.stdout.splitlines()
    assert "extension_per_minute: 3" in lines
    assert "live_calls_per_enterprise: off" in lines
    assert "enterprise_per_second: 10 (default)" in lines
    stored = query(cli_db, list_limits)
    assert stored == {"0367": {"extension_per_minute": 3, "live_calls_per_enterprise": 0}}
    reset = run_cli("enterprise", "limits", "0367", "--default", "extension-per-minute")
    assert reset.exit_code == 0, reset.output
    assert query(cli_db, list_limits) == {"0367": {"live_calls_per_enterprise": 0}}


def test_an_unknown_enterprise_or_limit_is_refused(cli_db: str) -> None:
    missing = run_cli("enterprise", "limits", "0999", "--extension-per-minute", "3")
    assert missing.exit_code == 1 and "no enterprise with number '0999'" in missing.output
    wrong = run_cli("enterprise", "limits", "0999", "--default", "calls-per-hour")
    assert wrong.exit_code == 2 and "is not one of" in wrong.output
    negative = run_cli("enterprise", "limits", "0999", "--destination-per-day", "-1")
    assert negative.exit_code == 2
    assert query(cli_db, list_limits) == {}
