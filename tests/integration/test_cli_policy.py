"""`callgate enterprise policy` and the policies `enterprise list` shows, on both databases."""

from __future__ import annotations

from callgate.db.enterprises import by_secret_with_host
from callgate.db.executor import Database
from callgate.domain.destinations import PolicyOverrides
from tests.support import cli
from tests.support.cli import query, run_cli, secret_of

# The CLI tests' fixtures: a clean environment and a fresh, upgraded database.
clean_environment = cli.clean_environment
cli_db = cli.cli_db

SHIPPED = "deny=EMERGENCY,PREMIUM_RATE,SHARED_COST,+870,+871,+872,+873,+874,+881,+882,+883,+979"


def stored(url: str, secret: str) -> tuple[PolicyOverrides, PolicyOverrides]:
    """The enterprise's own policy and the default's, as the per-call read finds them."""

    async def work(database: Database) -> tuple[PolicyOverrides, PolicyOverrides]:
        found = await by_secret_with_host(database, secret)
        assert found is not None
        return found[2], found[3]

    return query(url, work)


def test_policy_shows_sets_and_lists(cli_db: str) -> None:
    """Shown with the shipped defaults; changed fields are stored, normalised, read by the
    per-call read and shown by `enterprise list`; --inherit resets one."""
    added = run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    secret = secret_of(added)
    shown = run_cli("enterprise", "policy", "0367")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.strip() == f"enterprise 0367: region=BY {SHIPPED} max=15"
    changed = run_cli(
        "enterprise", "policy", "0367", "--allowed-regions", "by,ru", "--extensions", "100-199",
        "--denied-types", "premium_rate,emergency,voip", "--max-length", "12",
    )  # fmt: skip
    assert changed.exit_code == 0, changed.output
    assert changed.stdout.strip() == (
        "enterprise 0367: region=BY allow=BY,RU deny=EMERGENCY,PREMIUM_RATE,VOIP,+870,+871,"
        "+872,+873,+874,+881,+882,+883,+979 max=12 extensions=100-199"
    )
    own, default = stored(cli_db, secret)
    assert own == PolicyOverrides(
        allowed_regions="BY RU",
        denied_types="PREMIUM_RATE EMERGENCY VOIP",
        max_length=12,
        extensions="100-199",
    )
    assert default == PolicyOverrides()
    listed = run_cli("enterprise", "list")
    assert listed.exit_code == 0, listed.output
    assert "DESTINATIONS" in listed.stdout and "allow=BY,RU" in listed.stdout
    assert f"default destinations: region=BY {SHIPPED} max=15" in listed.stdout
    reset = run_cli("enterprise", "policy", "0367", "--inherit", "max-length")
    assert reset.exit_code == 0, reset.output
    assert stored(cli_db, secret)[0].max_length is None
    assert "max=15" in reset.stdout


def test_the_global_default(cli_db: str) -> None:
    """--default changes every enterprise's unset fields; an own value still wins."""
    added = run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    secret = secret_of(added)
    result = run_cli("enterprise", "policy", "--default", "--region", "de", "--denied-prefixes", "")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        "default: region=DE deny=EMERGENCY,PREMIUM_RATE,SHARED_COST max=15"
    )
    assert stored(cli_db, secret)[1] == PolicyOverrides(region="DE", denied_prefixes="")
    assert "region=DE" in run_cli("enterprise", "policy", "0367").stdout
    listed = run_cli("enterprise", "list")
    assert "default destinations: region=DE" in listed.stdout
    assert listed.stdout.splitlines()[1].split()[-1] == "default"


def test_bad_values_and_unknown_enterprises_are_refused(cli_db: str) -> None:
    """A bad value exits 2 naming its option; an unknown enterprise exits 1; nothing stored."""
    run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    for args, option in [
        (["--allowed-regions", "XX"], "--allowed-regions"),
        (["--denied-types", "EXPENSIVE"], "--denied-types"),
        (["--denied-prefixes", "+88a"], "--denied-prefixes"),
        (["--extensions", "199-100"], "--extensions"),
        (["--region", "Atlantis"], "--region"),
        (["--inherit", "colour"], "--inherit"),
    ]:
        result = run_cli("enterprise", "policy", "0367", *args)
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith(f"error: {option}: "), result.stderr
    unknown = run_cli("enterprise", "policy", "9999", "--max-length", "12")
    assert unknown.exit_code == 1
    assert "no enterprise with number '9999'" in unknown.stderr
    both = run_cli("enterprise", "policy", "0367", "--default")
    assert both.exit_code == 2
    listed = run_cli("enterprise", "list")
    assert listed.stdout.splitlines()[1].split()[-1] == "default"
