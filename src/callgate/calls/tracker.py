"""CallTracker: follows every verified call to its end, one channel listing per host per tick.

One polling task per host that has live calls runs ``core show channels concise`` at most once
per ``interval``, however many calls the host has, and ends when the host has none left. The
listing is split between the calls (``channels.assign_channels``), ``channels.derive`` says where
each call is, and each transition is stored by compare-and-set (``history.History``),
then published to subscribers; the transitions of one tick are stored in one transaction
(``history.store_histories``). A failed write is retried at the next tick: a database
outage delays the history, it never stops the tracking.

Beside the polling, a console host has a listening console at verbose 3 (``_listen``; opened
when a call is about to be placed there and kept ``LISTEN_LINGER`` after its last call): each
line Asterisk prints about a followed call moves it at once (``hearing.hear``) and says why a
side ended; the poller stores those moves as soon as they are heard. The listing stays the
safety net, and the only source on rx hosts or while no listening console can be had.

Several instances on one database (``leases``, `calls.leases`): a host's calls are followed
only by the instance holding the host's lease. A call placed here on a host another instance
owns is left to that instance, which finds it (``_adopt_owned``, every ``adopt_every``); every
``takeover_every`` the hosts with live calls whose lease has expired (their owner died) are
taken and their calls resumed; a lease lost stops the following of that host's calls at once,
and every move is fenced with the lease's token (`call_tracking.move`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from callgate import errors, metrics
from callgate.calls.channels import CallChannels, assign_channels, derive
from callgate.calls.hearing import hear
from callgate.calls.history import (
    History,
    Subscription,
    Transition,
    store_histories,
    unfollowable,
)
from callgate.calls.leases import Leases
from callgate.calls.targets import build_target
from callgate.db.call_tracking import end_stale, live_calls
from callgate.db.calls import CallRecord, get_calls_with_hosts
from callgate.db.executor import Database
from callgate.db.guard import db_step
from callgate.db.hosts import get_host
from callgate.db.leases import owned_calls_on, owned_live_calls, unowned_hosts
from callgate.db.models import utcnow
from callgate.domain.hosts import HostRow
from callgate.domain.outcomes import Seen, SideOutcome, Sides, Words, decide
from callgate.domain.states import RANK, CallState, steps
from callgate.logs import get_logger
from callgate.pbx.client import PbxClient
from callgate.pbx.parsing import Channel
from callgate.pbx.transport import HostTarget
from callgate.pbx.verbose import Heard, Said
from callgate.redaction import mask_phone
from callgate.settings import Settings
from callgate.tasks import cancel_and_wait

log = get_logger("callgate.tracker")
NOT_WATCHED = "channels gone while not watched"
# Older live rows are not calls any more (rows from before tracking existed, say): ended in
# bulk at start, never loaded and polled one by one.
STALE_AFTER = timedelta(hours=6)
STALE = "still live in the database at start, created over 6 h before: not followed"
HostKey = tuple[str, int]
LISTEN_RETRY = 5.0  # seconds before a listening console that could not be had is tried again
LISTEN_LINGER = 300.0  # seconds a host's listening console stays after its last call
UNCLAIMED_KEEP = 5.0  # seconds a heard line waits for its call to be tracked (_Ear)
# Seconds after a pair nobody here follows is heard on a host this instance owns before the
# calls placed there by other instances are looked for (`_heard_unknown`).
ADOPT_SOON = 0.05


@dataclass(eq=False)
class _Call:
    """What the tracker knows of one call (``states.Followed`` for the matching)."""

    call_id: str
    target: HostTarget | None
    first_base: str  # "Local/150@inoffice-0000000a"
    phone: str
    started: float  # loop time of the originate (estimated from created_at when resumed)
    first_uniqueid: str = ""  # "" until seen (a resumed call)
    state: CallState = CallState.INITIATED  # as the tracker sees it
    history: History = field(default_factory=History)  # as the database holds it, and pending
    customer_base: str = ""
    resumed: bool = False
    enterprise_number: str | None = None  # whose call (routes its transitions)
    seen: bool = False
    cancel_reason: str | None = None
    # What Asterisk itself said of each side (its verbose console lines), for whoever hears
    # it to set before the call ends: answered, busy, congestion or no_answer, and the ms of
    # "Nobody picked up in 5000 ms". At the end they win over what the listings suggest for
    # that side (`outcomes.Words`, `outcomes.decide`).
    agent_said: SideOutcome | None = None
    customer_said: SideOutcome | None = None
    customer_ring_ms: int | None = None
    # When each phase began as the tracker saw it (loop time; None: not seen), set by _move.
    agent_answered_at: float | None = None
    customer_seen_at: float | None = None
    connected_at: float | None = None
    extension: str = field(init=False)
    customer_prefix: str = field(init=False)

    @property
    def answered(self) -> float:
        """When the agent was seen answering (inf: not yet): orders the matching."""
        return math.inf if self.agent_answered_at is None else self.agent_answered_at

    def __post_init__(self) -> None:
        self.extension = self.first_base.partition("/")[2].partition("@")[0]
        context = self.target.dial_context if self.target else ""
        self.customer_prefix = f"Local/{self.phone}@{context}-"


@dataclass(eq=False)
class _Host:
    target: HostTarget
    calls: dict[str, _Call] = field(default_factory=dict)
    failing_since: float | None = None
    heard: asyncio.Event = field(default_factory=asyncio.Event)  # moves heard, to store now


@dataclass(eq=False)
class _Ear:
    """A host's listening console (``_listen``): kept while the host has calls and for
    ``LISTEN_LINGER`` after, so that the next call's first lines are heard too."""

    target: HostTarget
    quiet_since: float
    heard_at: float | None = None  # loop time of the last line while the console is open
    # Lines no followed call claimed yet, by pair base: a call's first lines may come before
    # the originate's check is done and the call tracked (an agent busy at once), and an
    # adopted call's customer may have rung before; ``_replay`` applies its first pair's, and
    # those of other pairs that concern it once it is known (its customer's).
    unclaimed: dict[str, list[tuple[float, Heard]]] = field(default_factory=dict)


class CallTracker:
    """Follows calls from their verified originate to their end (see the module docstring)."""

    def __init__(
        self,
        pbx: PbxClient,
        database: Database,
        settings: Settings,
        *,
        interval: float = 1.0,
        lost_after: float = 60.0,
        listen: bool = True,
        publish_stored: bool = True,
        leases: Leases | None = None,
        adopt_every: float = 0.5,
        takeover_every: float = 2.0,
    ) -> None:
        self._pbx, self._database, self._settings = pbx, database, settings
        # False: the subscribers are fed from the event log instead (`calls.shared_events`,
        # several instances on PostgreSQL), through `publish`; what this tracker stores
        # reaches them that way too, once.
        self._publish_stored = publish_stored
        self.interval, self.lost_after = interval, lost_after
        self.listen = listen  # a listening console per console host with live calls
        self._ears: dict[HostKey, _Ear] = {}
        self.queries: Counter[str] = Counter()  # channel listings sent, per host label
        self._hosts: dict[HostKey, _Host] = {}
        self._last_query: dict[HostKey, float] = {}
        self._listed: dict[HostKey, float] = {}  # when each host's last listing answered
        self._unstored: dict[str, _Call] = {}  # ended calls whose history is not all stored
        self._tasks: set[asyncio.Task[None]] = set()
        # By enterprise number; None: every enterprise's transitions (`calls watch` ...).
        self._subscribers: dict[str | None, set[Subscription]] = {}
        self._db_slots = asyncio.Semaphore(4)  # leave the pool to the call requests
        self._stopped = False
        # Several instances (see the module docstring); None: this process follows every call.
        self._leases = leases
        self.adopt_every, self.takeover_every = adopt_every, takeover_every
        # Calls placed here not followed yet: waiting for the loop's next turn (`track`) or
        # for their host's lease (`_claim`).
        self._claiming: set[str] = set()
        self._owns = False  # adopting the calls of the hosts it owns (`_owning` runs)
        self._adoption: asyncio.TimerHandle | None = None  # a look soon (`_heard_unknown`)
        self._awaited: dict[tuple[_Ear, str], float] = {}  # pairs it is for, and when heard
        if leases is not None:
            leases.on_lost(self._lost)

    async def start(self, *, resume: bool = True) -> None:
        """Resume the calls the database holds as live (retried in the background if it fails).

        ``resume=False``: follow only the calls tracked from now on (another process follows
        the rest).
        """
        self._stopped = False
        if resume and not await self._resume():
            self._spawn(self._resume_later())
        if resume and self._leases is not None:
            self._owns = True
            self._spawn(self._owning())

    async def stop(self) -> None:
        """Stop polling; unstored transitions get one last try (the next start resumes)."""
        self._stopped, self._owns = True, False
        if self._adoption is not None:
            self._adoption.cancel()
            self._adoption = None
        self._awaited.clear()
        calls = [c for h in self._hosts.values() for c in h.calls.values()]  # pollers drop them
        await cancel_and_wait(*self._tasks)
        await asyncio.gather(*(self._store(c) for c in [*calls, *self._unstored.values()]))
        self._hosts.clear()
        self._ears.clear()
        self._unstored.clear()
        for subscriber in [s for group in self._subscribers.values() for s in group]:
            subscriber.close()

    def track(
        self,
        call_id: str,
        target: HostTarget,
        first_leg: Channel,
        phone: str,
        *,
        enterprise_number: str | None = None,
        since: float = 0.0,
    ) -> None:
        """Follow a call whose first leg ``;1`` the originate has just verified, ``since``
        seconds after it was sent (`Originated.took`): the call began then, its ring times
        too.

        The call is taken in hand at the loop's next turn (`_begin`), once its placer has
        written the answer: its first moves, from the lines already heard, need not delay
        it (``python -m bench.ablation --only full track-inline``). Until then it counts as
        live and is not adopted (`_claiming`), and its lines wait with the unclaimed ones,
        replayed in order; no request can reach it before (a turn runs the callbacks before
        new I/O).
        """
        if self._stopped:
            log.warning("call not tracked: the tracker is stopped", call_id=call_id)
            return
        started = _now() - max(since, 0.0)
        call = _Call(call_id, target, first_leg.base_name, phone, started, first_leg.uniqueid)
        call.enterprise_number = enterprise_number
        self._claiming.add(call_id)
        asyncio.get_running_loop().call_soon(self._begin, call, first_leg)

    def _begin(self, call: _Call, first_leg: Channel) -> None:
        """Take a call `track` was given in hand (see there)."""
        self._claiming.discard(call.call_id)
        target = call.target
        assert target is not None
        if self._stopped:
            log.warning("call not tracked: the tracker is stopped", call_id=call.call_id)
            return
        # Dated when the originate was sent: what was heard of the call since comes after it.
        verified = f"first leg {first_leg.name} verified"
        self._move(call, CallState.INITIATED, verified, first_leg, at=call.started)
        self.listen_to(target)
        if self._leases is not None:
            token = self._leases.token(target.address)
            if token is None:  # another instance may own the host: ask the database
                self._claiming.add(call.call_id)
                self._spawn(self._claim(call))
                return
            call.history.fence = (target.address, token)
        self._watch(call)
        self._replay(call)

    async def _claim(self, call: _Call) -> None:
        """Follow a call placed here once its host's lease is this instance's; if another
        instance holds it, that one adopts the call (`_adopt_owned`): only the opening event,
        the placer's own verified word, is stored from here (compare-and-set, unfenced)."""
        assert self._leases is not None and call.target is not None
        try:
            token = await self._leases.acquire_unless_held(call.target.address)
        finally:
            self._claiming.discard(call.call_id)
        if token is None:
            self._store_later(call)
            return
        call.history.fence = (call.target.address, token)
        self._watch(call)
        self._replay(call)

    def record_failure(
        self,
        call_id: str,
        reason: str,
        *,
        maybe_created: bool,
        enterprise_number: str | None = None,
    ) -> None:
        """End a call whose originate was not verified: ``failed``, or ``lost`` if it may exist."""
        call = _Call(call_id, None, "", "", _now(), enterprise_number=enterprise_number)
        self._move(call, CallState.LOST if maybe_created else CallState.FAILED, reason)
        self._store_later(call)

    async def cancel(self, call_id: str, reason: str) -> bool:
        """Hang a followed call up; it ends as ``canceled``. False if it is not followed."""
        call = next((h.calls[call_id] for h in self._hosts.values() if call_id in h.calls), None)
        if call is None or call.target is None or call.state.is_terminal:
            return False
        call.cancel_reason = reason
        try:  # a Local pair's ;1 takes its ;2 and the bridged customer leg down with it
            await self._pbx.hangup(call.target, call.first_base + ";1")
        except errors.PbxError as exc:
            if not exc.maybe_executed:
                call.cancel_reason = None
            raise
        return True

    def subscribe(
        self, maxsize: int = 10_000, *, enterprise_number: str | None = None
    ) -> Subscription:
        """Every transition stored from now on, in order: of one enterprise's calls only, or
        of all (``enterprise_number`` None). Each goes to its own enterprise's subscribers,
        never offered to the others'."""
        group = self._subscribers.setdefault(enterprise_number, set())
        subscriber = Subscription(group, maxsize)
        group.add(subscriber)
        return subscriber

    def subscribers(self) -> int:
        """Subscriptions open now (metrics)."""
        return sum(len(group) for group in self._subscribers.values())

    def subscribed(self) -> frozenset[str] | None:
        """The enterprises whose transitions someone here subscribes to now; None when a
        subscriber takes every enterprise's (`shared_events` reads only these)."""
        if self._subscribers.get(None):
            return None
        return frozenset(number for number, group in self._subscribers.items() if group and number)

    def live_calls(self) -> dict[str, CallState]:
        """The calls followed now and their states (status pages, the live-call caps, metrics),
        with those placed here whose host's lease is being taken (`_claim`): live all the same."""
        followed = {c.call_id: c.state for h in self._hosts.values() for c in h.calls.values()}
        return {call_id: CallState.INITIATED for call_id in self._claiming} | followed

    def status(self) -> dict[str, object]:
        """For /api/status: calls followed per host, and each host's listening console
        (``open`` with the seconds since its last line, or ``retrying``; absent: listings only);
        with several instances, this one's id and the leases it holds (name: token)."""
        now = _now()
        listening: dict[str, object] = {}
        for ear in self._ears.values():
            since = None if ear.heard_at is None else round(now - ear.heard_at, 1)
            listening[ear.target.label] = (
                {"state": "open", "last_line_s": since}
                if ear.heard_at is not None
                else {"state": "retrying"}
            )
        found: dict[str, object] = {
            "calls": {h.target.label: len(h.calls) for h in self._hosts.values()},
            "listening": listening,
        }
        if self._leases is not None:
            found["leases"] = {"instance": self._leases.owner, "held": self._leases.held()}
        return found

    def polling(self) -> dict[str, dict[str, float | int | None]]:
        """Per host with live calls (the status page): how many, the seconds since its last
        listing answered (None: none yet) and since its listings started failing (None: they
        do not)."""
        now = _now()
        hosts: dict[str, dict[str, float | int | None]] = {}
        for key, host in self._hosts.items():
            listed = self._listed.get(key)
            failing = host.failing_since
            hosts[host.target.label] = {
                "calls": len(host.calls),
                "listed_s": None if listed is None else round(now - listed, 1),
                "failing_s": None if failing is None else round(now - failing, 1),
            }
        return hosts

    def _watch(self, call: _Call) -> None:
        assert call.target is not None
        key = (call.target.address, call.target.port)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = _Host(call.target)
            self._spawn(self._poll(key, host))
            self.listen_to(call.target)  # an adopted or resumed call's host too
        host.target = call.target  # the newest settings (`callgate host set` since)
        host.calls[call.call_id] = call

    async def _poll(self, key: HostKey, host: _Host) -> None:
        try:
            while host.calls:
                wait = self._last_query.get(key, -math.inf) + self.interval - _now()
                if wait > 0:  # at most one listing per interval, even across poller restarts
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await host.heard.wait()
                    if host.heard.is_set():  # moves heard on the listening console: store now
                        host.heard.clear()
                        await self._settle(host, list(host.calls.values()))
                    continue
                self._last_query[key] = _now()
                try:
                    await self._tick(host)
                except Exception:  # a bug in one tick must not end the watch of a host
                    log.exception("tracking tick failed", host=host.target.label)
        finally:  # no await since the loop's last check: track() cannot slip in between
            if self._hosts.get(key) is host:
                del self._hosts[key]

    async def _tick(self, host: _Host) -> None:
        calls = list(host.calls.values())  # a call tracked during the listing waits a tick
        self.queries[host.target.label] += 1
        asked = _now()
        try:
            listing = await self._pbx.channels(host.target)
        except errors.PbxError as exc:
            self._unreachable(host, calls, exc)
        else:
            metrics.listed(host.target.label, _now() - asked)
            if host.failing_since is not None:
                log.info("host reachable again", host=host.target.label)
            host.failing_since, now = None, _now()
            self._listed[(host.target.address, host.target.port)] = now
            found = assign_channels(listing, calls, now)
            for call in calls:  # a listing with fragments may hide channels: not an end
                if listing.conclusive or not found[call.call_id].gone:
                    self._observe(call, found[call.call_id], now)
        await self._settle(host, calls)

    async def _settle(self, host: _Host, calls: list[_Call]) -> None:
        """Store what these calls went through; ended ones are followed no more."""
        await self._store_all([call for call in calls if call.history.pending])
        for call in calls:
            if call.state.is_terminal:
                host.calls.pop(call.call_id, None)
                if call.history.pending:
                    self._store_later(call)

    def _observe(self, call: _Call, channels: CallChannels, now: float) -> None:
        first, customer = channels.first_leg, channels.customer_leg
        if channels.gone and call.resumed and not call.seen:
            self._move(call, CallState.LOST, NOT_WATCHED)
        elif channels.gone and call.cancel_reason:
            self._move(call, CallState.CANCELED, call.cancel_reason)
        else:
            new, reason = derive(channels, call.state, now - call.started)
            for state in steps(call.state, new) if new is not call.state else ():
                self._move(call, state, reason, None, customer)
        call.seen = True
        if first is not None:
            call.first_uniqueid = call.first_uniqueid or first.uniqueid
        if customer is not None:
            call.customer_base = customer.base_name

    def listen_to(self, target: HostTarget) -> None:
        """Have a listening console on ``target`` (a call is about to be placed there, or is
        followed there): its lines are heard from as early as the console can be opened.
        Nothing on rx hosts. Nothing either on a host another instance may own (several
        instances run and this one does not hold the host's lease): its owner listens, and
        this instance's originate check lists instead; a console per host and instance would
        pay for every line of the host once per instance (`python -m bench.instances`)."""
        key = (target.address, target.port)
        if not self.listen or self._stopped:
            return
        leases = self._leases
        if leases is not None and not leases.alone and leases.token(target.address) is None:
            return
        ear = self._ears.get(key)
        if ear is None:
            ear = self._ears[key] = _Ear(target, _now())
            self._spawn(self._listen(key, ear))
        ear.target = target  # the newest settings

    async def _listen(self, key: HostKey, ear: _Ear) -> None:
        """Hear the host's console at verbose 3 (``pbx.verbose``): each move is stored as
        Asterisk prints it, and why a side ended is known. Polling goes on beside it as the
        safety net; a console that cannot be had, or ends, is tried again after a pause, and
        meanwhile the listings alone follow the calls. Ends ``LISTEN_LINGER`` after the host's
        last call."""
        label = ear.target.label
        try:
            while not self._stopped and not self._lingered(key, ear):
                session = self._pbx.listen(ear.target)
                if session is None:
                    return  # an rx host: listings only
                try:
                    async with session as heard:
                        log.debug("listening to the host", host=label)
                        self._pbx.listening(ear.target, True)  # its check may wait to hear
                        ear.heard_at = _now()
                        async for line in heard:
                            if line is not None:
                                ear.heard_at = _now()
                                self._hear_on(key, ear, line)
                            elif self._lingered(key, ear):
                                return
                except errors.CallgateError as exc:
                    log.info("host not listened to; listings only", host=label, error=exc.message)
                finally:
                    self._pbx.listening(ear.target, False)
                    ear.heard_at = None
                await asyncio.sleep(LISTEN_RETRY)
        finally:
            if self._ears.get(key) is ear:
                del self._ears[key]

    def _lingered(self, key: HostKey, ear: _Ear) -> bool:
        """Whether the host has had no call for ``LISTEN_LINGER`` seconds."""
        if key in self._hosts:
            ear.quiet_since = _now()
            return False
        return _now() - ear.quiet_since > LISTEN_LINGER

    def _hear_on(self, key: HostKey, ear: _Ear, line: Heard) -> None:
        """A heard line: applied to the host's calls, or kept a moment for a call yet to be
        tracked."""
        now = _now()
        self._pbx.heard(ear.target, line)  # an originate's check may be waiting for it
        host = self._hosts.get(key)
        if (host is None or not self._hear(host, line)) and line.channel:
            unclaimed = ear.unclaimed
            while unclaimed:  # oldest first: dicts keep insertion order
                oldest = next(iter(unclaimed))
                if now - unclaimed[oldest][0][0] <= UNCLAIMED_KEEP and len(unclaimed) < 256:
                    break
                del unclaimed[oldest]
            base = line.channel.rsplit(";", 1)[0]
            unclaimed.setdefault(base, []).append((now, line))
            if line.said is Said.STARTED:  # a call's first steps, not an ended call's last
                self._heard_unknown(ear, base)

    def _heard_unknown(self, ear: _Ear, base: str) -> None:
        """Pair ``base`` runs the dialplan and nobody here claims it, on ``ear``'s host. When it
        is one of this service's pairs (`_placed_in`) on a host this instance owns while others
        may place calls on it, the calls placed there elsewhere are looked for ``ADOPT_SOON``
        later, not at the next round (``adopt_every``): their moves heard so far wait until
        then (``_replay``), and their placer has stored its outcome by then. A call placed
        here is taken in hand before then, its pair claimed, and starts no look."""
        leases = self._leases
        if not self._owns or leases is None or leases.alone:
            return
        if leases.token(ear.target.address) is None:
            return
        host = self._hosts.get((ear.target.address, ear.target.port))
        calls = host.calls.values() if host is not None else ()
        if any(base.startswith(call.customer_prefix) for call in calls):
            return  # a followed call's customer, its lines offered to the call (`_replay`)
        if _placed_in(base, ear.target.dial_context) and (ear, base) not in self._awaited:
            self._awaited[(ear, base)] = _now()
            if self._adoption is None or self._adoption.when() > _now() + ADOPT_SOON:
                self._look_soon(ADOPT_SOON)

    def _look_soon(self, delay: float) -> None:
        if self._adoption is not None:
            self._adoption.cancel()
        loop = asyncio.get_running_loop()
        self._adoption = loop.call_later(delay, self._look, delay)

    def _still_awaited(self) -> bool:
        """Whether a pair heard lately is still nobody's here (those claimed or followed, or
        heard over ``adopt_every`` ago, are forgotten: the rounds look for them)."""
        now = _now()
        followed = {
            call.first_base for host in self._hosts.values() for call in host.calls.values()
        }
        for (ear, base), heard in list(self._awaited.items()):
            gone = base not in ear.unclaimed or base in followed
            if gone or now - heard > self.adopt_every:
                del self._awaited[(ear, base)]
        return bool(self._awaited)

    def _look(self, delay: float) -> None:
        self._adoption = None
        if self._owns and self._still_awaited():
            self._spawn(self._look_round(delay))

    async def _look_round(self, delay: float) -> None:
        """A look for the calls of the pairs heard starting (`_adopt_started`); while one of
        them stays unclaimed, another after twice as long (its placer may not have stored its
        outcome yet)."""
        pairs: dict[str, list[str]] = {}
        for ear, base in self._awaited:
            pairs.setdefault(ear.target.address, []).append(base)
        await _logged("calls heard starting not looked for", self._adopt_started(pairs))
        if self._owns and self._adoption is None and self._still_awaited():
            self._look_soon(2 * delay)

    def _replay(self, call: _Call) -> None:
        """Lines heard before ``call`` was tracked, applied now in the order heard: those of
        its first leg's pair, and those of other pairs that concern it by then (its
        customer's pair is named by the call's phone or by its agent's leg, so it can be told
        only once the call is known: an adopted call's customer may have rung, answered or
        been busy before its owner took it in hand)."""
        assert call.target is not None
        key = (call.target.address, call.target.port)
        ear, host = self._ears.get(key), self._hosts.get(key)
        if ear is None or host is None:
            return
        own = ear.unclaimed.pop(call.first_base, [])
        kept = [  # a customer's pair is of the call's phone: the others' lines are not offered
            (at, line, base)
            for base, lines in ear.unclaimed.items()
            if base.startswith(call.customer_prefix)
            for at, line in lines
        ]
        # Stable: at one loop time, the agent's lines before the customer's (the PBX's order).
        for at, line, base in sorted(
            [(at, line, call.first_base) for at, line in own] + kept, key=lambda item: item[0]
        ):
            if base == call.first_base:
                self._hear(host, line, at)
            elif self._hear(host, line, at, only=call):  # its now: dropped from the kept
                ear.unclaimed[base].remove((at, line))
                if not ear.unclaimed[base]:
                    del ear.unclaimed[base]

    def _hear(
        self, host: _Host, line: Heard, at: float | None = None, *, only: _Call | None = None
    ) -> bool:
        """Apply one heard line to the host's live calls (``hearing.hear``), or to ``only``
        of them; False: it concerns none of them. ``at``: when it was heard, for a line kept
        until its call was tracked (its moves are dated then: a ring time must not grow by
        the wait)."""
        heard_at = _now() if at is None else at
        calls = host.calls.values() if only is None else [only]
        live = [call for call in calls if not call.state.is_terminal]
        heed = hear(line, live, heard_at)
        if heed is None:
            return False
        call = host.calls[heed.call_id]
        if heed.customer_base:
            call.customer_base = heed.customer_base
        if heed.agent_said is not None:
            call.agent_said = SideOutcome(heed.agent_said)
        if heed.customer_said is not None:
            call.customer_said = SideOutcome(heed.customer_said)
            call.customer_ring_ms = heed.customer_ring_ms
        if heed.state is None:
            return True
        if heed.state.is_terminal:
            if call.cancel_reason:  # hung up by this process: that is why it ended
                self._move(call, CallState.CANCELED, call.cancel_reason, at=heard_at)
                host.heard.set()
            else:  # a hangup by another process holds this move (`HANGUP_HOLD`): its word stands
                self._move(call, heed.state, heed.reason, at=heard_at)
                host.heard.set()
            return True
        # The pair Dial made for the customer, as its ``;1`` leg: what a listing would store.
        leg = f"{call.customer_base};1" if call.customer_base else None
        for state in steps(call.state, heed.state):
            self._move(call, state, heed.reason, customer_leg=leg, at=heard_at)
        host.heard.set()
        return True

    def _unreachable(self, host: _Host, calls: list[_Call], exc: errors.PbxError) -> None:
        label = host.target.label
        if host.failing_since is None:
            host.failing_since = _now()
            log.warning("host unreachable", host=label, error=exc.code, calls=len(calls))
        down = _now() - host.failing_since
        if down >= self.lost_after:
            for call in calls:
                self._move(call, CallState.LOST, f"{label} unreachable for {down:.0f} s: {exc}")

    def _move(
        self,
        call: _Call,
        state: CallState,
        reason: str,
        first: Channel | None = None,
        customer: Channel | None = None,
        customer_leg: str | None = None,
        at: float | None = None,
    ) -> None:
        """Record a move; the customer's leg from a listing's ``customer``, or by name
        (``customer_leg``) when a heard line named its pair. ``at``: when it happened, if
        before now (never before the call began, when its originate was sent)."""
        ended_before = call.state.is_terminal  # a call's end is counted once
        call.state = state
        now = _now()
        happened = now if at is None else min(now, max(at, call.started))
        answered = state in RANK and RANK[state] >= RANK[CallState.AGENT_ANSWERED]
        if answered and call.agent_answered_at is None:
            call.agent_answered_at = happened
        if state is CallState.RINGING_CUSTOMER and call.customer_seen_at is None:
            call.customer_seen_at = happened
        if state is CallState.CONNECTED and call.connected_at is None:
            call.connected_at = happened
        sides = None
        if state.is_terminal:  # why each side ended, stored with the state (same statement)
            seen = Seen(
                call.started,
                happened,
                call.agent_answered_at,
                call.customer_seen_at,
                call.connected_at,
            )
            sides = decide(
                state,
                seen,
                reason=reason,
                words=Words(call.agent_said, call.customer_said, call.customer_ring_ms),
            )
            if not ended_before:
                _count_end(call, state, sides, happened)
        leg, bridge = (
            (customer.name, customer.bridge_id or None) if customer else (customer_leg, None)
        )
        first_name = first.name if first else None
        call.history.pending.append(
            Transition(
                call.call_id,
                state,
                utcnow() - timedelta(seconds=now - happened),
                reason,
                first_name,
                leg,
                bridge,
                sides,
                call.enterprise_number,
                call.extension,
            )
        )
        host, phone = call.target.label if call.target else "-", mask_phone(call.phone)
        # Every transition is stored (call_events) and streamed (/v1/events); the log keeps
        # the end of each call at INFO and the steps at DEBUG, so a busy PBX does not drown it.
        report = log.info if state.is_terminal else log.debug
        ends = {}
        if sides is not None:
            ends = {
                "agent": sides.agent.outcome.value if sides.agent else None,
                "customer": sides.customer.outcome.value if sides.customer else None,
            }
        report(
            "call state",
            call_id=call.call_id,
            state=state.value,
            reason=reason,
            host=host,
            phone=phone,
            **ends,
        )

    async def _store(self, call: _Call) -> bool:
        """Store the call's pending transitions; False: try again later."""
        return (await self._store_all([call]))[0]

    async def _store_all(self, calls: list[_Call]) -> list[bool]:
        """Store the pending transitions of these calls in one transaction; done per call."""
        if not calls:
            return []
        try:
            async with self._db_slots:
                histories = [call.history for call in calls]
                publish = self._publish if self._publish_stored else _stored_elsewhere
                done = await store_histories(self._database, histories, publish)
        except errors.DatabaseUnavailable as exc:
            ids = [call.call_id for call in calls if call.history.pending]
            log.warning("call state not stored yet", call_ids=ids, detail=exc.message)
            done = [False] * len(calls)
        for call in calls:
            if call.history.fenced and call.target is not None and self._leases is not None:
                self._leases.lose(call.target.address, "a move was fenced: another owner")
            stored = call.history.persisted  # another writer's word stands
            if stored.is_terminal and call.state is not stored:
                # Ended by another writer first (a hangup by a process that does not follow
                # the call): its state is the call's, whatever this tracker logged it saw.
                log.info(
                    "call ended elsewhere",
                    call_id=call.call_id,
                    state=stored.value,
                    seen_here=call.state.value,
                )
            if stored.is_terminal or (
                not call.state.is_terminal and RANK[call.state] < RANK[stored]
            ):
                call.state = stored
        return done

    def publish(self, transition: Transition) -> None:
        """Hand a stored transition to its enterprise's subscribers (and to those of all)."""
        self._publish(transition)

    def _publish(self, transition: Transition) -> None:
        metrics.LAG.observe((utcnow() - transition.at).total_seconds())
        for key in {None, transition.enterprise_number}:
            group = self._subscribers.get(key)
            if group is None:
                continue
            if not group:  # its last subscriber left: no key stays for a gone enterprise
                del self._subscribers[key]
            for subscriber in list(group):
                subscriber.offer(transition)

    def _store_later(self, call: _Call) -> None:
        self._unstored[call.call_id] = call
        self._spawn(self._store_until_done(call, _now() + max(self.lost_after, 10 * self.interval)))

    async def _store_until_done(self, call: _Call, deadline: float) -> None:
        try:
            while not await self._store(call):
                if _now() > deadline:
                    log.error("call state not stored", call_id=call.call_id, state=call.state)
                    return
                await asyncio.sleep(self.interval)
        finally:
            self._unstored.pop(call.call_id, None)

    async def _resume(self) -> bool:
        try:
            ended, now = 1, utcnow()
            while ended:
                async with db_step("ending stale calls"):
                    ended = await end_stale(self._database, now - STALE_AFTER, now, STALE)
            if self._leases is not None:  # only the calls of the hosts this instance takes
                await self._take_over()
                adopted = await self._adopt_owned()
                log.info("tracking resumed", calls=adopted, instance=self._leases.owner)
                return True
            async with db_step("loading the live calls"):
                rows = await self._live_calls_with_hosts()
        except errors.DatabaseUnavailable as exc:
            log.error("live calls not loaded; retrying", detail=exc.message)
            return False
        followed = {c for h in self._hosts.values() for c in h.calls} | set(self._unstored)
        for row, host_row in rows:
            if row.id not in followed:
                self._adopt(row, host_row)
        log.info("tracking resumed", calls=len(rows))
        return True

    async def _resume_later(self) -> None:
        while not await self._resume():  # noqa: ASYNC110 - polls the database, not an event
            await asyncio.sleep(max(self.interval, 5.0))

    async def _live_calls_with_hosts(self) -> list[tuple[CallRecord, HostRow | None]]:
        """The live calls, each with its host's row (None: defaults, or a bad address)."""
        rows = await live_calls(self._database)
        hosts: dict[str, HostRow | None] = {}
        for address in {row.host for row in rows}:
            try:
                hosts[address] = await get_host(self._database, address)
            except errors.InvalidInput:
                hosts[address] = None  # build_target then names the bad address
        return [(row, hosts[row.host]) for row in rows]

    def _adopt(self, row: CallRecord, host_row: HostRow | None, *, fresh: bool = False) -> None:
        """Follow again a call the database holds as live; end it honestly if it cannot be.

        ``fresh``: a call placed by another instance just now on a host this one owned all
        along, followed as if tracked here: not ``resumed`` (channels gone before its first
        listing are an end to derive, not an unknown one), and its lines heard replayed."""
        state, verdict = CallState(row.state), unfollowable(row)
        try:
            target: HostTarget | None = build_target(self._settings, row.host, host_row)
        except errors.ConfigurationError as exc:
            target, verdict = None, verdict or (CallState.LOST, exc.message)
        age = (utcnow() - row.created_at).total_seconds()
        first_base = (row.channel or "").rsplit(";", 1)[0]
        call = _Call(row.id, target, first_base, row.phone, _now() - age, state=state)
        call.history.persisted, call.resumed = state, not fresh
        if self._leases is not None:
            token = self._leases.token(row.host)
            if token is None:
                return  # another instance's host now
            call.history.fence = (row.host, token)
        call.enterprise_number = row.enterprise_number
        call.customer_base = (row.customer_channel or "").rsplit(";", 1)[0]
        now, wall = _now(), utcnow()  # the phases the row holds, on the loop's clock
        if row.agent_answered_at is not None:
            call.agent_answered_at = now - (wall - row.agent_answered_at).total_seconds()
        if row.customer_answered_at is not None:
            call.connected_at = now - (wall - row.customer_answered_at).total_seconds()
        if verdict is None:
            self._watch(call)
            if fresh:
                self._replay(call)
        else:
            self._move(call, *verdict)
            self._store_later(call)

    def _followed(self) -> set[str]:
        """The calls this tracker has in hand: followed, being claimed, or still storing."""
        followed = {c for h in self._hosts.values() for c in h.calls}
        return followed | set(self._unstored) | self._claiming

    async def _owning(self) -> None:
        """Several instances: adopt the calls of the hosts owned (every ``adopt_every``), take
        hosts whose owner died over (every ``takeover_every``)."""
        next_takeover = _now() + self.takeover_every
        while not self._stopped:
            await asyncio.sleep(self.adopt_every)
            if _now() >= next_takeover:
                next_takeover = _now() + self.takeover_every
                await _logged("hosts nobody follows not looked for", self._take_over())
            await _logged("owned hosts' calls not looked for", self._adopt_owned())

    async def _take_over(self) -> None:
        """Take the lease of every host with live calls that nobody holds (never taken,
        released, or expired: its owner died); their calls are adopted next."""
        assert self._leases is not None
        async with db_step("finding hosts nobody follows"):
            names = await unowned_hosts(self._database, self._leases.owner, utcnow())
        for name in names:
            if self._leases.token(name) is None:
                await self._leases.acquire(name)

    async def _adopt_owned(self) -> int:
        """Follow the live calls of the hosts this instance owns that it does not follow yet
        (placed by another instance, or left by an owner that died); how many."""
        assert self._leases is not None
        async with db_step("loading the owned hosts' live calls"):
            found = await owned_live_calls(self._database, self._leases.owner)
        followed = self._followed()
        todo = [call_id for call_id, _host in found if call_id not in followed]
        if not todo:
            return 0
        # One statement for the round's calls and their hosts' rows.
        async with db_step("loading calls to adopt"):
            rows = await get_calls_with_hosts(self._database, todo)
        return self._adopt_all(rows)

    async def _adopt_started(self, pairs: dict[str, list[str]]) -> int:
        """`_adopt_owned` for the calls whose pairs were heard starting (their bases, by host):
        one statement a host."""
        assert self._leases is not None
        rows: list[tuple[CallRecord, HostRow | None]] = []
        async with db_step("loading the calls heard starting"):
            for host, bases in pairs.items():
                channels = [f"{base};1" for base in bases]  # each call's first leg
                rows += await owned_calls_on(self._database, self._leases.owner, host, channels)
        return self._adopt_all(rows)

    def _adopt_all(self, rows: list[tuple[CallRecord, HostRow | None]]) -> int:
        """Follow these calls (read whole with their hosts' rows) but those ended, followed
        already, or of a host no longer held; how many."""
        assert self._leases is not None
        adopted, followed = 0, self._followed()
        for row, host_row in sorted(rows, key=lambda found: found[0].created_at):
            if CallState(row.state).is_terminal:
                continue
            since = self._leases.since(row.host)
            if row.id in followed or since is None:
                continue  # taken in hand meanwhile, or the host lost
            # Placed by another instance while this one owned the host: followed as from its
            # originate (not a resumed call), with the lines already heard of it.
            self._adopt(row, host_row, fresh=row.created_at >= since)
            followed.add(row.id)
            adopted += 1
        if adopted:
            log.info("calls adopted", calls=adopted)
        return adopted

    def _lost(self, name: str) -> None:
        """The lease of host ``name`` is lost: its calls are followed here no more, at once
        (their new owner resumes them)."""
        for key, host in list(self._hosts.items()):
            if host.target.address == name:
                log.warning("host no longer followed here", host=host.target.label)
                host.calls.clear()  # its poller ends at its next check
                del self._hosts[key]
                ear = self._ears.get(key)
                if ear is not None:  # its new owner listens now: this console ends
                    ear.quiet_since = -math.inf

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _count_end(call: _Call, state: CallState, sides: Sides, now: float) -> None:
    """A call's end in the metrics: its state, how long each side rang, how long they talked
    (not for a ``lost`` call: its end is when the tracker gave up)."""
    talked = call.connected_at is not None and state is not CallState.LOST
    metrics.finished(
        call.enterprise_number,
        state.value,
        agent_ring=sides.agent.ring_s if sides.agent else None,
        customer_ring=sides.customer.ring_s if sides.customer else None,
        talk=now - call.connected_at if talked and call.connected_at is not None else None,
    )


def _stored_elsewhere(_transition: Transition) -> None:
    """The subscribers hear of it from the event log (``publish_stored`` False)."""


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _logged(failure: str, step: Coroutine[object, object, object]) -> None:
    """One round's ``step``, its failure logged as ``failure``: the next round tries again,
    and a bug in one round must not end the rounds."""
    try:
        await step
    except errors.DatabaseUnavailable as exc:
        log.warning(failure, detail=exc.message)
    except Exception:
        log.exception(failure)


def _placed_in(base: str, context: str) -> bool:
    """Whether a pair's base name (``Local/150@inoffice-00000061``) is of a Local channel in
    the host's dial context, as every originate of this service makes them (`pbx.commands`);
    another system's calls on the PBX are not."""
    where, _, counter = base.rpartition("-")
    return base.startswith("Local/") and where.endswith(f"@{context}") and counter != ""
