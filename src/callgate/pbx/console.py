"""The console transport: a few persistent ``asterisk -r -q`` consoles per host.

Over ``-rx`` each CLI command is a process on the host, started through its own SSH session
(about 4 ms each, mostly sshd's); a console opened once answers both commands of a verified
call in about 1-2 ms and starts nothing. Each console (``console_session.Console``) is an SSH
session with a pty on a pooled connection, holding one of its session slots while it lives.

* One caller at a time per console: a caller takes a free console or waits for one. A
  read-only command (a verified originate's listing) is typed ahead together with the
  command before it, so both answers come back in one round trip (``typed_ahead``).
* Each answer is framed by a sentinel and cleaned (``console_framing``): it equals ``-rx``'s.
* A console that ends, hangs past the command timeout or returns garbage is closed; the next
  use opens another (garbage twice in a row sends the host to the fallback, below).
* Never twice: a command that changes the PBX (any not in ``commands.READ_ONLY``) is sent once.
  Once its bytes are written, a timeout, a lost connection or an ended console leave its
  outcome unknown (CommandTimeout, ConnectionLost, ...: ``maybe_executed``), and it is sent
  neither on another console nor through the fallback: the console on the host may have read
  it and passed it to Asterisk even when its echo never came back. Only a command whose bytes
  were never written (the console had already ended, or the write failed), or one that only
  reads, is sent again on a fresh console or through the fallback (``SafeToResend``).
* While a console cannot be opened on a host, that host's commands go through ``fallback``
  (rx): ``status()`` shows the host as ``rx-fallback`` with the reason, a warning is logged,
  and a console is tried again in the background once a back-off has passed (doubling after
  each failure up to ``max_retry_after``), so no call waits for that attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import asyncssh

from callgate import errors
from callgate.errors import ConsoleUnavailable, SafeToResend
from callgate.logs import get_logger
from callgate.pbx import commands
from callgate.pbx import console_framing as framing
from callgate.pbx.console_listener import ConsoleListener
from callgate.pbx.console_session import Console
from callgate.pbx.parsing import checked_answers
from callgate.pbx.registry import Shared
from callgate.pbx.ssh import DEFAULT_OUTPUT_LIMIT, SshPool
from callgate.pbx.transport import HostTarget, PbxTransport
from callgate.pbx.verbose import Heard
from callgate.settings import Transport
from callgate.tasks import cancel_and_wait

log = get_logger("callgate.pbx.console")


@dataclass(eq=False)
class _Host:
    label: str
    slots: asyncio.Semaphore  # held while a console is in use: at most consoles_per_host
    idle: list[Console] = field(default_factory=list)
    live: set[Console] = field(default_factory=set)
    failure: str | None = None  # why consoles are not used now (rx-fallback)
    garbled: int = 0  # unreadable answers in a row: twice means this console is not for us
    retry_at: float = 0.0
    retry_after: float = 0.0
    retrying: asyncio.Task[None] | None = None


class ConsoleTransport:
    """Runs CLI commands on persistent consoles, or through ``fallback`` when it must."""

    def __init__(
        self,
        pool: SshPool,
        fallback: PbxTransport,
        *,
        consoles_per_host: int = 2,
        output_limit: int = DEFAULT_OUTPUT_LIMIT,
        retry_after: float = 30.0,
        max_retry_after: float = 600.0,
        idle_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        listener: ConsoleListener | None = None,
    ) -> None:
        if consoles_per_host < 1:
            raise ValueError("consoles_per_host must be at least 1")
        self._pool, self._fallback = pool, fallback
        self._per_host, self._limit = consoles_per_host, output_limit
        self._retry_after, self._max_retry_after = retry_after, max_retry_after
        self._idle_timeout, self._clock = idle_timeout, clock
        self._listener = listener
        self._hosts: dict[tuple[object, ...], _Host] = {}
        self._next_reap = 0.0
        self.opened = 0  # consoles opened since start (a test and benchmark probe)

    def listen(
        self, target: HostTarget
    ) -> contextlib.AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        """A listening console on ``target`` (``console_listener``), if the service listens."""
        return None if self._listener is None else self._listener.listen(target)

    async def run(
        self, target: HostTarget, cli_commands: Sequence[str], *, notices: list[str] | None = None
    ) -> list[str]:
        """Run the commands in order on one console (see PbxTransport.run)."""
        if not cli_commands:
            raise ValueError("no command to run")
        await self._reap_idle()
        key = (*target.connection_key(), target.asterisk_bin)
        host = self._hosts.setdefault(key, _Host(target.label, asyncio.Semaphore(self._per_host)))
        if host.failure is not None or not all(map(framing.console_safe, cli_commands)):
            self._schedule_retry(host, target)
            return await self._fallback.run(target, cli_commands)
        outputs: list[str] = []
        try:
            async with self._lease(host, target) as lease:
                for batch in typed_ahead(cli_commands):
                    outputs += await self._commands(
                        host, target, lease, batch, notices, len(outputs)
                    )
        except ConsoleUnavailable as exc:  # the rest may be sent (see SafeToResend)
            await self._fail(host, exc.message)
            outputs += checked_answers(exc.answers, host.label, done=len(outputs))
            try:
                return outputs + await self._fallback.run(target, cli_commands[len(outputs) :])
            except errors.PbxError as failed:
                raise failed.after(len(outputs))  # noqa: B904 - ``after`` names its cause
        return outputs

    @contextlib.asynccontextmanager
    async def _lease(self, host: _Host, target: HostTarget) -> AsyncIterator[_Lease]:
        """A console slot of the host for one run(); the console is taken on first use."""
        try:
            async with asyncio.timeout(target.command_timeout):
                await host.slots.acquire()
        except TimeoutError:
            raise errors.PbxBusy(f"no console free on {host.label}", host=host.label) from None
        lease = _Lease()
        try:
            yield lease
        finally:
            if lease.console is not None:
                if lease.console.usable and host.failure is None:
                    lease.console.last_used = self._clock()
                    host.idle.append(lease.console)
                else:
                    await self._discard(host, lease.console)
            host.slots.release()

    async def _commands(
        self,
        host: _Host,
        target: HostTarget,
        lease: _Lease,
        batch: Sequence[str],
        notices: list[str] | None,
        done: int,
    ) -> list[str]:
        """One batch typed at once on the lease's console, taking (or replacing) the console as
        needed; a PbxError's ``completed`` counts the ``done`` commands of the run before the
        batch and those of the batch answered before it."""
        answers: list[str] = []
        for _attempt in (1, 2):
            try:
                if lease.console is None or not lease.console.usable:
                    if lease.console is not None:
                        await self._discard(host, lease.console)
                        lease.console = None
                    lease.console = await self._take(host, target)
                answers += await lease.console.execute_many(
                    batch[len(answers) :], target.command_timeout, self._limit, notices
                )
            except SafeToResend as exc:  # the rest was not written, or only reads: a fresh one
                answers += exc.answers
                continue
            except ConsoleUnavailable as exc:
                raise ConsoleUnavailable(exc.message, host.label, answers + exc.answers) from None
            except framing.ConsoleGarbage as exc:
                # Closed (it is broken) and reopened at the next use; a second unreadable
                # answer in a row means this host's console does not speak as expected.
                host.garbled += 1
                if host.garbled >= 2:
                    await self._fail(host, f"unreadable console output ({exc})")
                raise errors.UnexpectedOutput(
                    f"unreadable answer from the console on {host.label}",
                    host=host.label,
                    completed=done + len(answers),
                ) from None
            except errors.PbxError as exc:  # raised not knowing what of the run came before
                raise exc.after(done + len(answers))  # noqa: B904 - ``after`` names its cause
            host.garbled = 0
            return checked_answers(answers, host.label, done=done)
        why = "the console ended twice before answering a command"
        raise ConsoleUnavailable(why, host.label, answers)

    async def _take(self, host: _Host, target: HostTarget) -> Console:
        """An idle console that still works, else a new one."""
        while host.idle:
            console = host.idle.pop()
            if console.usable:
                return console
            await self._discard(host, console)
        return await self._open(host, target)

    async def _open(self, host: _Host, target: HostTarget) -> Console:
        """A new console; SSH errors reaching the host are the caller's (rx would get them)."""
        for attempt in (1, 2):
            stack = contextlib.AsyncExitStack()
            conn = await stack.enter_async_context(self._pool.connection(target))
            try:
                console = await Console.open(conn, target, stack)
            except (asyncssh.Error, OSError) as exc:
                await stack.aclose()
                if conn.is_closed() and attempt == 1:
                    continue  # a pooled connection that died meanwhile: the pool opens another
                reason = getattr(exc, "reason", "") or type(exc).__name__
                why = f"console session refused: {str(reason)[:100]}"
                raise ConsoleUnavailable(why, host.label) from None
            except BaseException:
                await stack.aclose()
                raise
            console.last_used = self._clock()
            host.live.add(console)
            self.opened += 1
            log.debug("pbx console opened", host=host.label, hostname=console.hostname)
            return console
        raise AssertionError("unreachable")

    async def _discard(self, host: _Host, console: Console, *, polite: bool = False) -> None:
        host.live.discard(console)
        await console.close(polite=polite)

    async def _fail(self, host: _Host, reason: str) -> None:
        """Send the host's commands through the fallback until a console opens again."""
        first = host.failure is None
        host.retry_after = (
            self._retry_after if first else min(self._max_retry_after, 2 * host.retry_after)
        )
        host.failure = reason
        host.retry_at = self._clock() + host.retry_after
        idle, host.idle = host.idle, []
        for console in idle:
            await self._discard(host, console, polite=True)
        report = log.warning if first else log.info
        report(
            "pbx console unavailable, using rx",
            host=host.label,
            reason=reason,
            retry_in_s=round(host.retry_after, 1),
        )

    def _schedule_retry(self, host: _Host, target: HostTarget) -> None:
        """Start one background attempt at a console once the host's back-off has passed."""
        if host.failure is None or host.retrying is not None or self._clock() < host.retry_at:
            return
        host.retrying = asyncio.create_task(self._retry(host, target))

    async def _retry(self, host: _Host, target: HostTarget) -> None:
        """Try a console again in the background; calls keep using the fallback meanwhile."""
        try:
            console = await self._open(host, target)
        except errors.CallgateError as exc:
            await self._fail(host, exc.message)
        except Exception as exc:  # never let a background attempt die unread
            await self._fail(host, f"{type(exc).__name__} while opening a console")
        else:
            host.failure, host.retry_after, host.garbled = None, 0.0, 0
            host.idle.append(console)
            log.info("pbx console restored", host=host.label)
        finally:
            host.retrying = None

    async def _reap_idle(self) -> None:
        """Close consoles nobody used for ``idle_timeout``: hosts no longer called let go."""
        now = self._clock()
        if now < self._next_reap:
            return
        self._next_reap = now + self._idle_timeout / 10
        for host in list(self._hosts.values()):
            for console in [c for c in host.idle if now - c.last_used > self._idle_timeout]:
                host.idle.remove(console)
                await self._discard(host, console, polite=True)

    def status(self) -> dict[str, object]:
        """The pool's counters and, per host, `console` or `rx-fallback` with the reason."""
        now = self._clock()
        hosts: dict[str, object] = {}
        for host in self._hosts.values():
            entry: dict[str, object] = {
                "mode": "console" if host.failure is None else "rx-fallback",
                "consoles": len(host.live),
                "idle": len(host.idle),
            }
            if host.failure is not None:
                entry["reason"] = host.failure
                entry["retry_in_s"] = round(max(0.0, host.retry_at - now), 1)
            hosts[host.label] = entry
        # The fallback's keys (the shared pool's counters) stay at the top, where /api/status
        # has always shown them; the consoles get their own section.
        return {
            **self._fallback.status(),
            "transport": "console",
            "consoles": {"per_host": self._per_host, "opened": self.opened, "hosts": hosts},
        }

    def usage(self) -> dict[str, tuple[int, int]]:
        """Per host label: the consoles open and those running a command now (metrics)."""
        found: dict[str, tuple[int, int]] = {}
        for host in self._hosts.values():
            consoles, busy = found.get(host.label, (0, 0))
            found[host.label] = (consoles + len(host.live), busy + len(host.live) - len(host.idle))
        return found

    async def aclose(self) -> None:
        """Close every console, then the fallback (and with it the shared pool)."""
        await cancel_and_wait(*(host.retrying for host in self._hosts.values()))
        for host in list(self._hosts.values()):
            for console in list(host.live):
                await self._discard(host, console, polite=True)
            host.idle.clear()
        self._hosts.clear()
        await self._fallback.aclose()


def build(shared: Shared) -> ConsoleTransport:
    """The console transport of a service, falling back on its rx one, with a listening
    console per host when CALLGATE_TRACK_LISTEN is on (its registration: ``callgate.wiring``)."""
    settings = shared.settings
    return ConsoleTransport(
        shared.pool,
        shared.transport(Transport.RX.value),
        idle_timeout=settings.ssh_idle_timeout,
        listener=ConsoleListener(shared.pool) if settings.track_listen else None,
    )


@dataclass(eq=False)
class _Lease:
    console: Console | None = None


def typed_ahead(cli_commands: Sequence[str]) -> list[list[str]]:
    """The commands cut into batches typed at once: each command with the read-only ones after
    it (a verified originate's listing). A read-only command is harmless to run even when the
    one before it failed or timed out, so typing it ahead saves a round trip and risks nothing;
    a command that changes something is never typed before the answer of the one before it."""
    batches: list[list[str]] = []
    for command in cli_commands:
        if batches and command in commands.READ_ONLY:
            batches[-1].append(command)
        else:
            batches.append([command])
    return batches
