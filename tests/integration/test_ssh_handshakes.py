"""SSH handshakes are bounded without letting a dead host slow the others (``SshPool``).

Each host (address and port, whatever the login) gets at most ``host_handshakes`` at once, and
a host whose last handshake timed out waits for a budget of its own: a blackholed host's
attempts, which hold their slot until the connect timeout, cannot starve a healthy host.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from pydantic import SecretStr

from callgate import errors
from callgate.pbx.ssh import PoolLimits, SshPool
from callgate.pbx.ssh_connect import open_connection
from callgate.pbx.transport import HostTarget
from callgate.settings import HostKeyPolicy
from tests.support.netfaults import Blackhole
from tests.support.sshd import SshdServer

pytestmark = pytest.mark.sshd


async def eventually(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _target(port: int, user: str, password: str, timeout: float) -> HostTarget:
    return HostTarget(
        "127.0.0.1",
        port,
        user,
        password=SecretStr(password),
        host_key_policy=HostKeyPolicy.OFF,
        connect_timeout=timeout,
    )


async def test_one_host_cannot_take_every_handshake_slot(sshd: SshdServer) -> None:
    """A blackholed host under five logins holds 2 of 3 handshake slots: a healthy one gets in."""
    pool = SshPool(PoolLimits(max_handshakes=3, host_handshakes=2))
    healthy = _target(sshd.port, sshd.username, sshd.password, 3)
    async with Blackhole() as hole:
        dead = [_target(hole.port, f"user{n}", "x", 3) for n in range(5)]
        waiting = [asyncio.create_task(pool.run(target, "true")) for target in dead]
        try:
            await eventually(lambda: hole.accepted >= 2)
            started = time.monotonic()
            result = await pool.run(healthy, "echo ok")
            elapsed = time.monotonic() - started
            assert result.stdout == "ok\n" and elapsed < 2.0, elapsed  # not 3 s behind them
            assert hole.accepted == 2  # the other three logins wait for the host's own slots
            failures = await asyncio.gather(*waiting, return_exceptions=True)
        finally:
            await pool.aclose()
    assert all(isinstance(f, errors.SshConnectTimeout | errors.PbxBusy) for f in failures)


async def test_hosts_that_timed_out_wait_in_their_own_queue(sshd: SshdServer) -> None:
    """After a timeout a dead host's handshakes queue apart: the only healthy slot stays free."""
    pool = SshPool(PoolLimits(max_handshakes=1, host_handshakes=1))
    healthy = _target(sshd.port, sshd.username, sshd.password, 3)
    async with Blackhole() as first, Blackhole() as second:
        for hole in (first, second):  # first contact: each takes the one slot, and times out
            with pytest.raises(errors.SshConnectTimeout):
                await pool.run(_target(hole.port, "u", "x", 0.3), "true")
        retries = [
            asyncio.create_task(pool.run(_target(hole.port, "u", "x", 3), "true"))
            for hole in (first, second)
        ]
        try:
            await eventually(lambda: first.accepted + second.accepted >= 3)
            started = time.monotonic()
            result = await pool.run(healthy, "echo ok")
            assert result.stdout == "ok\n" and time.monotonic() - started < 2.0
            assert first.accepted + second.accepted == 3  # one retry waits for the slow slot
            await asyncio.gather(*retries, return_exceptions=True)
        finally:
            await pool.aclose()


async def test_connections_use_aes_gcm(sshd: SshdServer) -> None:
    """With a stock OpenSSH the connection is encrypted with AES-GCM, not ChaCha20-Poly1305:
    the cheaper of the two for both ends, per packet (see ``ssh_connect.CIPHERS``)."""
    target = _target(sshd.port, sshd.username, sshd.password, 5)
    conn, _key = await open_connection(target, keepalive_interval=15, host_keys=None)
    try:
        assert conn.get_extra_info("send_cipher") == "aes128-gcm@openssh.com"
        assert conn.get_extra_info("recv_cipher") == "aes128-gcm@openssh.com"
    finally:
        conn.close()
