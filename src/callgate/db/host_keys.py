"""The database-backed ``HostKeyStore``: where ``accept-new`` pins a host's key.

The key is pinned per address (``pbx_hosts.host_key``), not per address and port: a host's
SSH server keeps its key when the configured port changes, and ``callgate host forget-key``
is the one way to accept a new key.
"""

from __future__ import annotations

from callgate.db.executor import Executor
from callgate.db.hosts import get_host, pin_host_key
from callgate.domain.hosts import normalize_public_key
from callgate.errors import SshHostKeyRejected


class DbHostKeyStore:
    """Implements ``callgate.pbx.transport.HostKeyStore`` on the ``pbx_hosts`` table."""

    def __init__(self, database: Executor) -> None:
        self._database = database

    async def pin_host_key(self, address: str, port: int, public_key: str) -> str:
        """Pin ``public_key`` for ``address`` unless a key is pinned already; return the pinned key.

        ``port`` is accepted for the protocol and not used (see the module docstring). When two
        first contacts race, exactly one key is pinned and both callers get that one back; the
        caller must reject its connection if it saw another key (it may be an attacker's).
        A line that is not a public key raises SshHostKeyRejected: nothing is pinned.
        """
        try:
            offered = normalize_public_key(public_key)
        except ValueError:
            raise SshHostKeyRejected(
                f"host key of {address} is not a usable public key", host=address
            ) from None
        return await pin_host_key(self._database, address, offered)

    async def pinned_key(self, address: str) -> str | None:
        """The key pinned for ``address``, if any."""
        row = await get_host(self._database, address)
        return row.host_key if row is not None else None
