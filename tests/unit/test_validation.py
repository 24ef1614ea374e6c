"""The allow-lists: what may reach a host's shell or Asterisk's CLI, and what may not."""

from __future__ import annotations

import pytest

from callgate.errors import ConfigurationError, InvalidInput
from callgate.validation import (
    normalize_phone,
    validate_channel,
    validate_context,
    validate_extension,
    validate_host,
    validate_program_path,
)

HOSTILE = [
    "150;id",
    "150|id",
    "150&id",
    "150$x",
    "150`id`",
    "150'",
    '150"',
    "150\\",
    "150,1",
    "150@x",
    "150/x",
    "(150)",
    "1 50",
    "1\t50",
    "150\n",
    "150\x00",
    "$(id)",
    "${EXTEN}",
    "\u0661\u0665\u0660",  # Arabic-Indic 150
    "\uff11\uff15\uff10",  # fullwidth 150
    "1" * 10_000,
    "",
]


@pytest.mark.parametrize("value", ["10", "150", "0367", "123456"])
def test_code_accepts_ascii_digits(value: str) -> None:
    """Extensions of 2..6 ASCII digits pass unchanged."""
    assert validate_extension(value) == value


@pytest.mark.parametrize("value", [*HOSTILE, "1", "1234567"])
def test_code_rejects_everything_else(value: str) -> None:
    """Anything but 2..6 ASCII digits is refused, naming the field."""
    with pytest.raises(InvalidInput) as caught:
        validate_extension(value)
    assert caught.value.field == "code"


def test_code_max_length_is_configurable() -> None:
    """A longer maximum admits longer extensions."""
    assert validate_extension("12345678", max_length=8) == "12345678"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("+375296254070", "+375296254070"),
        ("+375 (29) 625-40-70", "+375296254070"),
        ("8.029.625.40.70", "80296254070"),
        ("101", "101"),
        ("+1234567", "+1234567"),
    ],
)
def test_phone_is_normalised(raw: str, normal: str) -> None:
    """Spaces, hyphens, dots and parentheses are removed; digits and a leading + stay."""
    assert normalize_phone(raw) == normal


@pytest.mark.parametrize(
    "value",
    [
        *HOSTILE[:11],
        "1\t50",
        "150\n",
        "150\x00",
        "$(id)",
        "${EXTEN}",
        "\u0661\u0665\u0660",
        "\uff11\uff15\uff10",
        "1" * 10_000,
        "",
        "+0375296254070",
        "+123456",
        "12",
        "1" * 16,
        "++375296254070",
        "375+296254070",
        "+375296254070\n",
    ],
)
def test_phone_rejects_everything_else(value: str) -> None:
    """Non-ASCII digits, metacharacters, control characters and bad lengths are refused."""
    with pytest.raises(InvalidInput) as caught:
        normalize_phone(value)
    assert caught.value.field == "phone"


@pytest.mark.parametrize("value", ["10.0.0.5", "::1", "pbx-1.example.org", "localhost"])
def test_host_accepts_addresses_and_names(value: str) -> None:
    """IP addresses and RFC 1123 host names are valid PBX addresses."""
    assert validate_host(value)


@pytest.mark.parametrize("value", ["", "-oProxyCommand=x", "a b", "host;id", "a..b", "x" * 300])
def test_host_rejects_garbage(value: str) -> None:
    """A bad enterprise ip is a configuration error: nothing will be executed."""
    with pytest.raises(ConfigurationError):
        validate_host(value)


def test_context_and_program_allow_lists() -> None:
    """Contexts and the program path accept plain names and refuse shell syntax."""
    assert validate_context("inoffice") == "inoffice"
    assert validate_program_path("/usr/sbin/asterisk") == "/usr/sbin/asterisk"
    for bad in ("in office", "ctx;id", "ctx\n", ""):
        with pytest.raises(ValueError, match="context"):
            validate_context(bad)
    for bad in ("-x", "ast erisk", "a;b", "$(id)"):
        with pytest.raises(ValueError, match="program"):
            validate_program_path(bad)


def test_channel_names_are_only_ours() -> None:
    """Only Local channel names of the form callgate creates can be hung up."""
    assert validate_channel("Local/150@inoffice-0000000a;1")
    for bad in ("all", "Local/150@inoffice-0000000a;1 ; id", "SIP/150-0001", "Local/150@x-zz;1"):
        with pytest.raises(InvalidInput):
            validate_channel(bad)
