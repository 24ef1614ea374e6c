"""Call operations on any transport: a verified originate, channels, hangup, version."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict, deque
from dataclasses import dataclass

from callgate import errors
from callgate.pbx import commands
from callgate.pbx.parsing import Channel, parse_channels, parse_hangup, parse_version
from callgate.pbx.transport import HostTarget, PbxTransport

_USAGE_MARK = "There are two ways to use this command"


@dataclass(frozen=True, slots=True)
class Originated:
    channel: Channel  # the first leg's `;1` channel, proof that the PBX took the call
    checks: int  # how many channel listings it took to see it


class PbxClient:
    """Builds call operations from CLI commands; knows nothing of SSH or consoles."""

    def __init__(
        self, transport: PbxTransport, *, verify_window: float = 1.5, poll_interval: float = 0.05
    ) -> None:
        self.transport = transport
        self._verify_window = verify_window
        self._poll_interval = poll_interval
        # Originates for one host and extension are serialized so that the new channel is
        # unambiguous; channels already credited to a call are never credited again (by
        # uniqueid: it carries a timestamp, so it stays unique across an Asterisk restart that
        # starts channel numbers at 0 again).
        self._locks: defaultdict[tuple[str, int, str], asyncio.Lock] = defaultdict(asyncio.Lock)
        self._credited: defaultdict[tuple[str, int, str], deque[str]] = defaultdict(
            lambda: deque(maxlen=256)
        )

    async def originate(
        self, target: HostTarget, code: str, phone: str, *, ring_timeout: int | None = None
    ) -> Originated:
        """Originate and confirm that the first leg's channel appeared within the window.

        `channel originate` prints nothing and exits 0 even when Asterisk created no call, so
        its exit status proves nothing: only the new `Local/<code>@<context>-…;1` does.
        """
        prefix = commands.first_leg_prefix(code, target.dial_context)
        key = (target.address, target.port, prefix)
        async with self._locks[key]:
            started = time.monotonic()
            originate = commands.originate(code, phone, target.dial_context, ring_timeout)
            try:
                answer, listing = await self.transport.run(
                    target, [originate, commands.CHANNELS_CONCISE]
                )
            except errors.PbxError as exc:
                if exc.completed >= 1:  # the originate ran; only the check failed
                    raise _maybe_placed(exc, target) from None
                raise
            if _USAGE_MARK in answer:
                raise errors.UnexpectedOutput(
                    "Asterisk rejected the originate command's usage", host=target.label
                )
            checks = 1
            channel = self._find_new(key, prefix, listing)
            while channel is None and time.monotonic() - started < self._verify_window:
                await asyncio.sleep(self._poll_interval)
                try:
                    (listing,) = await self.transport.run(target, [commands.CHANNELS_CONCISE])
                except errors.PbxError as exc:
                    raise _maybe_placed(exc, target) from None
                checks += 1
                channel = self._find_new(key, prefix, listing)
            if channel is None:
                raise errors.CallNotCreated(
                    f"PBX did not create the call (no channel {prefix}…;1 on {target.label} "
                    f"within {self._verify_window:g} s)",
                    host=target.label,
                )
            self._credited[key].append(channel.uniqueid)
            return Originated(channel, checks)

    def _find_new(self, key: tuple[str, int, str], prefix: str, listing: str) -> Channel | None:
        """The newest uncredited first leg of this extension created within the window."""
        max_age = int(self._verify_window) + 1
        candidates = [
            channel
            for channel in parse_channels(listing, name_prefix=prefix)
            if channel.half == "1"
            and channel.duration <= max_age
            and channel.uniqueid not in self._credited[key]
        ]
        # Asterisk numbers Local channels with a growing hex counter: the highest is newest.
        return max(candidates, key=lambda c: _counter(c.name, prefix), default=None)

    async def channels(self, target: HostTarget) -> list[Channel]:
        (listing,) = await self.transport.run(target, [commands.CHANNELS_CONCISE])
        return parse_channels(listing)

    async def hangup(self, target: HostTarget, channel: str) -> list[str]:
        (answer,) = await self.transport.run(target, [commands.hangup(channel)])
        return parse_hangup(answer)

    async def version(self, target: HostTarget) -> str:
        (answer,) = await self.transport.run(target, [commands.VERSION])
        return parse_version(answer)


def _maybe_placed(exc: errors.PbxError, target: HostTarget) -> errors.PbxError:
    """After the originate ran, any failure to check it leaves the call's outcome unknown."""
    if exc.maybe_executed:
        return exc
    return errors.ConnectionLost(
        f"the originate ran on {target.label} but checking for the call failed "
        f"({exc.message}); the call may exist",
        host=target.label,
    )


def _counter(name: str, prefix: str) -> int:
    try:
        return int(name[len(prefix) : len(prefix) + 8], 16)
    except ValueError:
        return -1
