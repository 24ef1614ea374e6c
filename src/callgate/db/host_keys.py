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

    async def pin_host_key(self, address: str, port: int, public_key: str) -> None:
        """Pin ``public_key`` for ``address`` unless a key is pinned already.

        ``port`` is accepted for the protocol and not used (see the module docstring). If
        another connection pinned a *different* key first (two first contacts racing, one of
        them possibly through an attacker), this connection raises SshHostKeyRejected: only the
        pinned key is ever trusted.
        """
        try:
            offered = normalize_public_key(public_key)
        except ValueError:
            raise SshHostKeyRejected(
                f"host key of {address} is not a usable public key", host=address
            ) from None
        async with self._sessionmaker() as session:
            pinned = await HostRepo(session).pin_host_key(address, offered)
        if pinned != offered:
            raise SshHostKeyRejected(
                f"host key of {address} differs from the key pinned for it", host=address
            )

    async def pinned_key(self, address: str) -> str | None:
        """The key pinned for ``address``, if any."""
        async with self._sessionmaker() as session:
            row = await HostRepo(session).get(address)
        return row.host_key if row is not None else None
