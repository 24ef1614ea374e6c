"""A call's history: its moves written in order by compare-and-set, and handed to subscribers.

``History`` holds a call's transitions not yet stored and the state its row holds; a write
checks each move against the state machine (`domain.states`) and settles with another writer
that moved the call first. ``store_histories`` does so for all the calls of a tracker tick in
one transaction; ``Subscription`` hands the stored transitions to a consumer (the event
stream, ``calls watch``). ``end_call`` ends a call this process does not follow (a hangup, a
call a stopped service left behind).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from callgate.db import call_tracking
from callgate.db.call_tracking import TransitionResult
from callgate.db.calls import CallRecord, get_call
from callgate.db.executor import Database, Executor
from callgate.db.guard import db_step
from callgate.domain.outcomes import Seen, Sides, decide
from callgate.domain.states import CallState, can_transition


@dataclass(frozen=True, slots=True)
class Transition:
    """One move of a call: stored in order, then given to the tracker's subscribers."""

    call_id: str
    state: CallState
    at: datetime
    reason: str
    channel: str | None = None  # the first leg (stored as a fallback of the service's write)
    customer_channel: str | None = None
    bridge_id: str | None = None
    sides: Sides | None = None  # a terminal move's: why each side ended (domain.outcomes)
    enterprise_number: str | None = None  # whose call: its subscribers alone get it
    extension: str | None = None  # the agent's extension (an event stream's filter)
    event_id: int | None = None  # its ``call_events.id`` once stored (`db.event_log`)


def allowed(expected: CallState, state: CallState) -> bool:
    """Whether a row in ``expected`` may move to ``state``; ``initiated`` to itself is the
    opening event (tracking began)."""
    return state is expected is CallState.INITIATED or can_transition(expected, state)


def row_seen(record: CallRecord, ended: datetime) -> Seen:
    """What a call's row says of its phases, as ``decide`` takes them (epoch seconds)."""

    def moment(at: datetime | None) -> float | None:
        return None if at is None else at.timestamp()

    return Seen(
        originated=record.created_at.timestamp(),
        ended=ended.timestamp(),
        agent_answered=moment(record.agent_answered_at),
        connected=moment(record.customer_answered_at),
    )


async def end_call(
    database: Database,
    call_id: str,
    state: CallState,
    *,
    expected: CallState,
    at: datetime,
    reason: str,
) -> TransitionResult:
    """Move a call this process does not follow to the terminal ``state`` (compare-and-set),
    with the sides its row's times say (``row_seen``; nobody here heard Asterisk's words).

    The sides come from the row as read just before the move: a row that is no longer in
    ``expected`` makes the compare-and-set fail, so the sides stored always belong to the state
    the move started from. ValueError for a move the state machine does not allow.
    """
    if not allowed(expected, state):
        raise ValueError(f"a call cannot go from {expected.value} to {state.value}")
    async with database.transaction() as writing:
        record = await get_call(writing, call_id)
        sides = None if record is None else decide(state, row_seen(record, at), reason=reason)
        return await call_tracking.move(
            writing, call_id, state, expected=expected, at=at, reason=reason, sides=sides
        )


def unfollowable(record: CallRecord) -> tuple[CallState, str] | None:
    """How a live row that cannot be followed again must end, or None if it can be.

    A failed originate whose state was never stored is ``failed``; a call without a verified
    first leg (the service stopped mid-originate, or its result is unknown) is ``lost``.
    """
    if record.outcome == "failed" and record.state == CallState.INITIATED.value:
        return CallState.FAILED, record.error or "the originate failed"
    if not record.channel:
        return CallState.LOST, "the originate was never verified"
    return None


class Subscription:
    """Stored transitions in order: ``async for t in sub`` until ``close()`` or tracker stop.

    A subscriber ``maxsize`` behind loses the oldest (counted in ``dropped``): a slow consumer
    must never hold the tracker up. ``overflowed`` is set at the first loss, for a consumer
    that ends its stream then (the client resumes from the event log, `calls.event_log`).
    """

    def __init__(self, owner: set[Subscription], maxsize: int) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[Transition | None] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.overflowed = asyncio.Event()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Transition:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # closed for good: later reads end at once too
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        self._owner.discard(self)
        self.offer(None)

    def offer(self, item: Transition | None) -> None:
        if self._queue.full():
            self._queue.get_nowait()
            self.dropped += 1
            if item is not None:  # a close makes room for its end mark: no overflow
                self.overflowed.set()
        self._queue.put_nowait(item)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What storing a call's pending transitions did, applied to its History after the commit."""

    persisted: CallState  # the state the row holds now
    settled: int  # how many pending transitions, from the oldest, were stored or dropped
    stored: list[Transition]  # those stored, in order
    done: bool  # False: the row is not there yet
    fenced: bool = False  # refused: another instance holds the host's lease now


@dataclass(eq=False)
class History:
    """A call's transitions not yet stored, and the state its row holds (``persisted``)."""

    persisted: CallState = CallState.INITIATED
    pending: deque[Transition] = field(default_factory=deque)
    # (host, token) of the host's lease its follower holds (`calls.leases`; None: unfenced).
    # ``fenced`` once a write was refused: the follower has lost the host, the rest is dropped.
    fence: tuple[str, int] | None = None
    fenced: bool = False

    async def _write(self, database: Executor) -> _Outcome:
        """Write the pending transitions (compare-and-set each) without changing this History:
        until the transaction commits, none of it has happened."""
        persisted, steps, index = self.persisted, list(self.pending), 0
        stored: list[Transition] = []
        while index < len(steps):
            step = steps[index]
            if not allowed(persisted, step.state):
                index += 1  # no longer possible from what the row holds
                continue
            result = await call_tracking.move(
                database,
                step.call_id,
                step.state,
                expected=persisted,
                at=step.at,
                reason=step.reason,
                channel=step.channel,
                customer_channel=step.customer_channel,
                bridge_id=step.bridge_id,
                sides=step.sides,
                fence=self.fence,
            )
            if result.fenced:  # the new owner follows the call: nothing more of ours stands
                return _Outcome(persisted, len(steps), stored, done=True, fenced=True)
            if result.current is None:
                return _Outcome(persisted, index, stored, done=False)
            if not result.applied and result.current is persisted:
                # Held: another process hangs the call up and stores its `canceled` in a
                # moment (`call_tracking.HANGUP_HOLD`); the next try sees it, or stores this.
                return _Outcome(persisted, index, stored, done=False)
            persisted = result.current
            if result.applied:
                stored.append(replace(step, event_id=result.event_id))
                index += 1
            elif persisted.is_terminal:
                index = len(steps)  # another writer ended the call: nothing more to store
            elif not can_transition(persisted, step.state):
                index += 1
        return _Outcome(persisted, index, stored, done=True)

    def _settle(self, outcome: _Outcome, stored: Callable[[Transition], None]) -> bool:
        self.persisted = outcome.persisted
        self.fenced = self.fenced or outcome.fenced
        for _ in range(outcome.settled):
            self.pending.popleft()
        for step in outcome.stored:
            stored(step)
        return outcome.done


async def store_histories(
    database: Database, histories: Sequence[History], stored: Callable[[Transition], None]
) -> list[bool]:
    """Store the pending transitions of several calls (a tracker tick's, of one host); done?

    One transaction for all of them: a tick pays one connection checkout, one BEGIN and one
    COMMIT however many calls moved; each transition is still its own compare-and-set. A
    single transition is one statement, atomic by itself, so it runs without BEGIN and COMMIT
    (`python -m bench.db_paths`, "a state change alone").
    ``stored`` is called with each transition stored, in order, once the transaction has
    committed. ``False`` for a call whose row is not there yet (the service inserts it in the
    background). DatabaseUnavailable when the database fails: then nothing was stored, every
    transition stays pending for the next try.

    The calls are written in the order of their ids, so two writers of the same calls (a
    second instance) lock the rows in the same order and cannot deadlock each other.
    """
    todo = sorted(
        (index for index, history in enumerate(histories) if history.pending),
        key=lambda index: histories[index].pending[0].call_id,
    )
    done = [True] * len(histories)
    if not todo:
        return done
    async with db_step("recording calls' states"):
        if sum(len(histories[index].pending) for index in todo) == 1:
            outcomes = [(todo[0], await histories[todo[0]]._write(database))]
        else:
            async with database.transaction() as writing:
                outcomes = [(index, await histories[index]._write(writing)) for index in todo]
    for index, outcome in sorted(outcomes, key=lambda item: item[0]):
        done[index] = histories[index]._settle(outcome, stored)
    return done
