"""The database-backed ``HostKeyStore``: where ``accept-new`` pins a host's key.

The key is pinned per address (``pbx_hosts.host_key``), not per address and port: a host's
SSH server keeps its key when the configured port changes, and ``callgate host forget-key``
is the one way to accept a new key.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.repositories import HostRepo
from callgate.errors import SshHostKeyRejected
from callgate.hosts import normalize_public_key


class DbHostKeyStore:
    """Implements ``callgate.pbx.transport.HostKeyStore`` on the ``pbx_hosts`` table."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker

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
        async with self._sessionmaker() as session:
            return await HostRepo(session).pin_host_key(address, offered)

    async def pinned_key(self, address: str) -> str | None:
        """The key pinned for ``address``, if any."""
        async with self._sessionmaker() as session:
            row = await HostRepo(session).get(address)
        return row.host_key if row is not None else None
