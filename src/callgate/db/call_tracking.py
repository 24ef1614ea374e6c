"""Call tracking in the database: transitions (compare-and-set), live calls, events.

Kept apart from ``repositories``: the tracker is its only writer. As there, every write commits
its own transaction and a session is never held across an SSH round trip. ``History`` stores a
call's transitions in order, and settles with another writer that moved the call first;
``store_histories`` does so for all the calls of a tracker tick in one transaction;
``Subscription`` hands the stored ones to a consumer (WebSocket, webhooks, ``calls watch``).

The per-transition statements are Core statements built once per shape (see ``_move``): a
transition is the tracker's most frequent write, and the ORM's unit of work and per-statement
compilation used to cost several times the round trip itself.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any, Protocol, Required, TypedDict, Unpack

import asyncpg
from sqlalchemy import (
    Float,
    Insert,
    Select,
    String,
    Text,
    Update,
    bindparam,
    case,
    func,
    insert,
    literal,
    null,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.guard import db_step
from callgate.db.models import (
    CALL_EVENTS,
    CALLS,
    CallEventRecord,
    CallRecord,
    PbxHost,
    UtcDateTime,
)
from callgate.db.per_call import AsyncpgStatements, PerCallStatements
from callgate.db.repositories import HostRepo, write_connection
from callgate.domain.outcomes import Seen, SideOutcome, SideResult, Sides, decide
from callgate.domain.states import LIVE, RANK, CallState, can_transition
from callgate.errors import InvalidInput


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
    sides: Sides | None = None  # a terminal move's: why each side ended (calls.outcomes)


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """``applied``: the row moved. Otherwise ``current`` is the row's state (None: no row)."""

    applied: bool
    current: CallState | None


# The parameters are named p_*: no name of theirs may be a column of the tables written.
_STATE_OF = select(CALLS.c.state).where(CALLS.c.id == bindparam("p_call"))
_ADD_EVENT = insert(CALL_EVENTS)


def _postgresql(session: AsyncSession) -> bool:
    return (session.bind or session.get_bind()).dialect.name == "postgresql"


def side_values(sides: Sides) -> dict[str, Any]:
    """``sides`` as the six ``calls`` columns' values (a side never reached: NULLs)."""
    values: dict[str, Any] = {}
    for name, side in (("agent", sides.agent), ("customer", sides.customer)):
        values[f"{name}_outcome"] = side.outcome.value if side else None
        values[f"{name}_ring_s"] = side.ring_s if side else None
        values[f"{name}_reason"] = side.reason if side else None
    return values


def sides_of(record: CallRecord) -> Sides | None:
    """The stored sides of an ended call; None while it is live."""
    if not CallState(record.state).is_terminal:
        return None

    def side(outcome: str | None, ring_s: float | None, reason: str | None) -> SideResult | None:
        return None if outcome is None else SideResult(SideOutcome(outcome), ring_s, reason)

    return Sides(
        side(record.agent_outcome, record.agent_ring_s, record.agent_reason),
        side(record.customer_outcome, record.customer_ring_s, record.customer_reason),
    )


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


@cache
def _move(
    state: CallState, channel: bool, customer_channel: bool, bridge_id: bool, sides: bool = False
) -> tuple[Update, Insert]:
    """The compare-and-set UPDATE of a move to ``state``, and the same with its event.

    The second is PostgreSQL's one-statement form (``WITH moved AS (UPDATE ... RETURNING id)
    INSERT INTO call_events SELECT ... FROM moved``): the event is added exactly when the row
    moved, atomically, in one round trip. Built once per shape (a few dozen in all), so running
    one costs neither compilation nor cache-key generation; the values are parameters. A
    terminal move with ``sides`` stores why each side ended in the same statement.
    """
    at = bindparam("p_at", type_=UtcDateTime())
    reason = bindparam("p_reason", type_=Text())
    new_state = bindparam("p_state", type_=String())
    values: dict[str, Any] = {"state": new_state, "state_changed_at": at}
    # A later state implies the earlier phases began; COALESCE keeps a time already known.
    if state in LIVE and RANK[state] >= RANK[CallState.AGENT_ANSWERED]:
        values["agent_answered_at"] = func.coalesce(CALLS.c.agent_answered_at, at)
    if state is CallState.CONNECTED:
        values["customer_answered_at"] = func.coalesce(CALLS.c.customer_answered_at, at)
    if state.is_terminal:
        values["ended_at"] = at
        values["end_reason"] = reason
        if sides:
            for side in ("agent", "customer"):
                values[f"{side}_outcome"] = bindparam(f"p_{side}_outcome", type_=String())
                values[f"{side}_ring_s"] = bindparam(f"p_{side}_ring_s", type_=Float())
                values[f"{side}_reason"] = bindparam(f"p_{side}_reason", type_=Text())
    if channel:  # the service normally stores it; a fallback for resume
        values["channel"] = func.coalesce(CALLS.c.channel, bindparam("p_first_leg", type_=String()))
    if customer_channel:
        values["customer_channel"] = bindparam("p_customer_leg", type_=String())
    if bridge_id:
        values["bridge_id"] = bindparam("p_bridge", type_=String())
    moved = (
        update(CALLS)
        .where(CALLS.c.id == bindparam("p_call"), CALLS.c.state == bindparam("p_expected"))
        .values(values)
    )
    rows = moved.returning(CALLS.c.id).cte("moved")
    event: Select[Any] = select(rows.c.id, new_state, at, reason)
    with_event = insert(CALL_EVENTS).from_select(["call_id", "state", "at", "detail"], event)
    return moved, with_event


class MoveDetails(TypedDict, total=False):
    """The keyword arguments of `CallTrackingRepo.record`, for the methods that pass them on."""

    expected: Required[CallState]
    at: Required[datetime]
    reason: str | None
    channel: str | None
    customer_channel: str | None
    bridge_id: str | None
    sides: Sides | None  # a terminal move's sides (calls.outcomes); None: left as they are


def _prepare_move(
    call_id: str, state: CallState, **move: Unpack[MoveDetails]
) -> tuple[Update, Insert, dict[str, Any]]:
    """A move's two statement forms (see `_move`) and their parameters; ValueError for a move
    the state machine does not allow."""
    expected = move["expected"]
    opening = state is expected is CallState.INITIATED
    if not opening and not can_transition(expected, state):
        raise ValueError(f"a call cannot go from {expected.value} to {state.value}")
    channel, customer = move.get("channel"), move.get("customer_channel")
    bridge_id = move.get("bridge_id")
    sides = move.get("sides") if state.is_terminal else None
    moved, with_event = _move(
        state, channel is not None, customer is not None, bridge_id is not None, sides is not None
    )
    params = {
        "p_call": call_id,
        "p_expected": expected.value,
        "p_state": state.value,
        "p_at": move["at"],
        "p_reason": move.get("reason"),
        "p_first_leg": channel,
        "p_customer_leg": customer,
        "p_bridge": bridge_id,
    }
    if sides is not None:
        params |= {f"p_{name}": value for name, value in side_values(sides).items()}
    return moved, with_event, params


class _Recorder(Protocol):
    """What `History._write` needs: `CallTrackingRepo.record`, or `_DriverMoves.record`."""

    async def record(
        self, call_id: str, state: CallState, **move: Unpack[MoveDetails]
    ) -> TransitionResult: ...


class _DriverMoves:
    """`CallTrackingRepo.record` on an asyncpg connection: PostgreSQL's path for the tracker's
    writes (see db.per_call), the same compare-and-set statement, one round trip a move."""

    def __init__(self, statements: AsyncpgStatements, connection: asyncpg.Connection) -> None:
        self._statements, self._connection = statements, connection

    async def record(
        self, call_id: str, state: CallState, **move: Unpack[MoveDetails]
    ) -> TransitionResult:
        _, with_event, params = _prepare_move(call_id, state, **move)
        if await self._statements.rowcount(self._connection, with_event, params) == 1:
            return TransitionResult(True, state)
        # A new statement: under READ COMMITTED it sees the other writer's committed move.
        current = await self._statements.value(self._connection, _STATE_OF, params)
        return TransitionResult(False, None if current is None else CallState(current))


class CallTrackingRepo:
    """``calls.state`` and its times, and the ``call_events`` history."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_transition(
        self, call_id: str, state: CallState, **move: Unpack[MoveDetails]
    ) -> TransitionResult:
        """Move the call from ``expected`` to ``state`` and add its event, in one transaction.

        Compare-and-set: the UPDATE only matches while the row is still in ``expected``, so of
        two writers that both saw ``expected`` exactly one moves the call; the other learns
        the state it is in now. ``expected == state == initiated`` records the opening event
        (tracking began). A terminal move's ``sides`` are stored by the same statement. Raises
        ValueError for a move the state machine does not allow.
        """
        result = await self.record(call_id, state, **move)
        await self.session.commit()
        return result

    async def record(
        self, call_id: str, state: CallState, **move: Unpack[MoveDetails]
    ) -> TransitionResult:
        """`record_transition` in the session's transaction, which the caller commits.

        On PostgreSQL a move and its event are one statement, one round trip; elsewhere
        (SQLite) an UPDATE and, if the row moved, an INSERT. The current state is read only
        when the row did not move.
        """
        moved, with_event, params = _prepare_move(call_id, state, **move)
        connection = await self.session.connection()
        if connection.dialect.name == "postgresql":
            applied = (await connection.execute(with_event, params)).rowcount == 1
        else:
            applied = (await connection.execute(moved, params)).rowcount == 1
            if applied:
                event = {
                    "call_id": call_id,
                    "state": state.value,
                    "at": params["p_at"],
                    "detail": params["p_reason"],
                }
                await connection.execute(_ADD_EVENT, event)
        if applied:
            return TransitionResult(True, state)
        # A new statement: under READ COMMITTED it sees the other writer's committed move.
        current = await connection.scalar(_STATE_OF, params)
        return TransitionResult(False, None if current is None else CallState(current))

    async def end(
        self, call_id: str, state: CallState, *, expected: CallState, at: datetime, reason: str
    ) -> TransitionResult:
        """`record_transition` to a terminal ``state`` for a call this process does not follow,
        with the sides its row's times say (``row_seen``; nobody here heard Asterisk's words).

        The sides come from the row as read just before the move: a row that is no longer in
        ``expected`` makes the compare-and-set fail, so the sides stored always belong to the
        state the move started from.
        """
        record = await self.get(call_id)
        sides = None if record is None else decide(state, row_seen(record, at), reason=reason)
        return await self.record_transition(
            call_id, state, expected=expected, at=at, reason=reason, sides=sides
        )

    async def live_calls(self) -> Sequence[CallRecord]:
        """Every call in a non-terminal state, oldest first (what a restarted tracker resumes)."""
        stmt = (
            select(CallRecord)
            .where(CallRecord.state.in_([state.value for state in LIVE]))
            .order_by(CallRecord.created_at, CallRecord.id)
            .execution_options(populate_existing=True)
        )
        return list(await self.session.scalars(stmt))

    async def end_stale(self, created_before: datetime, at: datetime, reason: str) -> int:
        """End as ``lost`` up to 500 live calls created before ``created_before``; how many.

        Rows older than any real call (those from before tracking existed, say) are ended in
        small batches, each in one transaction, instead of being loaded and polled one by one.
        Their sides are ``decide``'s for ``lost``, from the row: answered where a side had
        answered, else unknown (the customer only once the agent had answered); no ring times.
        """
        live = [state.value for state in LIVE]
        ids = select(CallRecord.id).where(
            CallRecord.state.in_(live), CallRecord.created_at < created_before
        )
        batch = list(await self.session.scalars(ids.limit(500)))
        if not batch:
            return 0
        moment = literal(at, UtcDateTime())
        lost = CallState.LOST.value
        answered, unknown = SideOutcome.ANSWERED.value, SideOutcome.UNKNOWN.value
        agent_up = CallRecord.agent_answered_at.is_not(None)
        agent = case((agent_up, answered), else_=unknown)
        customer = case(
            (CallRecord.customer_answered_at.is_not(None), answered),
            (agent_up, unknown),
            else_=null(),
        )
        await self.session.execute(
            insert(CallEventRecord).from_select(
                ["call_id", "state", "at", "detail"],
                select(CallRecord.id, literal(lost), moment, literal(reason)).where(
                    CallRecord.id.in_(batch), CallRecord.state.in_(live)
                ),
            )
        )
        await self.session.execute(
            update(CallRecord)
            .where(CallRecord.id.in_(batch), CallRecord.state.in_(live))
            .values(
                state=lost,
                state_changed_at=moment,
                ended_at=moment,
                end_reason=reason,
                agent_outcome=agent,
                customer_outcome=customer,
            )
            .execution_options(synchronize_session=False)
        )
        await self.session.commit()
        return len(batch)

    async def live_calls_with_hosts(self) -> list[tuple[CallRecord, PbxHost | None]]:
        """``live_calls`` with each one's ``pbx_hosts`` row (None: defaults, or a bad address)."""
        rows = await self.live_calls()
        hosts: dict[str, PbxHost | None] = {}
        for address in {row.host for row in rows}:
            try:
                hosts[address] = await HostRepo(self.session).get(address)
            except InvalidInput:
                hosts[address] = None  # build_target then names the bad address
        return [(row, hosts[row.host]) for row in rows]

    async def events(self, call_id: str) -> Sequence[CallEventRecord]:
        """The call's transitions in the order they were recorded."""
        stmt = (
            select(CallEventRecord)
            .where(CallEventRecord.call_id == call_id)
            .order_by(CallEventRecord.id)
        )
        return list(await self.session.scalars(stmt))

    async def get(self, call_id: str) -> CallRecord | None:
        """One call, freshly read."""
        return await self.session.get(CallRecord, call_id, populate_existing=True)

    @staticmethod
    def unfollowable(row: CallRecord) -> tuple[CallState, str] | None:
        """How a live row that cannot be followed again must end, or None if it can be.

        A failed originate whose state was never stored is ``failed``; a call without a verified
        first leg (the service stopped mid-originate, or its result is unknown) is ``lost``.
        """
        if row.outcome == "failed" and row.state == CallState.INITIATED.value:
            return CallState.FAILED, row.error or "the originate failed"
        if not row.channel:
            return CallState.LOST, "the originate was never verified"
        return None


async def call_events(session: AsyncSession, call_id: str) -> Sequence[CallEventRecord]:
    """The call's transitions in order (``CallTrackingRepo.events`` for a session at hand)."""
    return await CallTrackingRepo(session).events(call_id)


class Subscription:
    """Stored transitions in order: ``async for t in sub`` until ``close()`` or tracker stop.

    A subscriber ``maxsize`` behind loses the oldest (counted in ``dropped``): a slow consumer
    must never hold the tracker up.
    """

    def __init__(self, owner: set[Subscription], maxsize: int) -> None:
        self._owner = owner
        self._queue: asyncio.Queue[Transition | None] = asyncio.Queue(maxsize)
        self.dropped = 0

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
        self._queue.put_nowait(item)


@dataclass(frozen=True, slots=True)
class _Outcome:
    """What storing a call's pending transitions did, applied to its History after the commit."""

    persisted: CallState  # the state the row holds now
    settled: int  # how many pending transitions, from the oldest, were stored or dropped
    stored: list[Transition]  # those stored, in order
    done: bool  # False: the row is not there yet


@dataclass(eq=False)
class History:
    """A call's transitions not yet stored, and the state its row holds (``persisted``)."""

    persisted: CallState = CallState.INITIATED
    pending: deque[Transition] = field(default_factory=deque)

    async def store(
        self, sessions: async_sessionmaker[AsyncSession], stored: Callable[[Transition], None]
    ) -> bool:
        """Store the pending transitions in order, calling ``stored`` after each one.

        False while the row is not there yet (the service inserts it in the background);
        DatabaseUnavailable when the database fails. When another writer moved the call first,
        its state stands: transitions no longer possible from there are dropped.
        """
        return (await store_histories(sessions, [self], stored))[0]

    async def _write(self, repo: _Recorder) -> _Outcome:
        """Write the pending transitions (compare-and-set each) without changing this History:
        until the transaction commits, none of it has happened."""
        persisted, steps, index = self.persisted, list(self.pending), 0
        stored: list[Transition] = []
        while index < len(steps):
            step = steps[index]
            opening = step.state is persisted is CallState.INITIATED
            if not opening and not can_transition(persisted, step.state):
                index += 1  # no longer possible from what the row holds
                continue
            result = await repo.record(
                step.call_id,
                step.state,
                expected=persisted,
                at=step.at,
                reason=step.reason,
                channel=step.channel,
                customer_channel=step.customer_channel,
                bridge_id=step.bridge_id,
                sides=step.sides,
            )
            if result.current is None:
                return _Outcome(persisted, index, stored, done=False)
            persisted = result.current
            if result.applied:
                stored.append(step)
                index += 1
            elif persisted.is_terminal:
                index = len(steps)  # another writer ended the call: nothing more to store
            elif not can_transition(persisted, step.state):
                index += 1
        return _Outcome(persisted, index, stored, done=True)

    def _settle(self, outcome: _Outcome, stored: Callable[[Transition], None]) -> bool:
        self.persisted = outcome.persisted
        for _ in range(outcome.settled):
            self.pending.popleft()
        for step in outcome.stored:
            stored(step)
        return outcome.done


async def store_histories(
    sessions: async_sessionmaker[AsyncSession],
    histories: Sequence[History],
    stored: Callable[[Transition], None],
    statements: PerCallStatements | None = None,
) -> list[bool]:
    """Store the pending transitions of several calls (a tracker tick's, of one host); done?

    One transaction for all of them: a tick pays one connection checkout (with its pre-ping),
    one BEGIN and one COMMIT however many calls moved, where it paid them per transition; each
    transition is still its own compare-and-set. ``stored`` is called with each transition
    stored, in order, once the transaction has committed. ``False`` for a call whose row is not
    there yet (the service inserts it in the background). DatabaseUnavailable when the
    database fails: then nothing was stored, every transition stays pending for the next try.

    The calls are written in the order of their ids, so two writers of the same calls (a
    second instance) lock the rows in the same order and cannot deadlock each other. Given
    asyncpg's statements (PostgreSQL), the same statements run through them, not the session.
    """
    todo = sorted(
        (index for index, history in enumerate(histories) if history.pending),
        key=lambda index: histories[index].pending[0].call_id,
    )
    done = [True] * len(histories)
    if not todo:
        return done
    single = sum(len(histories[index].pending) for index in todo) == 1
    async with db_step("recording calls' states"):
        if isinstance(statements, AsyncpgStatements):
            # One transition is one statement, atomic by itself: no BEGIN and COMMIT then.
            async with statements.connection(transaction=not single) as connection:
                moves = _DriverMoves(statements, connection)
                outcomes = [(index, await histories[index]._write(moves)) for index in todo]
        else:
            async with sessions() as session:
                if single and _postgresql(session):
                    # One transition is one statement, atomic by itself (at most one write of
                    # it can apply): autocommit spares the BEGIN and COMMIT round trips.
                    await write_connection(session)
                repo = CallTrackingRepo(session)
                outcomes = [(index, await histories[index]._write(repo)) for index in todo]
                await session.commit()
    for index, outcome in sorted(outcomes, key=lambda item: item[0]):
        done[index] = histories[index]._settle(outcome, stored)
    return done
