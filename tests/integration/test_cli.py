"""The operator CLI against both databases, through typer's CliRunner and the console script."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from callgate.cli import app
from callgate.db.enterprises import EnterpriseRow, by_secret_with_host
from callgate.db.executor import Database
from callgate.db.hosts import get_host, pin_host_key, set_host
from callgate.domain.hosts import HostRow
from callgate.domain.sealed import SEALED_PREFIX, is_sealed, new_key, unseal
from callgate.errors import SshConnectTimeout
from callgate.redaction import mask_secret
from callgate.settings import Settings
from tests.support import cli
from tests.support.cli import query, run_cli, secret_of

PASSWORD = "pbx-Password-7f3a9c"
SECRET_KEY = new_key()
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"

# The CLI tests' fixtures: a clean environment and a fresh, upgraded database.
clean_environment = cli.clean_environment
cli_db = cli.cli_db


def enterprise(url: str, secret: str) -> EnterpriseRow | None:
    """The active enterprise of ``secret``, as the per-call read finds it."""

    async def work(database: Database) -> EnterpriseRow | None:
        found = await by_secret_with_host(database, secret)
        return None if found is None else found[0]

    return query(url, work)


def host(url: str, address: str) -> HostRow | None:
    return query(url, lambda database: get_host(database, address))


def test_add_prints_a_strong_generated_secret(cli_db: str) -> None:
    """Without --secret, a long random secret is generated, printed and usable at once."""
    result = run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    assert result.exit_code == 0, result.output
    secret = secret_of(result)
    assert len(secret) >= 40
    found = enterprise(cli_db, secret)
    assert found is not None and (found.number, found.ip, found.active) == (
        "0367",
        "10.0.0.5",
        True,
    )
    again = run_cli("enterprise", "add", "--number", "0368", "--name", "may", "--ip", "10.0.0.6")
    assert secret_of(again) != secret


@pytest.mark.parametrize("how", ["env", "stdin"])
def test_add_keeps_a_given_secret_never_prints_it_and_list_masks_it(
    cli_db: str, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    """A secret given in the environment or on stdin is stored as given and never printed
    (a quarter of it at most), and `enterprise list` shows no more of it."""
    secret = "Given-Secret-0123456789abcdef"
    args = ["enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5"]
    if how == "env":
        monkeypatch.setenv("NEW_SECRET", secret)
        added = run_cli(*args, "--secret-env", "NEW_SECRET")
    else:
        added = CliRunner().invoke(app, [*args, "--secret-stdin"], input=secret + "\n")
    assert added.exit_code == 0, added.output
    assert secret not in added.output and secret[7:] not in added.output
    assert "secret stored as given: Given-S…" in added.stdout  # 7 of 29 characters
    assert enterprise(cli_db, secret) is not None
    listed = run_cli("enterprise", "list")
    assert listed.exit_code == 0, listed.output
    assert "0367" in listed.stdout and "june" in listed.stdout
    assert "Given-S…" in listed.stdout
    assert secret not in listed.output
    assert secret[7:] not in listed.output


def test_add_refuses_a_secret_on_the_command_line(cli_db: str) -> None:
    """--secret VALUE (visible in `ps` and shell history) is refused, naming the safe ways;
    nothing is stored and the value is not echoed."""
    secret = "Argv-Secret-0123456789abcdef"
    result = run_cli(
        "enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5",
        "--secret", secret,
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--secret-env" in result.stderr and "--secret-stdin" in result.stderr
    assert secret not in result.output
    assert enterprise(cli_db, secret) is None


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--secret-env", "NO_SUCH_VARIABLE"], None, "--secret-env"),
        (["--secret-stdin"], "", "--secret-stdin"),
        (["--secret-env", "NO_SUCH_VARIABLE", "--secret-stdin"], "x", "give one of them"),
    ],
)
def test_add_with_a_missing_given_secret_fails(
    cli_db: str, args: list[str], stdin: str | None, message: str
) -> None:
    base = ["enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5"]
    result = CliRunner().invoke(app, [*base, *args], input=stdin)
    assert result.exit_code == 2 and message in result.stderr
    assert "0367" not in run_cli("enterprise", "list").stdout


def test_mask_secret_never_shows_more_than_a_quarter() -> None:
    """Short secrets are masked harder than the usual 8 characters."""
    assert mask_secret("abcdefghijklmnopqrstuvwxyz0123456789") == "abcdefgh…"
    assert mask_secret("abcdefghijklmnopqrstuvwxyz") == "abcdef…"
    assert mask_secret("abcdef") == "a…"
    assert mask_secret("abc") == "…"
    assert mask_secret("") == "-"


def test_disable_and_enable(cli_db: str) -> None:
    """A disabled enterprise's secret stops authenticating at once; enable brings it back."""
    secret = secret_of(
        run_cli("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    )
    assert run_cli("enterprise", "disable", "0367").exit_code == 0
    assert enterprise(cli_db, secret) is None
    assert run_cli("enterprise", "enable", "0367").exit_code == 0
    assert enterprise(cli_db, secret) is not None
    missing = run_cli("enterprise", "disable", "9999")
    assert missing.exit_code == 1
    assert "9999" in missing.stderr


def test_duplicate_enterprise_is_refused(cli_db: str) -> None:
    """Adding a number twice fails without a traceback."""
    args = ("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    assert run_cli(*args).exit_code == 0
    again = run_cli(*args)
    assert again.exit_code == 1
    assert "already exists" in again.stderr
    assert "Traceback" not in again.output


@pytest.mark.parametrize("ip", ["10.0.0.5;reboot", "$(id)", "10.0.0.256", "-oProxyCommand=x"])
def test_add_with_a_bad_ip_names_the_option(cli_db: str, ip: str) -> None:
    """A bad --ip is refused (exit 2) with a message naming --ip; nothing is stored."""
    result = run_cli("enterprise", "add", "--number", "0367", "--name", "june", f"--ip={ip}")
    assert result.exit_code == 2
    assert "--ip" in result.stderr
    assert "secret" not in result.stdout
    assert "0367" not in run_cli("enterprise", "list").stdout


def test_host_set_reads_the_password_from_the_environment(
    cli_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--password-env stores the variable's value encrypted with CALLGATE_SECRET_KEY (the
    stored bytes hold no part of it); neither set nor list ever prints it."""
    monkeypatch.setenv("CALLGATE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    result = run_cli(
        "host", "set", "10.0.0.5", "--password-env", "PBX_PASSWORD", "--ssh-port", "22",
        "--ssh-user", "pbx", "--host-key-policy", "strict", "--context", "from-crm",
        "--transport", "console",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output
    row = host(cli_db, "10.0.0.5")
    assert row is not None and row.ssh_password is not None
    assert row.ssh_password.startswith(SEALED_PREFIX)
    assert (
        PASSWORD[4:12] not in row.ssh_password and PASSWORD.encode().hex() not in row.ssh_password
    )
    assert unseal(row.ssh_password, SecretStr(SECRET_KEY)) == PASSWORD
    assert (row.ssh_port, row.ssh_user) == (22, "pbx")
    assert (row.host_key_policy, row.dial_context, row.transport) == (
        "strict",
        "from-crm",
        "console",
    )
    listed = run_cli("host", "list")
    assert listed.exit_code == 0, listed.output
    assert PASSWORD not in listed.output and row.ssh_password not in listed.output
    line = next(line for line in listed.stdout.splitlines() if line.startswith("10.0.0.5"))
    assert line.split()[3] == "encrypted"


def test_host_set_changes_only_what_is_given(cli_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second `host set` keeps the fields it does not mention."""
    monkeypatch.setenv("CALLGATE_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    assert run_cli("host", "set", "10.0.0.5", "--password-env", "PBX_PASSWORD").exit_code == 0
    stored = host(cli_db, "10.0.0.5")
    assert run_cli("host", "set", "10.0.0.5", "--ssh-port", "2222").exit_code == 0
    row = host(cli_db, "10.0.0.5")
    assert stored is not None and row is not None
    assert (row.ssh_password, row.ssh_port) == (stored.ssh_password, 2222)


def test_host_set_refuses_a_password_without_a_key(
    cli_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without CALLGATE_SECRET_KEY no password is stored; the message says how to make a key
    (and the command it names prints one the settings accept)."""
    monkeypatch.setenv("PBX_PASSWORD", PASSWORD)
    result = run_cli("host", "set", "10.0.0.5", "--password-env", "PBX_PASSWORD")
    assert result.exit_code == 2
    assert "CALLGATE_SECRET_KEY" in result.stderr and "callgate secret-key" in result.stderr
    assert PASSWORD not in result.output
    assert host(cli_db, "10.0.0.5") is None
    made = run_cli("secret-key")
    assert made.exit_code == 0
    key = made.stdout.strip()
    assert Settings(secret_key=key).secret_key is not None
    assert run_cli("secret-key").stdout.strip() != key


def test_host_set_encrypts_a_password_stored_in_clear(
    cli_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A password an earlier version stored in clear still reads; the next `host set` of the
    host (of any field) stores it encrypted, and `host list` tells the two apart."""
    query(cli_db, lambda database: set_host(database, "10.0.0.5", {"ssh_password": PASSWORD}))
    listed = run_cli("host", "list")
    line = next(line for line in listed.stdout.splitlines() if line.startswith("10.0.0.5"))
    assert line.split()[3] == "plain" and PASSWORD not in listed.output
    monkeypatch.setenv("CALLGATE_SECRET_KEY", SECRET_KEY)
    assert run_cli("host", "set", "10.0.0.5", "--ssh-port", "2222").exit_code == 0
    row = host(cli_db, "10.0.0.5")
    assert row is not None and row.ssh_password is not None and row.ssh_port == 2222
    assert is_sealed(row.ssh_password)
    assert unseal(row.ssh_password, SecretStr(SECRET_KEY)) == PASSWORD


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["10.0.0.5;id"], "IP"),
        (["10.0.0.5", "--context", "in office"], "--context"),
        (["10.0.0.5", "--context", "ctx;reboot"], "--context"),
        (["10.0.0.5", "--password-env", "CALLGATE_TEST_UNSET_VARIABLE"], "--password-env"),
        (["10.0.0.5", "--key-file", "/nonexistent/key"], "--key-file"),
        (["10.0.0.5", "--ssh-user", "root;id"], "--ssh-user"),
        (["10.0.0.5", "--ssh-port", "70000"], "--ssh-port"),
        (["10.0.0.5", "--host-key-policy", "sometimes"], "--host-key-policy"),
        (["10.0.0.5", "--transport", "carrier-pigeon"], "--transport: no transport named"),
    ],
)
def test_host_set_bad_values_name_the_field(cli_db: str, args: list[str], named: str) -> None:
    """Each bad value exits non-zero naming its option, and no row is written."""
    result = run_cli("host", "set", *args)
    assert result.exit_code == 2
    assert named in result.output
    assert host(cli_db, "10.0.0.5") is None


def test_host_set_key_file(cli_db: str, tmp_path: Path) -> None:
    """An existing, readable --key-file is stored as an absolute path."""
    key_file = tmp_path / "id_ed25519"
    key_file.write_text("not really a key\n")
    key_file.chmod(0o600)
    result = run_cli("host", "set", "pbx.example.com", "--key-file", "id_ed25519")
    assert result.exit_code == 0, result.output
    row = host(cli_db, "pbx.example.com")
    assert row is not None and row.ssh_key_file == str(key_file.resolve())


def test_forget_key(cli_db: str) -> None:
    """forget-key clears a pinned key so that the next contact can pin the new one."""

    assert query(cli_db, lambda database: pin_host_key(database, "10.0.0.5", KEY)) == KEY
    listed = run_cli("host", "list")
    assert "SHA256:" in listed.stdout
    result = run_cli("host", "forget-key", "10.0.0.5")
    assert result.exit_code == 0, result.output
    assert "forgotten" in result.stdout
    row = host(cli_db, "10.0.0.5")
    assert row is not None and row.host_key is None
    assert "no host key was pinned" in run_cli("host", "forget-key", "10.0.0.5").stdout


def test_host_check_prints_the_version(cli_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`host check` hands settings, the database and the address to wiring.check_host."""
    seen: dict[str, Any] = {}

    async def check_host(settings: Settings, database: Any, address: str) -> str:
        seen.update(settings=settings, address=address)
        return "Asterisk 22.7.0 built by test"

    fake = types.ModuleType("callgate.wiring")
    fake.check_host = check_host  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "callgate.wiring", fake)
    result = run_cli("host", "check", "PBX.example.com")
    assert result.exit_code == 0, result.output
    assert "Asterisk 22.7.0" in result.stdout
    assert seen["address"] == "pbx.example.com"
    assert isinstance(seen["settings"], Settings)


def test_host_check_reports_a_pbx_error(cli_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed login is one line with the error code, exit 1."""

    async def check_host(settings: Settings, database: Any, address: str) -> str:
        raise SshConnectTimeout("SSH connect timeout", host=address)

    fake = types.ModuleType("callgate.wiring")
    fake.check_host = check_host  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "callgate.wiring", fake)
    result = run_cli("host", "check", "10.0.0.5")
    assert result.exit_code == 1
    assert "pbx_connect_timeout" in result.stderr


def test_bad_setting_is_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command reports a bad CALLGATE_* value on one line naming it, exit 2."""
    monkeypatch.setenv("CALLGATE_SSH_PORT", "not-a-port")
    for args in (["serve"], ["host", "list"], ["enterprise", "list"], ["db", "upgrade"]):
        result = run_cli(*args)
        assert result.exit_code == 2, args
        assert "CALLGATE_SSH_PORT" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_bad_database_url_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported database URL is reported naming CALLGATE_DATABASE_URL, password hidden."""
    monkeypatch.setenv("CALLGATE_DATABASE_URL", "mysql://app:hunter2@db/callgate")
    for args in (["enterprise", "list"], ["db", "upgrade"]):
        result = run_cli(*args)
        assert result.exit_code == 2
        assert "CALLGATE_DATABASE_URL" in result.stderr
        assert "hunter2" not in result.output


def test_unreachable_database_is_reported_without_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A dead database fails the command (exit 1), showing the URL with *** as password."""
    monkeypatch.setenv("CALLGATE_DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:9/callgate")
    result = run_cli("enterprise", "list")
    assert result.exit_code == 1
    assert "app:***@127.0.0.1:9" in result.stderr
    assert "hunter2" not in result.output


def test_tables_missing_suggests_upgrade(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before `db upgrade`, commands say so instead of printing a database traceback."""
    monkeypatch.setenv("CALLGATE_DATABASE_URL", db_url)
    result = run_cli("enterprise", "list")
    assert result.exit_code == 1
    assert "callgate db upgrade" in result.stderr


def test_serve_hands_the_settings_to_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` loads the settings and calls callgate.app.serve with them."""
    served: list[Settings] = []
    fake = types.ModuleType("callgate.app")
    fake.serve = served.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "callgate.app", fake)
    monkeypatch.setenv("CALLGATE_PORT", "8123")
    result = run_cli("serve")
    assert result.exit_code == 0, result.output
    assert len(served) == 1 and served[0].port == 8123


def test_console_script_end_to_end(db_url: str, tmp_path: Path) -> None:
    """The installed `callgate` script upgrades, adds and lists through its own process."""
    script = Path(sys.executable).parent / "callgate"
    if not script.exists():
        pytest.skip("the callgate console script is not installed in this environment")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLGATE_")}
    env["CALLGATE_DATABASE_URL"] = db_url

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    assert call("db", "upgrade").returncode == 0
    added = call("enterprise", "add", "--number", "0367", "--name", "june", "--ip", "10.0.0.5")
    assert added.returncode == 0, added.stderr
    secret = added.stdout.split("secret: ", 1)[1].strip()
    listed = call("enterprise", "list")
    assert listed.returncode == 0 and secret[:8] + "…" in listed.stdout
    assert secret not in listed.stdout
    bad = call("enterprise", "add", "--number", "1", "--name", "x", "--ip", "1.2.3.4.5.6")
    assert bad.returncode == 2 and "--ip" in bad.stderr
