"""A listening console per host: Asterisk's own account of every call, as it happens.

``core show channels concise`` only shows channels while they live, and a poll once a second
hears of a change up to a second late; it cannot say why a leg ended. A remote console at
``core set verbose 3`` is told at once, in Asterisk's words (``pbx.verbose``). One such console
is opened per host that has live calls (the tracker asks for it), on the same pooled SSH
connection as the consoles that run commands; nothing is typed on it after the verbose
level. Its level is its own: the command consoles stay at verbose 0.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator

import asyncssh

from callgate import errors
from callgate.pbx import console_framing as framing
from callgate.pbx.console_session import Console
from callgate.pbx.ssh import SshPool
from callgate.pbx.transport import HostTarget
from callgate.pbx.verbose import Heard, heard

VERBOSE_ON = "core set verbose 3"  # the level of the lines `pbx.verbose` reads
QUIET = 5.0  # seconds without a line after which the listener is told so (it may stop)


class ConsoleListener:
    """Opens listening consoles over ``pool`` (the one the transports share)."""

    def __init__(self, pool: SshPool) -> None:
        self._pool = pool
        self.opened = 0  # listening consoles opened since start (tests, status)

    @contextlib.asynccontextmanager
    async def listen(self, target: HostTarget) -> AsyncIterator[AsyncIterator[Heard | None]]:
        """A console at verbose 3 on ``target``; iterate over what it hears of calls (None:
        ``QUIET`` seconds went by without a line). The iteration ends when the console does.
        Raises a PbxError when none can be opened (the SSH errors already are, through the
        pool; a refused session or console here)."""
        stack = contextlib.AsyncExitStack()
        conn = await stack.enter_async_context(self._pool.connection(target))
        try:
            console = await Console.open(conn, target, stack)
        except (errors.ConsoleUnavailable, asyncssh.Error, OSError) as exc:
            await stack.aclose()
            raise errors.SshConnectionFailed(
                f"no listening console on {target.label} ({str(exc)[:100] or type(exc).__name__})",
                host=target.label,
            ) from None
        except BaseException:
            await stack.aclose()
            raise
        try:
            try:
                answer = await console.execute(VERBOSE_ON, target.command_timeout, 4096)
            except framing.ConsoleGarbage:
                answer = ""  # unreadable: not the answer it must be, reported as such below
            if not answer.startswith("Console verbose"):
                raise errors.UnexpectedOutput(
                    f"unexpected answer to '{VERBOSE_ON}' on {target.label}", host=target.label
                )
            self.opened += 1
            async with contextlib.aclosing(_events(console)) as events:
                yield events
        finally:
            await console.close(polite=True)


async def _events(console: Console) -> AsyncGenerator[Heard | None]:
    async for line in console.listen(QUIET):
        if line is None:
            yield None
        elif (found := heard(line)) is not None:
            yield found
