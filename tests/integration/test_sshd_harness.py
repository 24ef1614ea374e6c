"""The real-sshd harness works as the other integration tests expect."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.support.netfaults import Blackhole, refused_port
from tests.support.sshd import SimUser, SshdServer

pytestmark = pytest.mark.sshd


def _isolated(**options: Any) -> dict[str, Any]:
    """asyncssh options that ignore ~/.ssh keys and config and the SSH agent."""
    defaults: dict[str, Any] = {
        "known_hosts": None,
        "agent_path": None,
        "config": [],
        "client_keys": None,
    }
    return defaults | options


async def _connect(server: SshdServer, **options: Any) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        server.host, server.port, username=server.username, **_isolated(**options)
    )


def _known_hosts(server: SshdServer, key: str) -> asyncssh.SSHKnownHosts:
    return asyncssh.import_known_hosts(f"[{server.host}]:{server.port} {key}\n")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (zombies awaiting their reaper count as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def test_password_login_runs_command(sshd: SshdServer) -> None:
    """Password login works and commands run as callgate-sim."""
    async with await _connect(sshd, password=sshd.password) as conn:
        result = await conn.run("id -un", check=True)
    assert result.stdout == "callgate-sim\n"
    assert sshd.count_log("Accepted password for callgate-sim") == 1


async def test_key_login(sshd: SshdServer) -> None:
    """The session's client key is authorized and no password is sent."""
    async with await _connect(sshd, client_keys=[str(sshd.client_key_path)]) as conn:
        result = await conn.run("id -un", check=True)
    assert result.stdout == "callgate-sim\n"
    assert sshd.count_log("Accepted publickey for callgate-sim") == 1
    assert sshd.count_log("password") == 0


async def test_asterisk_found_on_path(sshd: SshdServer) -> None:
    """A program in bin_dir is what a plain `asterisk -rx ...` runs."""
    sshd.add_program("asterisk", '#!/bin/sh\necho "fake asterisk: $*"\n')
    async with await _connect(sshd, password=sshd.password) as conn:
        result = await conn.run("asterisk -rx x", check=True)
        where = await conn.run("command -v asterisk", check=True)
    assert result.stdout == "fake asterisk: -rx x\n"
    assert where.stdout == f"{sshd.bin_dir}/asterisk\n"


async def test_restart_keeps_port_and_host_key(sshd: SshdServer) -> None:
    """restart() comes back on the same port, presenting the same host key."""
    port, key, old_pids = sshd.port, sshd.host_public_key, sshd.process_ids()
    sshd.restart()
    assert sshd.port == port
    assert sshd.host_public_key == key
    assert sshd.process_ids()[0] != old_pids[0]
    known = _known_hosts(sshd, key)
    async with await _connect(sshd, password=sshd.password, known_hosts=known) as conn:
        assert (await conn.run("true")).exit_status == 0


async def test_replace_host_key_changes_key(sshd: SshdServer) -> None:
    """replace_host_key() serves a new key, which a client pinned to the old one rejects."""
    old_key = sshd.host_public_key
    sshd.replace_host_key()
    assert sshd.host_public_key != old_key
    assert sshd.host_public_key.startswith("ssh-ed25519 ")
    with pytest.raises(asyncssh.HostKeyNotVerifiable):
        await _connect(sshd, password=sshd.password, known_hosts=_known_hosts(sshd, old_key))
    new_known = _known_hosts(sshd, sshd.host_public_key)
    async with await _connect(sshd, password=sshd.password, known_hosts=new_known) as conn:
        assert (await conn.run("true")).exit_status == 0


async def test_wrong_password_refused(sshd: SshdServer) -> None:
    """A wrong password is refused, and sshd logs the failure."""
    with pytest.raises(asyncssh.PermissionDenied):
        await _connect(sshd, password=sshd.password + "-wrong")
    assert sshd.count_log("Failed password for callgate-sim") >= 1
    assert sshd.count_log("Accepted") == 0


async def test_blackhole_times_out_handshake() -> None:
    """A server that accepts but never speaks makes connect_timeout=1 fire after ~1 s."""
    async with Blackhole() as hole:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await asyncssh.connect(
                "127.0.0.1", hole.port, username="x", connect_timeout=1, **_isolated()
            )
        elapsed = time.monotonic() - started
        assert hole.accepted == 1  # TCP connected: it was the SSH handshake that timed out
    assert 0.9 <= elapsed < 2.0


async def test_refused_port_fails_fast() -> None:
    """Connecting to refused_port() fails at once with ConnectionRefusedError."""
    started = time.monotonic()
    with pytest.raises(ConnectionRefusedError):
        await asyncssh.connect("127.0.0.1", refused_port(), username="x", **_isolated())
    assert time.monotonic() - started < 0.5


async def test_eleventh_session_refused_by_max_sessions(sshd: SshdServer) -> None:
    """On one connection 10 sessions open and the 11th gets ChannelOpenError (MaxSessions 10)."""
    async with await _connect(sshd, password=sshd.password) as conn:
        sessions = await asyncio.gather(*(conn.create_process("cat") for _ in range(10)))
        with pytest.raises(asyncssh.ChannelOpenError) as refused:
            await conn.create_process("cat")
        assert refused.value.code == asyncssh.OPEN_CONNECT_FAILED
        sessions[0].stdin.write("still open\n")  # the first 10 are unaffected
        assert await sessions[0].stdout.readline() == "still open\n"
        for session in sessions:
            session.stdin.write_eof()
        await asyncio.gather(*(session.wait() for session in sessions))
    assert sshd.count_log("no more sessions") == 1


async def test_kill_ends_every_process(sshd: SshdServer) -> None:
    """kill() ends the listener, the connection processes and the user's commands."""
    conn = await _connect(sshd, password=sshd.password)
    try:
        await conn.create_process("cat")
        pids = sshd.process_ids()
        assert len(pids) >= 4  # listener, privileged monitor, user's sshd, cat
        sshd.kill()
        async with asyncio.timeout(5):
            await conn.wait_closed()  # the client sees the connection drop
    finally:
        conn.close()
    assert not sshd.running
    assert [pid for pid in pids if _alive(pid)] == []


def test_start_is_fast_and_reports_death(sshd_user: SimUser, sshd: SshdServer) -> None:
    """A new server starts in well under a second; one that cannot bind raises with its log."""
    started = time.monotonic()
    with SshdServer(sshd_user) as server:
        elapsed = time.monotonic() - started
        assert server.running
    assert elapsed < 1.0, f"sshd took {elapsed:.3f}s to start"
    clash = SshdServer(sshd_user, port=sshd.port)  # that port is taken by the fixture's sshd
    with pytest.raises(RuntimeError, match="Address already in use"), clash:
        pass
    assert not clash.dir.exists()
