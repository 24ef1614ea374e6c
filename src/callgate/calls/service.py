"""CallService: validate, authenticate, find the host, originate, verify, record.

Order matters: every request value passes the allow-lists before any database or SSH work.
The database is read once per call (enterprise and host row in one query, so CLI changes apply
to the next call) and written off the critical path: the call row is inserted while the
originate runs, and the outcome is stored after the answer has gone out. Both writes are
tracked and drained at shutdown, so none is lost.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate import errors
from callgate.db.guard import db_step
from callgate.db.repositories import CallRepo, EnterpriseRepo, HostRepo
from callgate.hosts import build_target
from callgate.logs import get_logger
from callgate.pbx.client import PbxClient
from callgate.pbx.transport import HostTarget
from callgate.redaction import mask_phone, mask_secret
from callgate.settings import Settings
from callgate.validation import (
    is_plausible_secret,
    normalize_phone,
    validate_code,
    validate_host,
)

log = get_logger("callgate.calls")


@dataclass(frozen=True, slots=True)
class Tenant:
    number: str
    name: str
    ip: str


@dataclass(frozen=True, slots=True)
class PlacedCall:
    call_id: str
    tenant: Tenant
    extension: str
    phone: str
    host: str
    channel: str
    response_time_ms: float


class CallService:
    def __init__(
        self,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        pbx: PbxClient,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._pbx = pbx
        self._writes: set[asyncio.Task[None]] = set()

    def validate(self, code: str | None, phone: str | None) -> tuple[str, str]:
        """The allow-lists, first of all: a bad value is rejected before any other work."""
        return validate_code(code, self._settings.code_max_length), normalize_phone(phone)

    async def authorise(self, secret: str | None) -> tuple[Tenant, HostTarget]:
        """The tenant of this secret and its host, SSH settings merged (one database read)."""
        if not is_plausible_secret(secret):
            raise errors.AuthenticationFailed("Invalid clientId")
        async with db_step("checking the clientId"), self._sessions() as session:
            found = await EnterpriseRepo(session).by_secret_with_host(secret)
            if found is None:
                raise errors.AuthenticationFailed("Invalid clientId")
            enterprise, host = found
            # A bad `ip` is a configuration error: reported, and nothing is executed.
            address = validate_host(enterprise.ip)
            if host is None and address != enterprise.ip:  # stored in another spelling
                host = await HostRepo(session).get(address)
        tenant = Tenant(number=enterprise.number, name=enterprise.name, ip=enterprise.ip)
        return tenant, build_target(self._settings, address, host)

    async def place_call(
        self, secret: str | None, code: str | None, phone: str | None, *, request_id: str
    ) -> PlacedCall:
        started = time.perf_counter()
        extension, number = self.validate(code, phone)
        bound = log.bind(request_id=request_id, ext=extension, phone=mask_phone(number))
        bound.info("call requested", client=mask_secret(secret))
        tenant, target = await self.authorise(secret)
        call_id = str(uuid.uuid4())
        bound = bound.bind(enterprise=tenant.name, enterprise_number=tenant.number, call_id=call_id)
        bound.info("client authorised")
        inserted = self._spawn(
            self._insert(call_id, tenant, extension, number, target.address, request_id)
        )
        bound.info("ssh originate", host=target.label, elapsed_ms=_ms(started))
        try:
            originated = await self._pbx.originate(target, extension, number)
        except errors.PbxError as exc:
            outcome = (
                "unknown"
                if exc.maybe_executed
                and not isinstance(exc, errors.CallNotCreated | errors.UnexpectedOutput)
                else "failed"
            )
            bound.warning(
                "call failed",
                host=target.label,
                error=exc.code,
                detail=exc.message,
                outcome=outcome,
                elapsed_ms=_ms(started),
            )
            self._spawn(self._finish(inserted, call_id, outcome, started, error=exc))
            raise
        elapsed = _ms(started)
        bound.info(
            "cli done", host=target.label, channel=originated.channel.name, elapsed_ms=elapsed
        )
        self._spawn(
            self._finish(inserted, call_id, "success", started, channel=originated.channel.name)
        )
        return PlacedCall(
            call_id=call_id,
            tenant=tenant,
            extension=extension,
            phone=number,
            host=target.address,
            channel=originated.channel.name,
            response_time_ms=elapsed,
        )

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(work)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return task

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait for the call-log writes still running (shutdown)."""
        if self._writes:
            await asyncio.wait(set(self._writes), timeout=timeout)

    async def _insert(
        self,
        call_id: str,
        tenant: Tenant,
        extension: str,
        phone: str,
        host: str,
        request_id: str,
    ) -> None:
        try:
            async with db_step("recording the call"), self._sessions() as session:
                await CallRepo(session).create(
                    id=call_id,
                    enterprise_number=tenant.number,
                    extension=extension,
                    phone=phone,
                    host=host,
                    request_id=request_id,
                )
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
    ) -> None:
        """Store the outcome once the row exists; a database fault is logged, not raised."""
        try:
            await inserted
            async with db_step("recording the outcome"), self._sessions() as session:
                await CallRepo(session).finish(
                    call_id,
                    outcome,
                    error_code=error.code if error else None,
                    error=error.message if error else None,
                    channel=channel,
                    response_time_ms=_ms(started),
                )
        except errors.DatabaseUnavailable as exc:
            log.error(
                "call outcome not recorded",
                call_id=call_id,
                outcome=outcome,
                channel=channel,
                detail=exc.message,
            )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
