"""CallService: validate, authenticate, find the host, originate, verify, record.

Order matters: every request value passes the allow-lists before any database or SSH work.
The database is read once per call (enterprise and host row in one query, so CLI changes apply
to the next call) and written off the critical path: the call row is inserted while the
originate runs, and the outcome is stored after the answer has gone out. Both writes are
tracked and drained at shutdown, so none is lost. The read and both writes are one statement
each, committed by itself, retried once on a connection that died while pooled
(`bounded_retry`).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from callgate import errors, metrics
from callgate.calls.dedupe import Key, RecentCalls, SharedClaims
from callgate.calls.history import end_call
from callgate.calls.own_channels import OLDEST, RECENT, own_channels
from callgate.calls.rate_limits import Limits, RateLimited
from callgate.calls.reading import CallReads
from callgate.calls.targets import build_target
from callgate.db.advisory import AdvisoryLocks, Held
from callgate.db.call_tracking import channels_of, request_hangup
from callgate.db.calls import (
    call_exists,
    finish_call,
    finish_call_releasing,
    finish_values,
    insert_call,
    new_call_values,
)
from callgate.db.enterprises import EnterpriseRow, by_secret_with_host
from callgate.db.executor import Database
from callgate.db.guard import bounded, bounded_retry, db_step
from callgate.db.hosts import get_host
from callgate.db.models import utcnow
from callgate.domain.destinations import DestinationPolicy, effective_policy
from callgate.domain.hosts import HostRow
from callgate.domain.states import CallState
from callgate.logs import LinesSoon, get_logger
from callgate.pbx.client import PbxClient
from callgate.pbx.parsing import Channel
from callgate.pbx.transport import HostTarget
from callgate.redaction import mask_phone, mask_secret
from callgate.settings import Settings
from callgate.validation import (
    is_plausible_secret,
    normalize_phone,
    validate_extension,
    validate_host,
)

if TYPE_CHECKING:  # the tracker is handed in by the app; no import at run time needed
    from callgate.calls.tracker import CallTracker

log = get_logger("callgate.calls")
HUNG_UP = "hung up through the API"  # the end reason of a call canceled through callgate


@dataclass(frozen=True, slots=True)
class Enterprise:
    """An authorised enterprise: its row's values and the host its calls go to."""

    number: str
    name: str
    ip: str
    target: HostTarget
    policy: DestinationPolicy  # where it may call (domain/destinations.py)


class CallNotLive(errors.CallgateError):
    code = "call_not_live"


@dataclass(frozen=True, slots=True)
class CallRequest:
    """What to dial, validated; the v1 API adds its options."""

    extension: str
    phone: str
    ring_timeout: int | None = None
    metadata: dict[str, Any] | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    call_id: str | None = None  # set when the row must carry a known id (idempotency)


@dataclass(frozen=True, slots=True)
class PlacedCall:
    call_id: str
    enterprise: Enterprise
    extension: str
    phone: str
    host: str
    channel: str
    response_time_ms: float
    elsewhere: bool = False  # placed by another instance within the double-click window


class CallService:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        pbx: PbxClient,
        tracker: CallTracker | None = None,
        *,
        reads: CallReads,
        limits: Limits,
        claims: SharedClaims | None = None,
        originates: AdvisoryLocks | None = None,
        coordinated: Callable[[], bool] = lambda: True,
    ) -> None:
        self._settings = settings
        self._limits = limits
        self._database = database
        self._pbx = pbx
        self._reads = reads
        self._tracker = tracker  # follows each verified call to its end (states, events)
        self._writes: set[asyncio.Task[None]] = set()
        self._recent: RecentCalls[PlacedCall] = RecentCalls(settings.duplicate_window)
        # Several instances on one database: the guard and the originates' order held there.
        self._claims = claims if settings.duplicate_window > 0 else None
        self._originates = originates
        # Whether other instances may run now (`Leases.alone`): alone, the process's own
        # guard and order suffice and the shared ones cost nothing.
        self._coordinated = coordinated

    def validate(self, extension: str | None, phone: str | None) -> tuple[str, str]:
        """The allow-lists, first of all: a bad value is rejected before any other work."""
        return validate_extension(extension, self._settings.code_max_length), normalize_phone(phone)

    async def authorise(self, secret: str | None, *, client: str | None = None) -> Enterprise:
        """The enterprise of this secret and its host, SSH settings merged (one database read).

        ``client``: the address the request came from (None: not from the network), whose
        failed attempts are limited; checked before the secret is looked at.
        """
        await self.check_client(client)
        try:
            return await self._authorise(secret)
        except errors.AuthenticationFailed:
            await self.client_failed(client)
            raise

    async def check_client(self, client: str | None) -> None:
        """RateLimited when ``client`` (an address; None: not from the network) has failed to
        authenticate too often lately: with an enterprise's secret or the admin token, one
        count per address."""
        if client is not None:
            await self._limits.check_authentication(client)

    async def client_failed(self, client: str | None) -> None:
        """Count a failed authentication of ``client`` (see `check_client`)."""
        if client is not None:
            await self._limits.failed_authentication(client)

    async def _authorise(self, secret: str | None) -> Enterprise:
        if not is_plausible_secret(secret):
            raise errors.AuthenticationFailed("Invalid clientId")

        async def lookup() -> tuple[EnterpriseRow, HostRow | None, str, DestinationPolicy]:
            found = await by_secret_with_host(self._database, secret)
            if found is None:
                raise errors.AuthenticationFailed("Invalid clientId")
            enterprise, host, own, default = found
            policy = effective_policy(own, default, self._settings.default_region)
            # A bad `ip` is a configuration error: reported, and nothing is executed.
            address = validate_host(enterprise.ip)
            if host is None and address != enterprise.ip:  # stored in another spelling
                host = await get_host(self._database, address)
            return enterprise, host, address, policy

        row, host, address, policy = await bounded_retry("checking the clientId", lookup)
        target = build_target(self._settings, address, host)
        return Enterprise(row.number, row.name, row.ip, target, policy)

    async def place_call(
        self,
        secret: str | None,
        extension: str | None,
        phone: str | None,
        *,
        request_id: str,
        client: str | None = None,
    ) -> PlacedCall:
        """The legacy flow: validate, authorise, then place (or reuse a double click's call)."""
        started = time.perf_counter()
        extension, number = self.validate(extension, phone)
        lines = LinesSoon(turns=2)  # the read below runs in a task of its own
        lines.add(
            log.info,
            "call requested",
            request_id=request_id,
            ext=extension,
            phone=mask_phone(number),
            client=mask_secret(secret),
        )
        try:
            enterprise = await self.authorise(secret, client=client)
        finally:
            lines.flush()  # before any line about the outcome
        request = CallRequest(extension, number)
        placed, _ = await self.place(enterprise, request, request_id=request_id, started=started)
        return placed

    async def place(
        self,
        enterprise: Enterprise,
        request: CallRequest,
        *,
        request_id: str,
        started: float | None = None,
        record_first: bool = False,
    ) -> tuple[PlacedCall, bool]:
        """Place a call for an authorised enterprise; (call, reused): see the double-click guard.

        `record_first` writes the call row before dialling (the v1 API, whose clients may read
        the call right after the answer); otherwise the row is written while the PBX works.
        """
        began = started if started is not None else time.perf_counter()
        self._check_destination(enterprise, request, request_id)
        if request.idempotency_key:  # the client said which requests are one: no guessing
            call_id = request.call_id or str(uuid.uuid4())
            placed = await self._limited(enterprise, request, request_id, began, True, call_id)
            return placed, False
        key = (enterprise.number, request.extension, request.phone)
        placed, reused = await self._recent.once(
            key, lambda: self._claimed(key, enterprise, request, request_id, began, record_first)
        )
        return placed, reused or placed.elsewhere

    async def _claimed(
        self,
        key: Key,
        enterprise: Enterprise,
        request: CallRequest,
        request_id: str,
        started: float,
        record_first: bool,
    ) -> PlacedCall:
        """The call, unless another instance placed it within the window (`SharedClaims`):
        then that call, once its outcome is stored; a failed one is placed again here."""
        for _ in range(3):
            call_id = request.call_id or str(uuid.uuid4())
            if self._claims is None or not self._coordinated():
                return await self._limited(
                    enterprise, request, request_id, started, record_first, call_id
                )
            # The originate lock is tried by the claim's statement: one round trip less.
            lock = None
            if self._originates is not None:
                lock = _originate_lock(enterprise.target, request.extension)
            try:
                holder = await self._claims.claim(key, call_id, lock=lock)
                if holder is None:
                    try:
                        return await self._limited(
                            enterprise, request, request_id, started, record_first, call_id
                        )
                    except BaseException:
                        await self._claims.let_go(key, call_id)
                        raise
            finally:  # refused, placed elsewhere, or placed here without the lock
                if lock is not None and self._originates is not None:
                    await self._originates.release_unused(lock)
            record = await self._claims.outcome(holder, self._settings.verify_window + 5.0)
            if record is not None and record.outcome == "success" and record.channel:
                log.info("repeated call answered with another instance's", call_id=holder)
                return PlacedCall(
                    call_id=record.id,
                    enterprise=enterprise,
                    extension=record.extension,
                    phone=record.phone,
                    host=record.host,
                    channel=record.channel,
                    response_time_ms=_ms(started),
                    elsewhere=True,
                )
            await asyncio.sleep(0.1)  # failed there: its claim is let go in a moment
            if record is None:  # nothing dialled here: the client may ask again
                raise errors.PbxUnreachable(
                    "the same call, placed by another instance just before, has no outcome yet",
                    host=enterprise.target.label,
                )
        raise errors.CallNotCreated(  # pragma: no cover - three failures in a row elsewhere
            "the same call failed on other instances", host=enterprise.target.label
        )

    def _check_destination(
        self, enterprise: Enterprise, request: CallRequest, request_id: str
    ) -> None:
        """The enterprise's destination policy, before anything is counted, written or dialled
        (DestinationNotAllowed, its message naming the number masked)."""
        try:
            enterprise.policy.check(request.extension, request.phone)
        except errors.DestinationNotAllowed as exc:
            metrics.rejected("destination_policy")
            _refused(request_id, enterprise, request, exc)
            raise

    async def _limited(
        self,
        enterprise: Enterprise,
        request: CallRequest,
        request_id: str,
        started: float,
        record_first: bool,
        call_id: str,
    ) -> PlacedCall:
        """The call, within the rate and live-call limits (RateLimited: no row, no dial)."""
        live = self._limits.live
        try:
            self._limits.reserve(call_id, enterprise.number, enterprise.target.address)
            try:
                await self._limits.check_call(enterprise.number, request.extension, request.phone)
                placed = await self._originate(
                    enterprise, request, request_id, started, record_first, call_id
                )
            except BaseException:
                live.release(call_id)
                raise
        except RateLimited as exc:
            _refused(request_id, enterprise, request, exc)
            raise
        live.placed(call_id)
        return placed

    async def _originate(
        self,
        enterprise: Enterprise,
        request: CallRequest,
        request_id: str,
        started: float,
        record_first: bool,
        call_id: str,
    ) -> PlacedCall:
        extension, number, target = request.extension, request.phone, enterprise.target
        bound = log.bind(
            request_id=request_id,
            ext=extension,
            phone=mask_phone(number),
            enterprise=enterprise.name,
            enterprise_number=enterprise.number,
            call_id=call_id,
        )
        lines = LinesSoon()
        lines.add(bound.info, "client authorised")
        inserted = self._spawn(self._insert(call_id, enterprise, request, request_id))
        if record_first or request.call_id:
            await inserted  # a database fault now stops the call before anything is dialled
        lines.add(bound.info, "ssh originate", host=target.label, elapsed_ms=_ms(started))
        if self._tracker is not None:  # its listening console hears the call from the start
            self._tracker.listen_to(target)
        held: Held | None = None
        try:
            if self._originates is not None and self._coordinated():
                # The new channel is told apart by its order (`PbxClient.originate`): one
                # originate per (host, extension) at a time across instances. Often taken by
                # the claim already; let go by the statement storing the outcome (`_finish`).
                held = await self._originates.acquire(_originate_lock(target, extension))
            originated = await self._pbx.originate(
                target, extension, number, ring_timeout=request.ring_timeout
            )
        except errors.PbxError as exc:
            lines.flush()
            # What the failure means for the call is decided once, by `exc.outcome` (the v1
            # problem shows it as is); the call log has no `not_dialled`: such a call `failed`.
            outcome = "unknown" if exc.outcome == "unknown" else "failed"
            metrics.placed(enterprise.number, outcome)
            bound.warning(
                "call failed",
                host=target.label,
                error=exc.code,
                detail=exc.message,
                outcome=outcome,
                elapsed_ms=_ms(started),
            )
            if self._tracker is not None:  # the call's state: failed, or lost if it may exist
                unknown = outcome == "unknown"
                self._tracker.record_failure(
                    call_id, exc.message, maybe_created=unknown, enterprise_number=enterprise.number
                )
            finishing = self._spawn(
                self._finish(inserted, call_id, outcome, started, error=exc, held=held)
            )
            if record_first:
                await finishing
            raise
        except BaseException:
            if held is not None and self._originates is not None:
                await self._originates.release(held)
            raise
        # Spawned first: the lock it lets go is held until then.
        channel = originated.channel.name
        finishing = self._spawn(
            self._finish(inserted, call_id, "success", started, channel=channel, held=held)
        )
        metrics.placed(enterprise.number, "success")
        elapsed = _ms(started)
        # Written once the answer is on its way: the client waits for the answer, not the line
        # (the access line follows it, see api.middleware).
        lines.add(
            bound.info,
            "cli done",
            host=target.label,
            channel=channel,
            elapsed_ms=elapsed,
        )
        if self._tracker is not None:
            self._tracker.track(
                call_id,
                target,
                originated.channel,
                number,
                enterprise_number=enterprise.number,
                since=originated.took,
            )
        if record_first:
            await finishing
        return PlacedCall(
            call_id=call_id,
            enterprise=enterprise,
            extension=extension,
            phone=number,
            host=target.address,
            channel=channel,
            response_time_ms=elapsed,
        )

    async def hangup(self, enterprise: Enterprise, call_id: str) -> None:
        """Hang one of the enterprise's live calls up; it ends as `canceled`.

        `CallNotLive` when it has ended or was never verified. Through the tracker when this
        process follows the call. Otherwise (another process follows it, as for ``callgate
        call hangup --direct``, or nobody does) the channel goes directly, its ;1 taking the ;2
        and the bridged customer leg with it, and the row is moved to `canceled` here.
        """
        call = await self._reads.current(enterprise.number, call_id)
        state = CallState(call.state)
        if state.is_terminal or not call.channel:
            raise CallNotLive(f"the call is {call.state}: nothing to hang up")
        if self._tracker is not None and await self._tracker.cancel(call.id, HUNG_UP):
            return
        async with db_step("recording the hangup"):  # before it: the follower's end waits
            await request_hangup(self._database, call.id, utcnow())
        await self._pbx.hangup(enterprise.target, call.channel)
        await self._record_canceled(call.id, state)

    async def channels(self, enterprise: Enterprise) -> list[Channel]:
        """The live channels of the enterprise's own calls on its host (`own_channels`): never
        another enterprise's sharing the host."""
        listing = await self._pbx.channels(enterprise.target)
        now = utcnow()
        async with db_step("reading the calls' channels"):
            calls = await channels_of(
                self._database,
                enterprise.number,
                enterprise.target.address,
                since=now - OLDEST,
                ended_after=now - RECENT,
            )
        return own_channels(listing, calls)

    async def _record_canceled(self, call_id: str, seen: CallState) -> None:
        """Compare-and-set, like the tracker's moves: if the follower ended the call meanwhile
        (it saw the channels go first), its state stands."""
        expected: CallState | None = seen
        async with db_step("recording the hangup"):
            while expected is not None and not expected.is_terminal:
                moved = await end_call(  # with the sides the row's times say
                    self._database,
                    call_id,
                    CallState.CANCELED,
                    expected=expected,
                    at=utcnow(),
                    reason=HUNG_UP,
                )
                expected = None if moved.applied else moved.current

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def drain(self, within: float = 10.0) -> None:
        """Wait for the call-log writes still running (shutdown)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=within)

    async def _insert(
        self, call_id: str, enterprise: Enterprise, request: CallRequest, request_id: str
    ) -> None:
        values = new_call_values(
            id=call_id,
            enterprise_number=enterprise.number,
            extension=request.extension,
            phone=request.phone,
            host=enterprise.target.address,
            request_id=request_id,
            ring_timeout=request.ring_timeout,
            metadata=request.metadata,
            idempotency_key=request.idempotency_key,
            request_hash=request.request_hash,
        )
        attempts = 0

        async def write() -> None:
            nonlocal attempts
            attempts += 1
            try:
                await insert_call(self._database, values)
            except IntegrityError:
                if attempts > 1 and await self._row_exists(call_id):
                    return  # the first attempt's row landed before its connection died
                raise

        try:
            await bounded_retry("recording the call", write)
        except errors.DatabaseUnavailable as exc:
            # The log line above already holds everything the row would have held.
            log.error("call not recorded", call_id=call_id, detail=exc.message)
            raise

    async def _finish(
        self,
        inserted: asyncio.Task[None],
        call_id: str,
        outcome: str,
        started: float,
        *,
        channel: str | None = None,
        error: errors.CallgateError | None = None,
        held: Held | None = None,
    ) -> None:
        """Store the outcome once the row exists; a database fault is logged, not raised.
        ``held``: the originate lock, let go by the same statement (else alone)."""
        locks, unused = self._originates, held
        try:
            await inserted
            values = finish_values(
                call_id,
                outcome,
                error_code=error.code if error else None,
                error=error.message if error else None,
                channel=channel,
                response_time_ms=_ms(started),
            )
            if locks is not None and held is not None:
                unused = None  # let go by the statement, or when it fails
                try:
                    await bounded(
                        "recording the outcome",
                        lambda: finish_call_releasing(locks, values, held),
                    )
                    return
                except errors.DatabaseUnavailable as exc:
                    if not exc.retryable:
                        raise
            # Retrying is safe: the same UPDATE twice stores the same outcome.
            await bounded_retry(
                "recording the outcome", lambda: finish_call(self._database, values)
            )
        except errors.DatabaseUnavailable as exc:
            log.error(
                "call outcome not recorded",
                call_id=call_id,
                outcome=outcome,
                channel=channel,
                detail=exc.message,
            )
        finally:
            if locks is not None and unused is not None:
                await locks.release(unused)

    async def _row_exists(self, call_id: str) -> bool:
        return await call_exists(self._database, call_id)


def _refused(
    request_id: str, enterprise: Enterprise, request: CallRequest, exc: errors.CallgateError
) -> None:
    """The line of a call refused before anything was written or dialled (the number masked)."""
    log.warning(
        "call refused",
        request_id=request_id,
        enterprise_number=enterprise.number,
        ext=request.extension,
        phone=mask_phone(request.phone),
        reason=exc.message,
    )


def _originate_lock(target: HostTarget, extension: str) -> str:
    """The key that orders originates for one extension on one host across instances."""
    return f"originate:{target.address}:{target.port}:{extension}"


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
