"""build_target: settings defaults merged with a host's pbx_hosts row; the row's checks."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from callgate.calls.targets import build_target
from callgate.domain.hosts import (
    HostRow,
    check_host_fields,
    host_address,
    key_fingerprint,
    normalize_public_key,
    validate_ssh_user,
)
from callgate.errors import ConfigurationError, InvalidInput
from callgate.settings import HostKeyPolicy, Settings, Transport

KEY = "ssh-ed25519 " + base64.b64encode(b"\x00" * 51).decode()


@pytest.fixture(autouse=True)
def no_callgate_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's CALLGATE_* variables must not change the defaults these tests expect."""
    for name in list(os.environ):
        if name.startswith("CALLGATE_"):
            monkeypatch.delenv(name)


def settings(**values: Any) -> Settings:
    """Settings from explicit values only: no .env file, defaults for the rest."""
    return Settings(_env_file=None, **values)


def test_defaults_apply_without_a_row() -> None:
    """No row: every connection setting comes from CALLGATE_SSH_* and friends."""
    s = settings(
        ssh_port=2222,
        ssh_user="asterisk",
        ssh_password="pw",
        ssh_key_file="/keys/id",
        ssh_known_hosts="/keys/known",
        ssh_host_key_policy="strict",
        dial_context="office",
        asterisk_bin="/usr/sbin/asterisk",
        transport="console",
        ssh_connect_timeout=3,
        ssh_command_timeout=4,
    )
    target = build_target(s, "10.0.0.5", None)
    assert target.address == "10.0.0.5"
    assert (target.port, target.username) == (2222, "asterisk")
    assert target.password is not None and target.password.get_secret_value() == "pw"
    assert target.key_file == Path("/keys/id")
    assert target.known_hosts == Path("/keys/known")
    assert target.host_key_policy is HostKeyPolicy.STRICT
    assert target.dial_context == "office"
    assert target.asterisk_bin == "/usr/sbin/asterisk"
    assert target.transport == Transport.CONSOLE.value
    assert (target.connect_timeout, target.command_timeout) == (3.0, 4.0)
    assert target.pinned_host_key is None


def test_row_fields_override_defaults() -> None:
    """Every non-NULL column of the row wins, converted to the target's types."""
    row = HostRow(
        address="10.0.0.5",
        ssh_port=5060,
        ssh_user="pbx",
        ssh_password="row-secret",
        ssh_key_file="/keys/pbx",
        host_key_policy="off",
        dial_context="from-crm",
        transport="console",
        host_key=KEY + " root@pbx",
    )
    target = build_target(settings(ssh_password="default"), "10.0.0.5", row)
    assert (target.port, target.username) == (5060, "pbx")
    assert isinstance(target.password, SecretStr)
    assert target.password.get_secret_value() == "row-secret"
    assert target.key_file == Path("/keys/pbx")
    assert target.host_key_policy is HostKeyPolicy.OFF
    assert target.dial_context == "from-crm"
    assert target.transport == Transport.CONSOLE.value
    assert target.pinned_host_key == KEY  # the comment is not part of the identity


def test_null_row_fields_keep_defaults() -> None:
    """A row with only some columns set changes only those."""
    row = HostRow(address="10.0.0.5", ssh_port=22)
    target = build_target(settings(ssh_user="root", dial_context="inoffice"), "10.0.0.5", row)
    assert target.port == 22
    assert target.username == "root"
    assert target.dial_context == "inoffice"
    assert target.host_key_policy is HostKeyPolicy.ACCEPT_NEW


def test_settings_only_fields_ignore_the_row() -> None:
    """asterisk_bin, timeouts and known_hosts always come from the settings."""
    s = settings(asterisk_bin="/opt/asterisk", ssh_command_timeout=9, ssh_known_hosts="/kh")
    target = build_target(s, "pbx.example.com", HostRow(address="pbx.example.com"))
    assert target.asterisk_bin == "/opt/asterisk"
    assert target.command_timeout == 9.0
    assert target.known_hosts == Path("/kh")


@pytest.mark.parametrize(
    "address",
    ["", "10.0.0.5; reboot", "$(id)", "-oProxyCommand=x", "10.0.0.256", "a b", "host_name"],
)
def test_bad_address_is_a_configuration_error(address: str) -> None:
    """An enterprise ip that is no address or host name never becomes a target."""
    with pytest.raises(ConfigurationError):
        build_target(settings(), address, None)


def test_addresses_are_canonical() -> None:
    """IPv6 is normalised and host names lower-cased, so lookups and pins agree."""
    assert host_address("2001:DB8:0:0::1") == "2001:db8::1"
    assert host_address("PBX.Example.COM") == "pbx.example.com"
    assert build_target(settings(), "2001:db8::0001", None).address == "2001:db8::1"


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("host_key_policy", "maybe"),
        ("transport", "Not A Name"),
        ("dial_context", "in office"),
        ("ssh_user", "-oX"),
        ("host_key", "not a key"),
    ],
)
def test_unusable_row_value_names_the_column(column: str, value: str) -> None:
    """A hand-edited bad value raises ConfigurationError naming the column, not the value."""
    fields: dict[str, Any] = {column: value}
    row = HostRow(address="10.0.0.5", **fields)
    with pytest.raises(ConfigurationError, match=f"pbx_hosts.{column}") as info:
        build_target(settings(), "10.0.0.5", row)
    assert value not in info.value.message


def test_row_port_out_of_range_is_rejected() -> None:
    """A port outside 1..65535 in the row is a configuration error."""
    with pytest.raises(ConfigurationError, match="ssh_port"):
        build_target(settings(), "10.0.0.5", HostRow(address="10.0.0.5", ssh_port=70000))


def test_error_never_shows_the_row_password() -> None:
    """Errors about a row do not carry its password."""
    row = HostRow(address="10.0.0.5", ssh_password="hunter2", transport="Not A Name")
    with pytest.raises(ConfigurationError) as info:
        build_target(settings(), "10.0.0.5", row)
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(row)


def test_public_key_helpers() -> None:
    """Key lines are reduced to type and data; fingerprints match OpenSSH's format."""
    assert normalize_public_key(f"  {KEY}  comment here\n") == KEY
    assert key_fingerprint(KEY).startswith("SHA256:")
    assert not key_fingerprint(KEY).endswith("=")
    for bad in ["", "ssh-ed25519", "ssh-ed25519 !!!", "ssh-ed25519 AAAA\nssh-rsa AAAA", "x A="]:
        with pytest.raises(ValueError):
            normalize_public_key(bad)


def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    """key_fingerprint agrees with `ssh-keygen -l` on a real key."""
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        pytest.skip("ssh-keygen is not installed")
    key = tmp_path / "id"
    subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(
        [keygen, "-l", "-E", "sha256", "-f", f"{key}.pub"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[1]
    assert key_fingerprint(key.with_suffix(".pub").read_text()) == listed


@pytest.mark.parametrize("user", ["", "-l", ".hidden", "a b", "root;id", "x" * 65])
def test_bad_ssh_users_are_refused(user: str) -> None:
    """SSH user names come from a small safe set."""
    with pytest.raises(ValueError):
        validate_ssh_user(user)


def test_host_field_checks_store_canonical_values() -> None:
    """The changes `callgate host set` makes are checked and given in their stored form; an
    unknown field is a programming error, a bad value names its field."""
    key_line = KEY + " root@pbx"
    assert check_host_fields({"host_key": key_line, "ssh_port": None}) == {
        "host_key": KEY,
        "ssh_port": None,
    }
    with pytest.raises(TypeError, match="address"):
        check_host_fields({"address": "10.0.0.6"})
    with pytest.raises(InvalidInput) as info:
        check_host_fields({"ssh_port": True})
    assert info.value.field == "ssh_port"
