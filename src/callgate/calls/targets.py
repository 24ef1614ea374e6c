"""A host's target: the ``CALLGATE_SSH_*`` defaults merged with its stored row.

The service reads the ``pbx_hosts`` row per call and builds the target here, so a change made
with ``callgate host set`` applies to the very next call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from pydantic import SecretStr

from callgate.domain.hosts import HostRow, host_address, normalize_public_key, validate_ssh_user
from callgate.domain.sealed import KeyMissing, WrongKey, unseal
from callgate.errors import ConfigurationError
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy, Settings, transport_name
from callgate.validation import validate_context

_T = TypeVar("_T")


def build_target(settings: Settings, address: str, row: HostRow | None) -> HostTarget:
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
            password = SecretStr(_password(host, row.ssh_password, settings.secret_key))
        if row.ssh_key_file is not None:
            key_file = Path(row.ssh_key_file)
        if row.host_key_policy is not None:
            policy = _checked(host, "host_key_policy", HostKeyPolicy, row.host_key_policy)
        if row.dial_context is not None:
            context = _checked(host, "dial_context", validate_context, row.dial_context)
        if row.transport is not None:
            transport = _checked(host, "transport", transport_name, row.transport)
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


def _password(host: str, stored: str, key: SecretStr | None) -> str:
    """The host's stored password opened here, so the PBX layer never sees the sealed value
    and the database layer never sees the key; a failure names the host, never the value."""
    try:
        return unseal(stored, key)
    except KeyMissing:
        raise ConfigurationError(
            f"PBX host {host}: pbx_hosts.ssh_password is encrypted and CALLGATE_SECRET_KEY is "
            "not set"
        ) from None
    except WrongKey:
        raise ConfigurationError(
            f"PBX host {host}: pbx_hosts.ssh_password cannot be decrypted with "
            "CALLGATE_SECRET_KEY (it was stored with another key)"
        ) from None


def _checked(host: str, column: str, convert: Callable[[str], _T], value: str) -> _T:
    """``convert(value)``, with a ValueError turned into a ConfigurationError naming the column."""
    try:
        return convert(value)
    except ValueError:
        raise ConfigurationError(
            f"PBX host {host}: pbx_hosts.{column} holds an unusable value"
        ) from None
