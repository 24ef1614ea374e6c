"""Strict ASCII allow-lists for every value that may reach a host's shell or Asterisk's CLI.

Each check is a full match on explicit ASCII classes: Python's ``\\d``, ``str.isdigit()`` and a
trailing ``$`` accept Arabic-Indic digits, fullwidth digits or a final newline, so none is used.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TypeGuard

from callgate.errors import ConfigurationError, InvalidInput

# Longest raw value looked at: anything longer is rejected before any other work.
MAX_RAW_LENGTH = 64

_EXTENSION_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_PHONE_SEPARATORS = str.maketrans("", "", " -.()")
_PHONE_INTERNATIONAL = re.compile(r"\+[1-9][0-9]{6,14}", re.ASCII)
_PHONE_LOCAL = re.compile(r"[0-9]{3,15}", re.ASCII)
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", re.ASCII)
_CONTEXT = re.compile(r"[A-Za-z0-9_-]{1,79}", re.ASCII)
_PROGRAM = re.compile(r"[A-Za-z0-9_./-]{1,255}", re.ASCII)
_CHANNEL = re.compile(r"Local/\+?[0-9]{1,15}@[A-Za-z0-9_-]{1,79}-[0-9a-f]{8};[12]", re.ASCII)


def validate_extension(value: str | None, max_length: int = 6, field: str = "code") -> str:
    """An internal extension: ASCII digits only, 2..max_length long."""
    if value is None or value == "":
        raise InvalidInput(field, "is required")
    if len(value) > max_length or not _EXTENSION_DIGITS.fullmatch(value):
        raise InvalidInput(field, f"must be 2 to {max_length} ASCII digits")
    if len(value) < 2:
        raise InvalidInput(field, f"must be 2 to {max_length} ASCII digits")
    return value


def normalize_phone(value: str | None, field: str = "phone") -> str:
    """A number to call: separators removed, then ``+`` and 7..15 digits or 3..15 digits."""
    if value is None or value == "":
        raise InvalidInput(field, "is required")
    if len(value) > MAX_RAW_LENGTH:
        raise InvalidInput(field, f"is longer than {MAX_RAW_LENGTH} characters")
    compact = value.translate(_PHONE_SEPARATORS)
    if _PHONE_INTERNATIONAL.fullmatch(compact) or _PHONE_LOCAL.fullmatch(compact):
        return compact
    raise InvalidInput(
        field,
        "must be '+' and 7 to 15 digits (not starting with 0) or 3 to 15 digits; "
        "only ASCII digits, spaces, '-', '.', '(' and ')' are allowed",
    )


def validate_host(value: str | None) -> str:
    """An enterprise's PBX address: an IP address or an RFC 1123 host name."""
    if not value:
        raise ConfigurationError("the enterprise has no PBX host address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    labels = value.split(".")
    # A last label of digits only is a mistyped IPv4 address (10.0.0.256), not a name.
    if (
        len(value) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return value
    raise ConfigurationError("the enterprise's PBX host address is not an IP address or host name")


def validate_context(value: str) -> str:
    """A dialplan context name as Asterisk allows it, restricted to a safe ASCII set."""
    if not _CONTEXT.fullmatch(value):
        raise ValueError("dial context must be 1 to 79 of A-Z a-z 0-9 _ -")
    return value


def validate_program_path(value: str) -> str:
    """The asterisk program on the host: a plain path, nothing a shell would interpret."""
    if not _PROGRAM.fullmatch(value) or value.startswith("-"):
        raise ValueError("asterisk program must be a path of A-Z a-z 0-9 _ . / -")
    return value


def validate_channel(value: str) -> str:
    """A channel name callgate itself created (`Local/<n>@<ctx>-XXXXXXXX;1|2`)."""
    if not _CHANNEL.fullmatch(value):
        raise InvalidInput("channel", "is not a channel name callgate can act on")
    return value


_SECRET = re.compile(r"[\x21-\x7e]{1,255}", re.ASCII)


def is_plausible_secret(value: str | None) -> TypeGuard[str]:
    """Printable ASCII without spaces, at most 255 long: anything else cannot be stored.

    Checked before the database is asked, so a NUL byte or a megabyte never reaches a query.
    """
    return value is not None and _SECRET.fullmatch(value) is not None
