"""A host's SSH settings: checking them, and merging them into the ``HostTarget`` to connect to.

Pure functions only (no I/O): the service reads the ``pbx_hosts`` row per call and builds the
target here, so a change made with ``callgate host set`` applies to the very next call. The
same checks guard the row on the way in (``HostRepo.set``, the CLI) and on the way out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypedDict, TypeVar

from pydantic import SecretStr

from callgate.errors import ConfigurationError, InvalidInput
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy, Settings, Transport
from callgate.validation import validate_context, validate_host

# POSIX-portable user names; asyncssh sends this verbatim, a shell never sees it.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_KEY_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}", re.ASCII)
_KEY_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
MAX_KEY_LINE = 16_384

_T = TypeVar("_T")


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


class HostOverrides(TypedDict, total=False):
    """The ``pbx_hosts`` fields ``HostRepo.set`` may change; ``None`` resets one to the default."""

    ssh_port: int | None
    ssh_user: str | None
    ssh_password: str | None
    ssh_key_file: str | None
    host_key_policy: HostKeyPolicy | str | None
    dial_context: str | None
    transport: Transport | str | None
    host_key: str | None  # pin a known key outright (the demo's simulator, an operator)


def validate_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``HostRepo.set``'s fields: a TypeError for an unknown one, InvalidInput (naming
    the field) for a bad value; the result holds the values as they are stored."""
    allowed = HostOverrides.__annotations__.keys()
    unknown = set(overrides) - set(allowed)
    if unknown:
        raise TypeError(f"unknown pbx_hosts fields: {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for field, value in overrides.items():
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
        return Transport(value).value
    if field == "host_key":
        return normalize_public_key(str(value))
    raise TypeError(f"unknown pbx_hosts field {field}")  # pragma: no cover - checked above


class HostSettings(Protocol):
    """The per-host overrides build_target reads: a ``pbx_hosts`` row, as the ORM object
    (`PbxHost`) or as the per-call read's plain row (`HostRow`)."""

    @property
    def ssh_port(self) -> int | None: ...
    @property
    def ssh_user(self) -> str | None: ...
    @property
    def ssh_password(self) -> str | None: ...
    @property
    def ssh_key_file(self) -> str | None: ...
    @property
    def host_key_policy(self) -> str | None: ...
    @property
    def dial_context(self) -> str | None: ...
    @property
    def transport(self) -> str | None: ...
    @property
    def host_key(self) -> str | None: ...


def build_target(settings: Settings, address: str, row: HostSettings | None) -> HostTarget:
    """Merge the ``CALLGATE_SSH_*`` defaults with the host's row (its non-NULL fields win).

    ``address`` is checked first: an enterprise whose ``ip`` is not an address or host name
    raises ConfigurationError before anything could be executed. A row value that is unusable
    (edited by hand, say) raises ConfigurationError naming the host and the column, never
    showing a password.
    """
    host = host_address(address)
    port = settings.ssh_port
    user = settings.ssh_user
    password = settings.ssh_password
    key_file = settings.ssh_key_file
    policy = settings.ssh_host_key_policy
    context = settings.dial_context
    transport = settings.transport
    pinned: str | None = None

    if row is not None:
        if row.ssh_port is not None:
            if not 1 <= row.ssh_port <= 65535:
                raise ConfigurationError(f"PBX host {host}: ssh_port must be 1 to 65535")
            port = row.ssh_port
        if row.ssh_user is not None:
            user = _checked(host, "ssh_user", validate_ssh_user, row.ssh_user)
        if row.ssh_password is not None:
            password = SecretStr(row.ssh_password)
        if row.ssh_key_file is not None:
            key_file = Path(row.ssh_key_file)
        if row.host_key_policy is not None:
            policy = _checked(host, "host_key_policy", HostKeyPolicy, row.host_key_policy)
        if row.dial_context is not None:
            context = _checked(host, "dial_context", validate_context, row.dial_context)
        if row.transport is not None:
            transport = _checked(host, "transport", Transport, row.transport)
        if row.host_key is not None:
            pinned = _checked(host, "host_key", normalize_public_key, row.host_key)

    return HostTarget(
        address=host,
        port=port,
        username=user,
        password=password,
        key_file=key_file,
        host_key_policy=policy,
        pinned_host_key=pinned,
        known_hosts=settings.ssh_known_hosts,
        dial_context=context,
        asterisk_bin=settings.asterisk_bin,
        transport=transport,
        connect_timeout=settings.ssh_connect_timeout,
        command_timeout=settings.ssh_command_timeout,
    )


def _checked(host: str, column: str, convert: Callable[[str], _T], value: str) -> _T:
    """``convert(value)``, with a ValueError turned into a ConfigurationError naming the column."""
    try:
        return convert(value)
    except ValueError:
        raise ConfigurationError(
            f"PBX host {host}: pbx_hosts.{column} holds an unusable value"
        ) from None
