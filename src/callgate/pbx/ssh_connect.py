"""Open one verified SSH connection to a PBX host with exactly the configured credentials.

No ambient ``~/.ssh`` keys, agent, config or known_hosts are used: every option that asyncssh
would otherwise fill in from the user's environment is set explicitly.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import asyncssh

from callgate import errors
from callgate.pbx.ssh_errors import connect_errors
from callgate.pbx.transport import HostKeyStore, HostTarget
from callgate.settings import HostKeyPolicy

# asyncssh's default ciphers, AES-GCM moved first: OpenSSL does a packet's AES-GCM (AES-NI)
# in one call, where asyncssh's ChaCha20-Poly1305 takes several from Python; measured here, a
# third of the CPU per round trip, on both ends. OpenSSH offers all of these by default.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


def _known_hosts(target: HostTarget) -> Any:
    """asyncssh's `known_hosts` argument for the target's policy (None: no check)."""
    pinned = [asyncssh.import_public_key(target.pinned_host_key)] if target.pinned_host_key else []
    if target.host_key_policy is HostKeyPolicy.OFF:
        return None
    if target.host_key_policy is HostKeyPolicy.STRICT:
        if target.known_hosts is not None and not pinned:
            return str(target.known_hosts)
        # Without a known_hosts file only a pinned key is trusted; none: every key is refused.
        return (pinned, [], [])
    # accept-new: a pinned key is enforced during key exchange, before any credential is sent.
    return (pinned, [], []) if pinned else None


def connect_options(target: HostTarget, keepalive_interval: float) -> dict[str, Any]:
    options: dict[str, Any] = {
        "port": target.port,
        "username": target.username,
        "known_hosts": _known_hosts(target),
        "config": [],  # never read ~/.ssh/config
        "agent_path": None,  # never ask a running ssh-agent
        "x509_trusted_certs": None,
        "connect_timeout": target.connect_timeout,
        "login_timeout": target.connect_timeout,
        "keepalive_interval": keepalive_interval,
        "keepalive_count_max": 3,
        "encryption_algs": list(CIPHERS),
    }
    if target.key_file is not None:
        options["client_keys"] = [str(target.key_file)]
        options["preferred_auth"] = "publickey"
        options["password"] = None
    elif target.password is not None:
        options["client_keys"] = None  # None, not []: [] would load ~/.ssh/id_* keys
        options["password"] = target.password.get_secret_value()
        options["preferred_auth"] = "password,keyboard-interactive"
    else:
        raise errors.ConfigurationError(
            f"no SSH password or key configured for {target.label} "
            "(CALLGATE_SSH_PASSWORD, CALLGATE_SSH_KEY_FILE or `callgate host set`)"
        )
    return options


async def open_connection(
    target: HostTarget,
    *,
    keepalive_interval: float,
    host_keys: HostKeyStore | None,
) -> tuple[asyncssh.SSHClientConnection, str]:
    """Connect, authenticate and (accept-new) pin the host key; return the connection and key."""
    if (
        target.host_key_policy is HostKeyPolicy.ACCEPT_NEW
        and not target.pinned_host_key
        and host_keys is not None
    ):
        # A target built before the first contact pinned the key (a call followed since, say)
        # must still have it checked during key exchange, before any credential is sent.
        pinned = await host_keys.pinned_key(target.address)
        if pinned:
            target = dataclasses.replace(target, pinned_host_key=pinned)
    options = connect_options(target, keepalive_interval)
    with connect_errors(target.label, target.connect_timeout):
        # asyncssh bounds the whole handshake by connect_timeout; the outer bound is a guard
        # against a peer that trickles bytes forever.
        conn = await asyncio.wait_for(
            asyncssh.connect(target.address, **options), target.connect_timeout + 1
        )
    server_key = conn.get_server_host_key()
    key_line = server_key.export_public_key("openssh").decode().strip() if server_key else ""
    if (
        target.host_key_policy is HostKeyPolicy.ACCEPT_NEW
        and not target.pinned_host_key
        and host_keys is not None
        and key_line
    ):
        pinned = await host_keys.pin_host_key(target.address, target.port, key_line)
        if pinned is not None and _key_body(pinned) != _key_body(key_line):
            # Someone pinned another key in the meantime: this server is not that one.
            conn.close()
            raise errors.SshHostKeyRejected(
                f"SSH host key of {target.label} differs from the pinned one", host=target.label
            )
    return conn, key_line


def _key_body(line: str) -> str:
    """Compare keys by type and data, ignoring the comment."""
    return " ".join(line.split()[:2])
