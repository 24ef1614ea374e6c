"""A PBX host's address and its stored SSH settings (a ``pbx_hosts`` row), and their checks.

Pure: no I/O. The same checks guard a row on the way in (``db.hosts.set_host``, the CLI) and
on the way out (``calls.targets.build_target``, which merges a row into the target to connect
to).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from callgate.errors import ConfigurationError, InvalidInput
from callgate.settings import HostKeyPolicy, transport_name
from callgate.validation import validate_context, validate_host

# POSIX-portable user names; asyncssh sends this verbatim, a shell never sees it.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_KEY_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}", re.ASCII)
_KEY_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
MAX_KEY_LINE = 16_384


def host_address(value: str | None) -> str:
    """The canonical form of a PBX address, as used for ``pbx_hosts.address``.

    IP addresses in ``ipaddress``'s normal form, host names lower-cased (DNS ignores case), so
    ``callgate host set`` and the per-call lookup agree however the operator typed it. Raises
    ConfigurationError for anything that is neither.
    """
    host = validate_host(value).lower()
    # validate_host accepts "10.0.0.256" or "10.0.0.05" as host names (every label is a valid
    # label), but no real name ends in an all-numeric label (RFC 3696, 2): it is a mistyped IP.
    last_label = host.rsplit(".", 1)[-1]
    if ":" not in host and _DIGITS.fullmatch(last_label):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigurationError(
                "the enterprise's PBX host address is not an IP address or host name"
            ) from None
    return host


def validate_ssh_user(value: str) -> str:
    """An SSH login name: 1..64 of ``A-Z a-z 0-9 _ . -``, not starting with ``.`` or ``-``."""
    if not _SSH_USER.fullmatch(value):
        raise ValueError("SSH user must be 1 to 64 of A-Z a-z 0-9 _ . - (not starting with . or -)")
    return value


def normalize_public_key(line: str) -> str:
    """An OpenSSH public key line reduced to ``"<type> <base64>"`` (the comment is dropped).

    Only type and key identify a host key; storing exactly those makes comparisons exact.
    """
    if len(line) > MAX_KEY_LINE:
        raise ValueError("public key line is too long")
    stripped = line.strip()
    if not stripped.isprintable():  # one line only: no newline, no control characters
        raise ValueError("a public key is one line of printable characters")
    parts = stripped.split()
    if len(parts) < 2 or not _KEY_TYPE.fullmatch(parts[0]) or not _KEY_BLOB.fullmatch(parts[1]):
        raise ValueError("not an OpenSSH public key line ('<type> <base64> [comment]')")
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the public key's base64 part does not decode") from None
    return f"{parts[0]} {parts[1]}"


def key_fingerprint(line: str) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a public key line, as ``ssh-keygen -l`` shows."""
    blob = base64.b64decode(normalize_public_key(line).split()[1])
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode("ascii").rstrip("=")
    return f"SHA256:{digest}"


@dataclass(frozen=True, slots=True)
class HostRow:
    """A host's stored SSH settings (its ``pbx_hosts`` row); None: the default applies."""

    address: str
    ssh_port: int | None = None
    ssh_user: str | None = None
    ssh_password: str | None = dataclasses.field(default=None, repr=False)  # never shown
    ssh_key_file: str | None = None
    host_key_policy: str | None = None
    dial_context: str | None = None
    transport: str | None = None
    host_key: str | None = None  # pinned: "type base64"


# The settings `set_host` may change (all but the address); None resets one to the default.
HOST_FIELDS = tuple(item.name for item in dataclasses.fields(HostRow) if item.name != "address")


def check_host_fields(changes: Mapping[str, Any]) -> dict[str, Any]:
    """Check changes of a host's settings (`HOST_FIELDS`): a TypeError for an unknown field,
    InvalidInput (naming the field) for a bad value; the result holds the values as stored."""
    unknown = set(changes) - set(HOST_FIELDS)
    if unknown:
        raise TypeError(f"unknown pbx_hosts fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for field, value in changes.items():
        if value is None:
            values[field] = None
            continue
        try:
            values[field] = _check_field(field, value)
        except ValueError as exc:
            raise InvalidInput(field, str(exc)) from None
    return values


def _check_field(field: str, value: Any) -> Any:
    if field == "ssh_port":
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise ValueError("must be a port number, 1 to 65535")
        return value
    if field == "ssh_user":
        return validate_ssh_user(str(value))
    if field in ("ssh_password", "ssh_key_file"):
        text = str(value)
        if not text or "\x00" in text or len(text) > (1024 if field == "ssh_password" else 4096):
            raise ValueError("must be non-empty, without NUL, and not too long")
        return text
    if field == "host_key_policy":
        return HostKeyPolicy(value).value
    if field == "dial_context":
        return validate_context(str(value))
    if field == "transport":
        return transport_name(str(value))
    if field == "host_key":
        return normalize_public_key(str(value))
    raise TypeError(f"unknown pbx_hosts field {field}")  # pragma: no cover - checked above
