"""A pool of persistent SSH connections, one small group per host, and command execution.

Why a pool: a fresh SSH login costs 0.2-2 s, the command itself a few ms. Each host keeps a
few connections; each connection carries at most `sessions_per_connection` parallel commands
(below OpenSSH's default MaxSessions of 10, so sshd never refuses a channel). When all are busy
another connection is opened, up to `connections_per_host`; beyond that a call waits at most
`pool_wait`. Concurrent callers of a host that is still connecting share that one attempt, so a
dead host costs one connect timeout, not one per caller.

Handshakes are bounded (key exchange CPU, sshd's MaxStartups) without letting a dead host slow
the others: a host (address and port, any login) gets at most `host_handshakes` at once, and one
whose last handshake timed out waits for a small budget of its own, so its attempts, which hold
a slot until their timeout, never take one from a host that works.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncssh

from callgate import errors, metrics
from callgate.pbx.ssh_connect import open_connection
from callgate.pbx.ssh_errors import command_errors
from callgate.pbx.transport import HostKeyStore, HostTarget
from callgate.settings import Settings

# Longest answer read from one command: a full channel listing of a busy PBX fits many times.
DEFAULT_OUTPUT_LIMIT = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CommandResult:
    stdout: str
    stderr: str
    exit_status: int


@dataclass(frozen=True, slots=True)
class PoolLimits:
    sessions_per_connection: int = 8
    connections_per_host: int = 4
    pool_wait: float = 5.0
    max_handshakes: int = 32
    # One login never opens two connections at once; 2 leaves room for a second login.
    host_handshakes: int = 2
    keepalive_interval: float = 15.0
    idle_timeout: float = 300.0
    output_limit: int = DEFAULT_OUTPUT_LIMIT

    @classmethod
    def from_settings(cls, settings: Settings) -> PoolLimits:
        return cls(
            sessions_per_connection=settings.ssh_sessions_per_connection,
            connections_per_host=settings.ssh_connections_per_host,
            pool_wait=settings.ssh_pool_wait,
            max_handshakes=settings.ssh_max_handshakes,
            host_handshakes=min(2, settings.ssh_max_handshakes),
            keepalive_interval=settings.ssh_keepalive_interval,
            idle_timeout=settings.ssh_idle_timeout,
        )


@dataclass(eq=False)
class _Connection:
    conn: asyncssh.SSHClientConnection
    host_key: str
    in_use: int = 0
    last_used: float = field(default_factory=time.monotonic)

    def usable(self) -> bool:
        return not self.conn.is_closed()


@dataclass(eq=False)
class _HostPool:
    connections: list[_Connection] = field(default_factory=list)
    opening: asyncio.Task[_Connection] | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class SshPool:
    """Persistent, verified SSH connections keyed by how they log in."""

    def __init__(self, limits: PoolLimits, host_keys: HostKeyStore | None = None) -> None:
        self._limits = limits
        self._host_keys = host_keys
        self._pools: dict[tuple[object, ...], _HostPool] = {}
        self._handshakes = asyncio.Semaphore(limits.max_handshakes)
        self._slow_handshakes = asyncio.Semaphore(max(1, limits.max_handshakes // 4))
        self._host_handshakes: dict[tuple[str, int], asyncio.Semaphore] = {}
        self._slow_hosts: set[tuple[str, int]] = set()  # their last handshake timed out
        self._reaper: asyncio.Task[None] | None = None
        self.connects = 0  # connections opened since start (a test and benchmark probe)

    async def run(
        self, target: HostTarget, command: str, *, idempotent: bool = False
    ) -> CommandResult:
        """Run one shell command on the host, bounded in time and output size.

        A connection that turns out dead before the command was sent (sshd restarted, channel
        refused) is replaced once, transparently; after the command was sent nothing is retried,
        because a repeated originate would dial twice. A connection that closes after the exec
        request went out but before sshd answered it leaves the command's fate unknown (sshd may
        have started it): ConnectionLost, unless ``idempotent`` (running the command twice
        changes nothing: it only reads), which is run once more on a fresh connection.
        """
        for attempt in (1, 2):
            async with self.connection(target) as conn:
                try:
                    return await self._execute(conn, target, command)
                except _NotSent as exc:
                    conn.close()
                    if attempt == 2:
                        raise errors.SshConnectionFailed(
                            f"SSH session on {target.label} refused: {exc}", host=target.label
                        ) from None
                except _MaybeStarted:
                    conn.close()
                    if attempt == 2 or not idempotent:
                        raise errors.ConnectionLost(
                            f"SSH connection to {target.label} closed as the command was "
                            "starting (it may have run)",
                            host=target.label,
                        ) from None
        raise AssertionError("unreachable")

    @contextlib.asynccontextmanager
    async def connection(self, target: HostTarget) -> AsyncIterator[asyncssh.SSHClientConnection]:
        """Lend a connection with a free session slot for the duration of one use."""
        pool = self._pools.setdefault(target.connection_key(), _HostPool())
        entry = await self._acquire(pool, target)
        try:
            yield entry.conn
        finally:
            entry.in_use -= 1
            entry.last_used = time.monotonic()
            pool.notify()

    async def _acquire(self, pool: _HostPool, target: HostTarget) -> _Connection:
        deadline = time.monotonic() + self._limits.pool_wait + target.connect_timeout
        while True:
            self._drop_unusable(pool, target)
            free = [c for c in pool.connections if c.in_use < self._limits.sessions_per_connection]
            if free:
                entry = min(free, key=lambda c: c.in_use)
                entry.in_use += 1
                return entry
            if pool.opening is None and len(pool.connections) < self._limits.connections_per_host:
                pool.opening = asyncio.create_task(self._open(pool, target))
                # Retrieve the outcome even if every waiter gave up, so none is left unread.
                pool.opening.add_done_callback(lambda task: task.cancelled() or task.exception())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise errors.PbxBusy(f"no SSH session free on {target.label}", host=target.label)
            if pool.opening is not None:
                # Share the attempt in progress: its failure is every waiter's failure.
                try:
                    await asyncio.wait_for(asyncio.shield(pool.opening), remaining)
                except TimeoutError:
                    raise errors.SshConnectTimeout(
                        f"SSH connection to {target.label} timed out", host=target.label
                    ) from None
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pool.changed.wait(), remaining)

    async def _open(self, pool: _HostPool, target: HostTarget) -> _Connection:
        host = (target.address, target.port)
        try:
            async with self._handshake_slot(target):
                try:
                    conn, key = await open_connection(
                        target,
                        keepalive_interval=self._limits.keepalive_interval,
                        host_keys=self._host_keys,
                    )
                except errors.PbxUnreachable as exc:
                    if isinstance(exc, errors.SshConnectTimeout):
                        self._slow_hosts.add(host)  # its next attempts wait in the slow queue
                    metrics.connect_failed(target.label, exc.code.removeprefix("pbx_"))
                    raise
            self._slow_hosts.discard(host)
            metrics.connected(target.label)
            entry = _Connection(conn, key)
            pool.connections.append(entry)
            self.connects += 1
            self._start_reaper()
            return entry
        finally:
            pool.opening = None
            pool.notify()

    @contextlib.asynccontextmanager
    async def _handshake_slot(self, target: HostTarget) -> AsyncIterator[None]:
        """The host's own slot, then a shared one (the slow queue's for a slow host)."""
        host, limit = (target.address, target.port), self._limits.host_handshakes
        own = self._host_handshakes.setdefault(host, asyncio.Semaphore(limit))  # kept per host
        shared = self._slow_handshakes if host in self._slow_hosts else self._handshakes
        async with contextlib.AsyncExitStack() as held:
            try:
                async with asyncio.timeout(target.connect_timeout):
                    await held.enter_async_context(own)
                    await held.enter_async_context(shared)
            except TimeoutError:  # our own limit, not the host's fault: busy, not a failure
                waited = f"{target.connect_timeout:g} s"
                raise errors.PbxBusy(
                    f"no SSH handshake slot free for {target.label} in {waited}", host=target.label
                ) from None
            yield

    def _drop_unusable(self, pool: _HostPool, target: HostTarget) -> None:
        """Forget closed connections and those verified against another pinned key."""
        pinned = " ".join((target.pinned_host_key or "").split()[:2])
        for entry in list(pool.connections):
            stale_key = bool(pinned) and " ".join(entry.host_key.split()[:2]) != pinned
            if not entry.usable() or stale_key:
                pool.connections.remove(entry)
                entry.conn.close()

    async def _execute(
        self, conn: asyncssh.SSHClientConnection, target: HostTarget, command: str
    ) -> CommandResult:
        limit = self._limits.output_limit
        with command_errors(target.label):
            if conn.is_closed():
                raise _NotSent("connection closed")
            try:
                process = await conn.create_process(command, encoding="utf-8", errors="replace")
            except asyncssh.ChannelOpenError as exc:
                # No exec request without a channel; sshd answers one it refused on a live
                # connection. Without that answer (the connection closed meanwhile: asyncssh
                # fails the request alike) the command may have started on the host.
                if exc.code == asyncssh.OPEN_REQUEST_SESSION_FAILED and conn.is_closed():
                    raise _MaybeStarted from None
                raise _NotSent(exc.reason[:100]) from None  # refused: the command did not run
            try:
                process.stdin.write_eof()
                async with asyncio.timeout(target.command_timeout):
                    stdout, stderr = await asyncio.gather(
                        _read_bounded(process.stdout, limit, target.label),
                        _read_bounded(process.stderr, 64 * 1024, target.label),
                    )
                    completed = await process.wait()
            except TimeoutError:
                raise errors.CommandTimeout(
                    f"command on {target.label} timed out after {target.command_timeout:g} s",
                    host=target.label,
                ) from None
            finally:
                process.close()  # a timed-out or oversized command's channel is closed
        return CommandResult(stdout, stderr, completed.exit_status or 0)

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.create_task(self._reap_idle())

    async def _reap_idle(self) -> None:
        """Close connections nobody used for `idle_timeout`; stop when none is left."""
        interval = min(30.0, self._limits.idle_timeout / 2)
        while any(pool.connections for pool in self._pools.values()):
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, pool in list(self._pools.items()):
                for entry in list(pool.connections):
                    idle = now - entry.last_used > self._limits.idle_timeout
                    if entry.in_use == 0 and (idle or not entry.usable()):
                        pool.connections.remove(entry)
                        entry.conn.close()
                if not pool.connections and pool.opening is None:
                    del self._pools[key]

    def status(self) -> dict[str, object]:
        return {
            "hosts": len(self._pools),
            "connections": sum(len(p.connections) for p in self._pools.values()),
            "sessions_in_use": sum(c.in_use for p in self._pools.values() for c in p.connections),
            "connections_opened": self.connects,
        }

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per host label: the connections open and the sessions in use on them (metrics)."""
        found: dict[str, tuple[int, int]] = {}
        for key, pool in self._pools.items():
            address, port = key[0], key[1]  # HostTarget.connection_key's first two
            label = str(address) if port == 22 else f"{address}:{port}"
            connections, busy = found.get(label, (0, 0))
            found[label] = (
                connections + len(pool.connections),
                busy + sum(entry.in_use for entry in pool.connections),
            )
        return found

    async def aclose(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for pool in self._pools.values():
            if pool.opening is not None:
                pool.opening.cancel()
            for entry in pool.connections:
                entry.conn.close()
        for pool in self._pools.values():
            for entry in pool.connections:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(entry.conn.wait_closed(), 2)
        self._pools.clear()


class _NotSent(Exception):
    """The command never reached the host, so trying another connection is safe."""


class _MaybeStarted(Exception):
    """The exec request was sent, and the connection closed before sshd answered it."""


async def _read_bounded(stream: asyncssh.SSHReader[str], limit: int, label: str) -> str:
    chunks: list[str] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > limit:
            raise errors.OutputTooLarge(
                f"answer from {label} exceeded {limit} characters", host=label
            )
        chunks.append(chunk)
    return "".join(chunks)
