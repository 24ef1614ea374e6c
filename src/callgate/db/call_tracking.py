"""Call tracking in the database: transitions (compare-and-set), live calls, events.

Kept apart from ``repositories``: the tracker is its only writer. As there, every write commits
its own transaction and a session is never held across an SSH round trip. ``History`` stores a
call's transitions in order, and settles with another writer that moved the call first;
``Subscription`` hands the stored ones to a consumer (WebSocket, webhooks, ``calls watch``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.calls.states import LIVE, RANK, CallState, can_transition
from callgate.db.guard import db_step
from callgate.db.models import CallEventRecord, CallRecord, PbxHost, UtcDateTime
from callgate.db.repositories import HostRepo
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


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """``applied``: the row moved. Otherwise ``current`` is the row's state (None: no row)."""

    applied: bool
    current: CallState | None


class CallTrackingRepo:
    """``calls.state`` and its times, and the ``call_events`` history."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_transition(
        self,
        call_id: str,
        state: CallState,
        *,
        expected: CallState,
        at: datetime,
        reason: str | None = None,
        channel: str | None = None,
        customer_channel: str | None = None,
        bridge_id: str | None = None,
    ) -> TransitionResult:
        """Move the call from ``expected`` to ``state`` and add its event, in one transaction.

        Compare-and-set: the UPDATE only matches while the row is still in ``expected``, so of
        two writers that both saw ``expected`` exactly one moves the call; the other learns
        the state it is in now. ``expected == state == initiated`` records the opening event
        (tracking began). Raises ValueError for a move the state machine does not allow.
        """
        opening = state is expected is CallState.INITIATED
        if not opening and not can_transition(expected, state):
            raise ValueError(f"a call cannot go from {expected.value} to {state.value}")
        moment = literal(at, UtcDateTime())
        values: dict[str, Any] = {"state": state.value, "state_changed_at": moment}
        # A later state implies the earlier phases began; COALESCE keeps a time already known.
        if state in LIVE and RANK[state] >= RANK[CallState.AGENT_ANSWERED]:
            values["agent_answered_at"] = func.coalesce(CallRecord.agent_answered_at, moment)
        if state is CallState.CONNECTED:
            values["customer_answered_at"] = func.coalesce(CallRecord.customer_answered_at, moment)
        if state.is_terminal:
            values["ended_at"] = moment
            values["end_reason"] = reason
        if channel is not None:  # the service normally stores it; a fallback for resume
            values["channel"] = func.coalesce(CallRecord.channel, channel)
        if customer_channel is not None:
            values["customer_channel"] = customer_channel
        if bridge_id is not None:
            values["bridge_id"] = bridge_id
        result = await self.session.execute(
            update(CallRecord)
            .where(CallRecord.id == call_id, CallRecord.state == expected.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        if getattr(result, "rowcount", 0) != 1:
            await self.session.rollback()
            current = await self.session.scalar(
                select(CallRecord.state).where(CallRecord.id == call_id)
            )
            return TransitionResult(False, None if current is None else CallState(current))
        self.session.add(CallEventRecord(call_id=call_id, state=state.value, at=at, detail=reason))
        await self.session.commit()
        return TransitionResult(True, state)

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
            .values(state=lost, state_changed_at=moment, ended_at=moment, end_reason=reason)
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
        if not self.pending:
            return True
        # One session (one pooled connection) for all of them: a tick often has several.
        async with db_step("recording a call's state"), sessions() as session:
            repo = CallTrackingRepo(session)
            while self.pending:
                step = self.pending[0]
                opening = step.state is self.persisted is CallState.INITIATED
                if not opening and not can_transition(self.persisted, step.state):
                    self.pending.popleft()  # no longer possible from what the row holds
                    continue
                result = await repo.record_transition(
                    step.call_id,
                    step.state,
                    expected=self.persisted,
                    at=step.at,
                    reason=step.reason,
                    channel=step.channel,
                    customer_channel=step.customer_channel,
                    bridge_id=step.bridge_id,
                )
                if result.current is None:
                    return False
                self.persisted = result.current
                if result.applied or not can_transition(result.current, step.state):
                    self.pending.popleft()
                if result.applied:
                    stored(step)
                elif result.current.is_terminal:
                    self.pending.clear()
        return True
