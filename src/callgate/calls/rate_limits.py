"""Rate and concurrency limits per enterprise, extension, destination and client address.

Rates are moving windows of the ``limits`` library (its asyncio strategies), stored in memory
or, with ``CALLGATE_REDIS_URL``, in Redis so that several instances share them. A call is
checked against every rate before any is consumed: a refused call uses up nothing, and the
calls let through are counted once each. Failed authentications are counted per client
address and checked before a secret is looked up, so a guessing client is refused without a
database read.

Live calls (placed by this service and not ended) are counted here, per enterprise and per
host: a call holds its place from just before the originate until it fails, or until the
tracker no longer follows it. A restarted service counts again the live calls its tracker
resumes from the database (`adopt`). With several instances on one PostgreSQL, the live
calls of the others count too: read from the database every ``RECOUNT`` seconds
(`keep_counting_elsewhere`), so the caps hold across instances to within the calls placed
elsewhere since the last read.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from limits import (
    RateLimitItem,
    RateLimitItemPerDay,
    RateLimitItemPerMinute,
    RateLimitItemPerSecond,
)
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string

from callgate import errors, metrics
from callgate.db.call_tracking import live_calls
from callgate.db.enterprise_limits import list_limits
from callgate.db.executor import Executor
from callgate.db.guard import db_step
from callgate.db.live_counts import live_call_keys
from callgate.logs import get_logger
from callgate.settings import ENTERPRISE_LIMITS, Settings

log = get_logger("callgate.limits")

ENTERPRISE = "calls for this enterprise"
EXTENSION = "calls from this extension"
NUMBER = "calls to this number"
AUTH = "failed authentications from this address"
STORE_TIMEOUT = 1.0  # seconds for a Redis answer: a call waits for it
LIVE_RETRY_AFTER = 5  # seconds a client refused for live calls is told to wait
RECOUNT = 1.0  # seconds between two reads of the other instances' live calls
# The scope a refusal is counted under (callgate_rejections_total).
_SCOPES = {
    ENTERPRISE: "enterprise_rate",
    EXTENSION: "extension_rate",
    NUMBER: "destination_rate",
    AUTH: "auth_failures",
    "enterprise": "enterprise_live_calls",
    "host": "host_live_calls",
}


class RateLimited(errors.CallgateError):
    """Over a rate or concurrency limit: refused before anything was dialled."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Rate:
    item: RateLimitItem
    what: str  # for the refusal's message: never a number or a secret


def _rate(amount: int, item: type[RateLimitItem], multiples: int, what: str) -> _Rate | None:
    return _Rate(item(amount, multiples, namespace="callgate"), what) if amount > 0 else None


def storage_for(settings: Settings) -> Storage:
    """Redis when ``CALLGATE_REDIS_URL`` is set (keys under ``CALLGATE_REDIS_PREFIX``), else
    this process's memory."""
    if settings.redis_url is None:
        storage = storage_from_string("async+memory://")
    else:
        url = settings.redis_url.get_secret_value()
        storage = storage_from_string(
            f"async+{url}",
            key_prefix=settings.redis_prefix,
            implementation="redispy",  # the declared client (limits' default is coredis)
            wrap_exceptions=True,
            socket_timeout=STORE_TIMEOUT,
            socket_connect_timeout=STORE_TIMEOUT,
        )
    assert isinstance(storage, Storage)
    return storage


class LiveCalls:
    """This instance's live calls per enterprise and per host (see the module docstring).

    ``followed`` names the calls the tracker follows now; a call it no longer follows has
    ended and gives its place back, looked at only when a cap is reached.
    """

    def __init__(
        self, per_enterprise: int, per_host: int, followed: Callable[[], Collection[str]]
    ) -> None:
        self._caps = {"enterprise": per_enterprise, "host": per_host}
        self._followed = followed
        self._calls: dict[str, tuple[str, str]] = {}  # call id → (enterprise, host)
        self._pending: set[str] = set()  # reserved, originate not yet answered
        self._counts: Counter[tuple[str, str]] = Counter()
        # The live calls of other instances, as the database held them at the last read.
        self._elsewhere: Counter[tuple[str, str]] = Counter()
        self._recounted = False  # whether the database's live calls are read (several instances)

    def __len__(self) -> int:
        return len(self._calls)

    def reserve(
        self, call_id: str, enterprise: str, host: str, *, enterprise_cap: int | None = None
    ) -> None:
        """Hold a place for a call about to be dialled (RateLimited when a cap is reached);
        ``enterprise_cap`` replaces the enterprise's default cap."""
        caps = {
            "enterprise": self._caps["enterprise"] if enterprise_cap is None else enterprise_cap
        }
        keys = (("enterprise", enterprise), ("host", host))
        if self._full(keys, caps):
            self._prune()
            for key in keys:
                if self._full((key,), caps):
                    metrics.rejected(_SCOPES[key[0]])
                    raise RateLimited(
                        f"too many live calls for this {key[0]}", retry_after=LIVE_RETRY_AFTER
                    )
        self._add(call_id, enterprise, host)
        self._pending.add(call_id)

    def placed(self, call_id: str) -> None:
        """The originate was verified: the call holds its place while the tracker follows it."""
        self._pending.discard(call_id)

    def release(self, call_id: str) -> None:
        """The call failed or ended: its place is free again."""
        self._pending.discard(call_id)
        found = self._calls.pop(call_id, None)
        if found is not None:
            self._counts[("enterprise", found[0])] -= 1
            self._counts[("host", found[1])] -= 1

    def adopt(self, calls: Iterable[tuple[str, str, str]]) -> None:
        """Count the (call id, enterprise, host) of live calls a previous run placed."""
        for call_id, enterprise, host in calls:
            if call_id not in self._calls:
                self._add(call_id, enterprise, host)

    def elsewhere(self, calls: Iterable[tuple[str, str, str]]) -> None:
        """The (call id, enterprise, host) of every live call the database holds: those not
        counted here are other instances' and count against the caps too."""
        counts: Counter[tuple[str, str]] = Counter()
        for call_id, enterprise, host in calls:
            if call_id not in self._calls:
                counts[("enterprise", enterprise)] += 1
                counts[("host", host)] += 1
        self._elsewhere = counts
        self._recounted = True

    def _add(self, call_id: str, enterprise: str, host: str) -> None:
        self._calls[call_id] = (enterprise, host)
        self._counts[("enterprise", enterprise)] += 1
        self._counts[("host", host)] += 1

    def _full(self, keys: Iterable[tuple[str, str]], caps: Mapping[str, int]) -> bool:
        def cap(kind: str) -> int:
            return caps.get(kind, self._caps[kind])

        return any(
            0 < cap(kind) <= self._counts[(kind, key)] + self._elsewhere[(kind, key)]
            for kind, key in keys
        )

    def _prune(self) -> None:
        followed = self._followed()
        for call_id in [c for c in self._calls if c not in followed and c not in self._pending]:
            if self._recounted:
                # Another instance may follow it (its host's lease): it counts there until
                # the next read of the database says whether it is still live.
                enterprise, host = self._calls[call_id]
                self._elsewhere[("enterprise", enterprise)] += 1
                self._elsewhere[("host", host)] += 1
            self.release(call_id)
        self._counts = +self._counts  # drop the zero counts


async def adopt_live_calls(live: LiveCalls, database: Executor) -> None:
    """Count the live calls the database holds (those a restarted tracker resumes)."""
    async with db_step("counting the live calls"):
        rows = await live_calls(database)
    live.adopt((row.id, row.enterprise_number, row.host) for row in rows)


async def count_elsewhere(live: LiveCalls, database: Executor) -> asyncio.Task[None]:
    """Read every instance's live calls now, then every ``RECOUNT`` seconds in a task (cancel
    it at shutdown); a failed read keeps the last counts."""

    async def count() -> None:
        try:
            async with db_step("counting the live calls of every instance"):
                live.elsewhere(await live_call_keys(database))
        except errors.DatabaseUnavailable as exc:
            log.warning("live calls of other instances not counted", detail=exc.message)

    async def keep_counting() -> None:
        while True:
            await asyncio.sleep(RECOUNT)
            await count()

    await count()
    return asyncio.create_task(keep_counting())


async def keep_refreshed(limits: Limits, database: Executor, every: float) -> None:
    """Read the enterprises' own limits every ``every`` seconds, for as long as it runs (a
    failed read keeps the last ones)."""
    while True:
        await asyncio.sleep(every)
        try:
            await limits.refresh(database)
        except errors.DatabaseUnavailable as exc:
            log.warning("enterprise limits not read", detail=exc.message)


@asynccontextmanager
async def _store() -> AsyncIterator[None]:
    """A store that cannot answer refuses the call, as a database that cannot would: nothing
    unlimited is dialled."""
    try:
        yield
    except StorageError as exc:
        name = type(exc.storage_error).__name__
        raise errors.DatabaseUnavailable(f"rate limit store unavailable ({name})") from None


@dataclass(frozen=True, slots=True)
class _Rates:
    """One enterprise's rates, and its cap of live calls."""

    enterprise: list[_Rate]
    extension: list[_Rate]
    destination: list[_Rate]
    live: int

    @classmethod
    def of(cls, values: Mapping[str, int]) -> _Rates:
        def rates(*found: _Rate | None) -> list[_Rate]:
            return [rate for rate in found if rate is not None]

        return cls(
            rates(
                _rate(values["enterprise_per_second"], RateLimitItemPerSecond, 1, ENTERPRISE),
                _rate(values["enterprise_per_minute"], RateLimitItemPerMinute, 1, ENTERPRISE),
            ),
            rates(_rate(values["extension_per_minute"], RateLimitItemPerMinute, 1, EXTENSION)),
            rates(
                _rate(values["destination_per_10_minutes"], RateLimitItemPerMinute, 10, NUMBER),
                _rate(values["destination_per_day"], RateLimitItemPerDay, 1, NUMBER),
            ),
            values["live_calls_per_enterprise"],
        )


class Limits:
    """Every limit of the service, checked on each call and each failed authentication.

    An enterprise's own limits (`callgate enterprise limits`) replace the defaults of the
    settings once `refresh` has read them; a changed rate counts afresh from then on.
    """

    def __init__(self, settings: Settings, live: LiveCalls, storage: Storage) -> None:
        self.live = live
        self._storage = storage
        self._limiter = MovingWindowRateLimiter(storage)
        self._defaults = {name: getattr(settings, f"limit_{name}") for name in ENTERPRISE_LIMITS}
        self._default = _Rates.of(self._defaults)
        self._own: dict[str, _Rates] = {}
        self._auth = _rate(settings.limit_auth_failures_per_minute, RateLimitItemPerMinute, 1, AUTH)

    def use(self, own: Mapping[str, Mapping[str, int]]) -> None:
        """Each enterprise's own limits by number, in place of those used so far."""
        self._own = {
            number: _Rates.of(self._defaults | dict(values)) for number, values in own.items()
        }

    async def refresh(self, database: Executor) -> None:
        """Read the enterprises' own limits (DatabaseUnavailable: the last ones stay)."""
        async with db_step("reading the enterprises' limits"):
            own = await list_limits(database)
        self.use(own)

    def reserve(self, call_id: str, enterprise: str, host: str) -> None:
        """A live call's place (RateLimited when the enterprise or the host has no more)."""
        cap = self._own.get(enterprise, self._default).live
        self.live.reserve(call_id, enterprise, host, enterprise_cap=cap)

    async def check_authentication(self, client: str) -> None:
        """RateLimited when ``client`` has failed to authenticate too often lately."""
        if self._auth is not None:
            async with _store():
                await self._refuse_over((self._auth, ("auth", client)))

    async def failed_authentication(self, client: str) -> None:
        if self._auth is not None:
            async with _store():
                await self._limiter.hit(self._auth.item, "auth", client)

    async def check_call(self, enterprise: str, extension: str, number: str) -> None:
        """RateLimited when this call would exceed a rate; otherwise it is counted."""
        rates = self._own.get(enterprise, self._default)
        checks = [
            *((rate, ("enterprise", enterprise)) for rate in rates.enterprise),
            *((rate, ("extension", enterprise, extension)) for rate in rates.extension),
            *((rate, ("number", enterprise, number)) for rate in rates.destination),
        ]
        async with _store():
            await self._refuse_over(*checks)
            for rate, identifiers in checks:
                await self._limiter.hit(rate.item, *identifiers)

    async def _refuse_over(self, *checks: tuple[_Rate, tuple[str, ...]]) -> None:
        for rate, identifiers in checks:
            if not await self._limiter.test(rate.item, *identifiers):
                stats = await self._limiter.get_window_stats(rate.item, *identifiers)
                wait = max(1, math.ceil(stats.reset_time - time.time()))
                metrics.rejected(_SCOPES[rate.what])
                raise RateLimited(f"too many {rate.what}: at most {rate.item}", retry_after=wait)

    async def aclose(self) -> None:
        """Let go of the Redis client's connections (memory storage holds none)."""
        # limits' async Redis storage keeps its redis-py client on its bridge, with no close
        # of its own.
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()
