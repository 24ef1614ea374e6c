"""Sealed SSH passwords: the round trip, the key they need, the target that opens them."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from callgate.calls.targets import build_target
from callgate.domain.hosts import HostRow
from callgate.domain.sealed import (
    SEALED_PREFIX,
    KeyMissing,
    WrongKey,
    is_sealed,
    new_key,
    seal,
    unseal,
)
from callgate.errors import ConfigurationError
from callgate.settings import Settings, load_settings

PASSWORD = "pbx-Pass\u00e9word-7f3a9c"
KEY = SecretStr(new_key())


def test_a_sealed_password_round_trips_and_holds_no_part_of_it() -> None:
    stored = seal(PASSWORD, KEY)
    assert stored.startswith(SEALED_PREFIX) and is_sealed(stored)
    assert PASSWORD not in stored and PASSWORD[:6] not in stored
    assert PASSWORD.encode().hex() not in stored
    assert unseal(stored, KEY) == PASSWORD
    assert seal(PASSWORD, KEY) != stored  # a fresh IV each time: equal passwords look different


def test_a_password_stored_in_clear_still_reads() -> None:
    assert not is_sealed(PASSWORD)
    assert unseal(PASSWORD, None) == PASSWORD
    assert unseal(PASSWORD, KEY) == PASSWORD


def test_a_sealed_password_needs_its_own_key() -> None:
    stored = seal(PASSWORD, KEY)
    with pytest.raises(KeyMissing):
        unseal(stored, None)
    with pytest.raises(WrongKey):
        unseal(stored, SecretStr(new_key()))
    with pytest.raises(WrongKey):  # altered: the HMAC check fails
        unseal(stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:], KEY)


@pytest.mark.parametrize("key", [None, "wrong"])
def test_the_target_names_the_host_never_the_value_when_it_cannot_open_one(
    key: str | None,
) -> None:
    stored = seal(PASSWORD, KEY)
    settings = Settings(secret_key=None if key is None else new_key())
    row = HostRow(address="10.0.0.5", ssh_password=stored)
    with pytest.raises(ConfigurationError) as caught:
        build_target(settings, "10.0.0.5", row)
    message = caught.value.message
    assert "PBX host 10.0.0.5" in message and "CALLGATE_SECRET_KEY" in message
    assert stored not in message and PASSWORD not in message
    assert stored[len(SEALED_PREFIX) :][:12] not in str(caught.value)


def test_the_target_carries_the_opened_password() -> None:
    settings = Settings(secret_key=KEY)
    target = build_target(settings, "10.0.0.5", HostRow("10.0.0.5", ssh_password=seal("pw", KEY)))
    assert target.password is not None and target.password.get_secret_value() == "pw"
    plain = build_target(settings, "10.0.0.5", HostRow("10.0.0.5", ssh_password="legacy"))
    assert plain.password is not None and plain.password.get_secret_value() == "legacy"


@pytest.mark.parametrize("key", ["", "short", "A" * 44, "!" * 44])
def test_a_malformed_secret_key_fails_at_start_saying_how_to_make_one(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(secret_key=key)
    assert "CALLGATE_SECRET_KEY" in caught.value.message
    assert "callgate secret-key" in caught.value.message
    assert key not in caught.value.message or not key
