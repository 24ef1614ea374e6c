"""The seam between the service and a PBX: run Asterisk CLI commands on one host.

A transport knows *how* commands reach Asterisk (``asterisk -rx`` per command over a pooled
SSH connection, or a persistent console); it knows nothing of calls. ``PbxClient`` builds the
call operations on top of any transport. A host's transport is the one registered under its
target's ``transport`` name (``registry``, ``routing``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pydantic import SecretStr

from callgate.pbx.verbose import Heard
from callgate.settings import HostKeyPolicy, Transport


@dataclass(frozen=True)
class HostTarget:
    """Everything needed to reach one PBX host, defaults already merged with its own row."""

    address: str
    port: int
    username: str
    password: SecretStr | None = None
    key_file: Path | None = None
    host_key_policy: HostKeyPolicy = HostKeyPolicy.ACCEPT_NEW
    pinned_host_key: str | None = None  # OpenSSH public key line, pinned on first contact
    known_hosts: Path | None = None
    dial_context: str = "inoffice"
    asterisk_bin: str = "asterisk"
    transport: str = Transport.RX.value  # a registered transport's name (pbx/registry.py)
    connect_timeout: float = 10.0
    command_timeout: float = 15.0

    @property
    def label(self) -> str:
        """How the host is named in logs and messages."""
        return self.address if self.port == 22 else f"{self.address}:{self.port}"

    def connection_key(self) -> tuple[object, ...]:
        """Connections are shared only between targets that would log in identically.

        The pinned key is left out on purpose: pinning on first contact must not make the next
        call open a second connection. The pool compares each connection's verified key with
        the target's pinned one instead.
        """
        password = self.password.get_secret_value() if self.password else None
        return (
            self.address,
            self.port,
            self.username,
            password,
            str(self.key_file) if self.key_file else None,
            self.host_key_policy,
            str(self.known_hosts) if self.known_hosts else None,
        )


class HostKeyStore(Protocol):
    """Where `accept-new` pins a host key seen on first contact (the database's, given by
    ``callgate.wiring``: it fits this protocol without knowing of pbx)."""

    async def pin_host_key(self, address: str, port: int, public_key: str) -> str | None:
        """Pin `public_key` unless a key is pinned already; return the key pinned now."""
        ...

    async def pinned_key(self, address: str) -> str | None:
        """The key pinned now, if any (a target built before the pin does not carry it)."""
        ...


class PbxTransport(Protocol):
    """Runs CLI commands on a host, in order, and returns each command's output."""

    async def run(
        self, target: HostTarget, commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        """Run `commands` in order; raise a PbxError (callgate.errors) on any failure, its
        ``host`` and ``completed`` (the commands of this run that had run before it) given as
        it is raised. A host the transport cannot reach, or that does not let it in, is a
        PbxUnreachable: what the circuit breaker counts (``breaker``).

        A command whose output says Asterisk is not running raises AsteriskNotRunning and the
        rest are not run. `notices`, when given, gets the log lines Asterisk printed among the
        answers (a console shows them, `asterisk -rx` does not); they are never part of an
        answer.
        """
        ...

    def status(self) -> dict[str, object]:
        """A small, secret-free summary for /api/status."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class EventSource(Protocol):
    """A transport that can also listen to what a host says of its calls, as it happens."""

    def listen(
        self, target: HostTarget
    ) -> AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        """A listening session on ``target``, or None when this host cannot be listened to."""
        ...
