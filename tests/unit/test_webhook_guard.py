"""Where a delivery may connect (`calls/webhook_http.py`): a host is resolved once per
connection, every address checked, and the connection made to an address that was checked,
never to the name again (a name that answers otherwise the second time cannot lead past it)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import pytest

from callgate.calls.webhook_http import Guarded
from callgate.calls.webhooks import TargetRefused


class Recording(httpcore.AsyncNetworkBackend):
    """Records where it is asked to connect, and connects nowhere."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's signature)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append((host, port))
        raise httpcore.ConnectError("connects nowhere (a test)")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def answering(monkeypatch: pytest.MonkeyPatch, *answers: list[str]) -> None:
    """The resolver answers each lookup with the next list of addresses."""
    pending: Iterator[list[str]] = iter(answers)

    async def getaddrinfo(host: str, port: int, **_: Any) -> list[Any]:
        family = socket.AF_INET
        return [(family, socket.SOCK_STREAM, 6, "", (a, port)) for a in next(pending)]

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "host", ["localhost", "127.0.0.1", "10.1.2.3", "::1", "169.254.169.254", "100.64.0.1"]
)
async def test_a_private_target_is_refused_before_any_connection(host: str) -> None:
    inner = Recording()
    with pytest.raises(TargetRefused):
        await Guarded(False, inner).connect_tcp(host, 80)
    assert inner.asked == []


async def test_the_connection_goes_to_the_address_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The name's first answer is public, its next one loopback (DNS rebinding): the check and
    # the connection take the same lookup, so the loopback answer is never asked for.
    answering(monkeypatch, ["93.184.216.34"], ["127.0.0.1"])
    inner = Recording()
    with pytest.raises(httpcore.ConnectError):
        await Guarded(False, inner).connect_tcp("hooks.example", 443)
    assert inner.asked == [("93.184.216.34", 443)]


async def test_each_checked_address_is_tried_in_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    answering(monkeypatch, ["93.184.216.34", "93.184.216.35"])
    inner = Recording()
    with pytest.raises(httpcore.ConnectError):
        await Guarded(False, inner).connect_tcp("hooks.example", 443)
    assert inner.asked == [("93.184.216.34", 443), ("93.184.216.35", 443)]


async def test_a_name_with_one_private_address_is_refused_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answering(monkeypatch, ["93.184.216.34", "192.168.1.10"])
    inner = Recording()
    with pytest.raises(TargetRefused, match="private"):
        await Guarded(False, inner).connect_tcp("hooks.example", 443)
    assert inner.asked == []


async def test_private_targets_go_through_when_the_operator_allows_them() -> None:
    inner = Recording()
    with pytest.raises(httpcore.ConnectError):
        await Guarded(True, inner).connect_tcp("localhost", 8080)
    assert inner.asked == [("localhost", 8080)]  # the name as given: nothing is checked
