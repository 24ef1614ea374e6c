"""SshPool.run after a connection closed as the command was starting: an exec request that
sshd never answered may have started the command, so it is run again only when it only reads."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncssh
import pytest

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.rx import RxTransport
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.transport import HostTarget

TARGET = HostTarget("127.0.0.1", 22, "callgate")
ORIGINATE = commands.originate("150", "+375296254070", "inoffice")


class _Stream:
    def __init__(self, text: str) -> None:
        self.text = text

    async def read(self, size: int) -> str:
        text, self.text = self.text, ""
        return text


class _Process:
    def __init__(self, stdout: str) -> None:
        self.stdin = self
        self.stdout, self.stderr = _Stream(stdout), _Stream("")

    def write_eof(self) -> None:
        pass

    async def wait(self) -> Any:
        return type("Completed", (), {"exit_status": 0})()

    def close(self) -> None:
        pass


class _Connection:
    """One pooled connection whose exec request ends as ``outcome`` says: ``lost`` (the
    connection closes before sshd's answer), ``refused`` (sshd says no, the connection lives)
    or ``ok`` (the command runs and prints ``stdout``)."""

    def __init__(self, outcome: str, stdout: str = "") -> None:
        self.outcome, self.stdout = outcome, stdout
        self.closed = False
        self.execs: list[str] = []

    def is_closed(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    async def create_process(self, command: str, **_options: Any) -> _Process:
        self.execs.append(command)  # the exec request went out
        if self.outcome == "ok":
            return _Process(self.stdout)
        if self.outcome == "lost":
            self.closed = True  # asyncssh then fails the request as if sshd had refused it
        raise asyncssh.ChannelOpenError(
            asyncssh.OPEN_REQUEST_SESSION_FAILED, "Session request failed"
        )


def _pool(*connections: _Connection) -> SshPool:
    pool = SshPool(PoolLimits())
    lent = iter(connections)

    @contextlib.asynccontextmanager
    async def connection(target: HostTarget) -> AsyncIterator[Any]:
        yield next(lent)

    pool.connection = connection  # type: ignore[method-assign]
    return pool


async def test_a_command_that_may_have_started_is_not_run_again() -> None:
    first, second = _Connection("lost"), _Connection("ok")
    with pytest.raises(errors.ConnectionLost) as raised:
        await _pool(first, second).run(TARGET, "asterisk -rx 'channel originate …'")
    assert raised.value.maybe_executed
    assert len(first.execs) == 1 and second.execs == []


async def test_an_idempotent_command_runs_again_on_a_fresh_connection() -> None:
    first, second = _Connection("lost"), _Connection("ok", stdout="1 active channel\n")
    result = await _pool(first, second).run(TARGET, "listing", idempotent=True)
    assert result.stdout == "1 active channel\n"
    assert first.execs == second.execs == ["listing"]


async def test_an_exec_refused_on_a_live_connection_did_not_run() -> None:
    """sshd answered no: nothing ran, so another connection is tried, and nothing is unknown."""
    first, second = _Connection("refused"), _Connection("refused")
    with pytest.raises(errors.SshConnectionFailed) as raised:
        await _pool(first, second).run(TARGET, "asterisk -rx 'channel originate …'")
    assert not raised.value.maybe_executed
    assert len(first.execs) == len(second.execs) == 1


@pytest.mark.parametrize(
    ("cli", "runs"),
    [
        ([ORIGINATE, commands.CHANNELS_CONCISE], 1),
        ([commands.hangup("Local/150@inoffice-00000000;1")], 1),
        ([commands.CHANNELS_CONCISE, commands.CHANNELS_COUNT], 2),
    ],
)
async def test_rx_runs_again_only_what_only_reads(cli: list[str], runs: int) -> None:
    """Through RxTransport: an originate or a hangup is never sent twice, a listing may be."""
    first, second = _Connection("lost"), _Connection("ok", stdout="")
    transport = RxTransport(_pool(first, second))
    with contextlib.suppress(errors.PbxError):
        await transport.run(TARGET, cli)
    assert len(first.execs) + len(second.execs) == runs
