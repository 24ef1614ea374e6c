"""From settings and a host's ``pbx_hosts`` row to the ``HostTarget`` a transport connects to.

Pure functions only (no I/O): the service reads the row per call and builds the target here,
so a change made with ``callgate host set`` applies to the very next call.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from callgate.db.models import PbxHost
from callgate.errors import ConfigurationError
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy, Settings, Transport
from callgate.validation import validate_context, validate_host

# POSIX-portable user names; asyncssh sends this verbatim, a shell never sees it.
_SSH_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}", re.ASCII)
_KEY_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._+-]{0,63}", re.ASCII)
_KEY_BLOB = re.compile(r"[A-Za-z0-9+/]+={0,2}", re.ASCII)
MAX_KEY_LINE = 16_384

_T = TypeVar("_T")


def host_address(value: str | None) -> str:
    """The canonical form of a PBX address, as used for ``pbx_hosts.address``.

    IP addresses in ``ipaddress``'s normal form, host names lower-cased (DNS ignores case), so
    ``callgate host set`` and the per-call lookup agree however the operator typed it. Raises
    ConfigurationError for anything that is neither.
    """
    return validate_host(value).lower()


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
    parts = line.strip().split()
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


def build_target(settings: Settings, address: str, row: PbxHost | None) -> HostTarget:
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
