"""Call operations on any transport: a verified originate, channels, hangup, version."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from callgate import errors, metrics
from callgate.pbx import commands, originate_check
from callgate.pbx.parsing import Channel, Listing, parse_channels, parse_hangup, parse_version
from callgate.pbx.transport import EventSource, HostTarget, PbxTransport
from callgate.pbx.verbose import Heard, Said

_USAGE_MARK = "There are two ways to use this command"
# The first re-check of an unstarted pair: a good call's dialplan starts about 1 ms after the
# originate on a real Asterisk 22.7 (recordings/asterisk/console-verbose-outcomes.repr.txt).
_FIRST_PAUSE = 0.001
# How long the check waits for a listening console to hear the new pair running before it
# lists again; a good call's line comes about 1 ms after the originate.
HEARD_WAIT = 0.05
_HEARD_KEPT = 4096  # pairs remembered as heard running, per client


@dataclass(frozen=True, slots=True)
class Originated:
    channel: Channel  # the first leg's `;1` channel, seen progressing: the PBX took the call
    checks: int  # how many channel listings it took to see it
    took: float  # seconds from sending the originate to this verdict


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
        # A lock lives while someone holds or waits for it (`_one_at_a_time`): one per
        # extension ever called would otherwise stay for the process's life.
        self._locks: dict[tuple[str, int, str], tuple[asyncio.Lock, list[int]]] = {}
        # Per (host, extension): the uniqueids credited, and when the last one was. A channel
        # older than the window is never a candidate (`_find_new`), so a key idle for twice
        # that is forgotten (`_credit`): the map holds the keys of recent calls only.
        self._credited: dict[tuple[str, int, str], tuple[deque[str], list[float]]] = {}
        self._forget_after = 2.0 * (int(verify_window) + 2)
        self._heard = HeardProgress()

    @asynccontextmanager
    async def _one_at_a_time(self, key: tuple[str, int, str]) -> AsyncIterator[None]:
        """Hold ``key``'s lock; the last one to leave drops it."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def _credit(self, key: tuple[str, int, str], uniqueid: str) -> None:
        """Remember ``uniqueid`` as a call's; forget the keys idle for ``_forget_after``.

        A key credited again moves to the end, so the oldest are first: pruning stops at the
        first key still in use, amortised constant time a call."""
        now = time.monotonic()
        found = self._credited.pop(key, None)
        uniqueids, last = found if found is not None else (deque(maxlen=256), [now])
        uniqueids.append(uniqueid)
        last[0] = now
        self._credited[key] = (uniqueids, last)
        while self._credited:
            oldest = next(iter(self._credited))
            if now - self._credited[oldest][1][0] < self._forget_after:
                break
            del self._credited[oldest]

    def listening(self, target: HostTarget, on: bool) -> None:
        """Whether a listening console on ``target`` hands its lines to ``heard`` now."""
        self._heard.listening(target, on)

    def heard(self, target: HostTarget, line: Heard) -> None:
        """A line a listening console on ``target`` heard (see ``HeardProgress``)."""
        self._heard.heard(target, line)

    async def originate(
        self, target: HostTarget, code: str, phone: str, *, ring_timeout: int | None = None
    ) -> Originated:
        """Originate, then confirm that the dialplan took the call (``originate_check``).

        `channel originate` prints nothing and exits 0 even when Asterisk created no call, and
        for a wrong context or extension it does create the first leg's pair, in exactly the
        states of a good call, for a few milliseconds (``recordings/asterisk/README.md``, fact
        1). So the pair alone proves nothing: only progress does. The listing is typed right
        behind the originate; while it shows the new pair unstarted, it is asked again (soon,
        then less and less often) until the pair progresses (the call is placed), vanishes or
        Asterisk says why it refused the call (CallNotCreated), or the window ends.
        """
        prefix = commands.first_leg_prefix(code, target.dial_context)
        key = (target.address, target.port, prefix)
        refusal = originate_check.refusal_mark(code, target.dial_context)
        async with self._one_at_a_time(key):
            started = time.monotonic()
            originate = commands.originate(code, phone, target.dial_context, ring_timeout)
            notices: list[str] = []
            try:
                answer, listing = await self.transport.run(
                    target, [originate, commands.CHANNELS_CONCISE], notices=notices
                )
            except errors.PbxError as exc:
                if exc.completed >= 1:  # the originate ran; only the check failed
                    raise _maybe_placed(exc, target) from None
                raise
            timed = metrics.host(target.label)
            timed.originate.observe(time.monotonic() - started)
            if _USAGE_MARK in answer:
                raise errors.CallNotCreated(
                    "PBX did not create the call (Asterisk rejected the originate command's usage)",
                    host=target.label,
                )
            checks, pause, pending, unsure = 1, 0.0, None, False
            while True:
                listed = parse_channels(listing, name_prefix=prefix)
                leg = self._find_new(key, prefix, listed, pending)
                if leg is not None and originate_check.progressed(leg, listed):
                    self._credit(key, leg.uniqueid)
                    took = time.monotonic() - started
                    timed.verified.observe(took)
                    return Originated(leg, checks, took)
                # The verdict is the pair seen, then gone from a listing that hides nothing;
                # Asterisk's notice only gives the reason: its words could be a caller id's.
                if leg is None and pending is not None and listed.conclusive:
                    said = _said(notices, refusal)
                    raise _not_created(
                        said or f"{pending.name} ended before the dialplan ran it", target
                    )
                pending, unsure = leg or pending, unsure or not listed.conclusive
                if time.monotonic() - started >= self._verify_window:
                    said = _said(notices, refusal)
                    raise _unconfirmed(prefix, pending, unsure, said, self._verify_window, target)
                if await self._heard.progress(target, leg, started, pause):
                    assert leg is not None
                    self._credit(key, leg.uniqueid)  # its dialplan was heard running
                    took = time.monotonic() - started
                    timed.verified.observe(took)
                    return Originated(leg, checks, took)
                pause = min(self._poll_interval, max(_FIRST_PAUSE, 2 * pause))
                try:
                    (listing,) = await self.transport.run(
                        target, [commands.CHANNELS_CONCISE], notices=notices
                    )
                except errors.PbxError as exc:
                    raise _maybe_placed(exc, target) from None
                checks += 1

    def _find_new(
        self, key: tuple[str, int, str], prefix: str, listed: Listing, pending: Channel | None
    ) -> Channel | None:
        """The first leg being verified: the pending one while it is listed, else the newest
        uncredited first leg of this extension created within the window."""
        if pending is not None:
            return next((c for c in listed if c.uniqueid == pending.uniqueid), None)
        max_age = int(self._verify_window) + 1
        credited = self._credited[key][0] if key in self._credited else ()
        candidates = [
            channel
            for channel in listed
            if channel.half == "1"
            and channel.duration <= max_age
            and channel.uniqueid not in credited
        ]
        # Asterisk numbers Local channels with a growing hex counter: the highest is newest.
        return max(candidates, key=lambda c: _counter(c.name, prefix), default=None)

    def listen(
        self, target: HostTarget
    ) -> AbstractAsyncContextManager[AsyncIterator[Heard | None]] | None:
        """What the host says of its calls as it happens (``transport.EventSource``), or None
        when its transport cannot listen."""
        if isinstance(self.transport, EventSource):
            return self.transport.listen(target)
        return None

    async def channels(self, target: HostTarget) -> Listing:
        (listing,) = await self.transport.run(target, [commands.CHANNELS_CONCISE])
        return parse_channels(listing)

    async def hangup(self, target: HostTarget, channel: str) -> list[str]:
        (answer,) = await self.transport.run(target, [commands.hangup(channel)])
        return parse_hangup(answer)

    async def version(self, target: HostTarget) -> str:
        (answer,) = await self.transport.run(target, [commands.VERSION])
        return parse_version(answer)


class HeardProgress:
    """Pairs whose dialplan a listening console heard running, for the originate's check.

    On a host with a listening console (``console_listener``, kept by the tracker) Asterisk
    prints, about a millisecond after a good originate, the new ``;2`` leg running the dialplan
    (``-- Executing [150@inoffice:1] NoOp("Local/150@inoffice-00000061;2", …)``) or its ``;1``
    ringing (``recordings/asterisk/console-verbose-outcomes.txt``): the same evidence a later
    listing would show, without another round trip. A refused pair prints nothing of the kind.
    Lines heard before the check asked count when they came after its originate was sent.
    """

    def __init__(self) -> None:
        self._listened: set[tuple[str, int]] = set()
        self._seen: dict[tuple[str, int, str], float] = {}  # (host, pair base) -> when heard
        self._waiters: dict[tuple[str, int, str], asyncio.Future[None]] = {}

    def listening(self, target: HostTarget, on: bool) -> None:
        host = (target.address, target.port)
        if on:
            self._listened.add(host)
        else:
            self._listened.discard(host)

    def heard(self, target: HostTarget, line: Heard) -> None:
        if line.said is Said.REFUSED or not line.channel:
            return
        key = (target.address, target.port, line.channel.rsplit(";", 1)[0])
        now = time.monotonic()
        if len(self._seen) >= _HEARD_KEPT:  # oldest first: dicts keep insertion order
            for old in list(self._seen)[: _HEARD_KEPT // 4]:
                del self._seen[old]
        self._seen[key] = now
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def progress(
        self, target: HostTarget, leg: Channel | None, since: float, pause: float
    ) -> bool:
        """Whether ``leg``'s pair was heard running since ``since``: at once, or within
        ``HEARD_WAIT`` on a listened host; else False after ``pause`` (the listings' pace),
        and at once when there is no leg yet to hear of."""
        if leg is None:
            await asyncio.sleep(pause)
            return False
        key = (target.address, target.port, leg.base_name)
        if self._seen.get(key, -math.inf) >= since:
            return True
        if (target.address, target.port) not in self._listened:
            await asyncio.sleep(pause)
            return False
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        try:
            async with asyncio.timeout(max(pause, HEARD_WAIT)):
                await asyncio.shield(waiter)
        except TimeoutError:
            return False
        finally:
            if self._waiters.get(key) is waiter:
                del self._waiters[key]
        return self._seen.get(key, -math.inf) >= since


def _not_created(why: str, target: HostTarget) -> errors.CallNotCreated:
    return errors.CallNotCreated(f"PBX did not create the call ({why})", host=target.label)


def _said(notices: list[str], refusal: str) -> str | None:
    """Asterisk's reason for refusing the call, in its words, if a console showed it."""
    said = next((line for line in notices if refusal in line), None)
    return None if said is None else originate_check.log_text(said)


def _unconfirmed(
    prefix: str,
    pending: Channel | None,
    unsure: bool,
    said: str | None,
    window: float,
    target: HostTarget,
) -> errors.PbxError:
    """The window ended: no channel at all in listings that hid nothing (nothing was created),
    or one that never started, or listings that may have hidden ours (unknown: the call may
    still go on)."""
    if pending is None and not unsure:
        missing = f"no channel {prefix}…;1 on {target.label} within {window:g} s"
        return _not_created(said or missing, target)
    seen = pending.name if pending else f"a channel {prefix}…;1 (listings had fragments)"
    return errors.CallUnconfirmed(
        f"the PBX may have created {seen} but its dialplan was not seen starting within "
        f"{window:g} s; the call may exist",
        host=target.label,
    )


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
