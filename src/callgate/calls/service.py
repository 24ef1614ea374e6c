"""CallService: validate, authenticate, find the host, originate, verify, record.

Order matters: every request value passes the allow-lists before any database or SSH work,
and the call row is written *before* dialling, so a crash leaves a trace, never a silent call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

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
from callgate.validation import normalize_phone, validate_code

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

    def validate(self, code: str | None, phone: str | None) -> tuple[str, str]:
        """The allow-lists, first of all: a bad value is rejected before any other work."""
        return validate_code(code, self._settings.code_max_length), normalize_phone(phone)

    async def authenticate(self, secret: str | None) -> Tenant:
        if not secret or len(secret) > 256:
            raise errors.AuthenticationFailed("Invalid clientId")
        async with db_step("checking the clientId"), self._sessions() as session:
            row = await EnterpriseRepo(session).by_secret(secret)
        if row is None:
            raise errors.AuthenticationFailed("Invalid clientId")
        return Tenant(number=row.number, name=row.name, ip=row.ip)

    async def target_for(self, tenant: Tenant) -> HostTarget:
        """The tenant's host with its own SSH settings, read per call (CLI edits apply now)."""
        async with db_step("reading the host settings"), self._sessions() as session:
            row = await HostRepo(session).get(tenant.ip)
        return build_target(self._settings, tenant.ip, row)

    async def place_call(
        self, secret: str | None, code: str | None, phone: str | None, *, request_id: str
    ) -> PlacedCall:
        started = time.perf_counter()
        extension, number = self.validate(code, phone)
        bound = log.bind(request_id=request_id, ext=extension, phone=mask_phone(number))
        bound.info("call requested", client=mask_secret(secret))
        tenant = await self.authenticate(secret)
        bound = bound.bind(enterprise=tenant.name, enterprise_number=tenant.number)
        bound.info("client authorised")
        target = await self.target_for(tenant)
        bound = bound.bind(host=target.label)
        async with db_step("recording the call"), self._sessions() as session:
            record = await CallRepo(session).create(
                enterprise_number=tenant.number,
                extension=extension,
                phone=number,
                host=target.address,
                request_id=request_id,
            )
            call_id = record.id
        bound.info("ssh originate", call_id=call_id, elapsed_ms=_ms(started))
        try:
            originated = await self._pbx.originate(target, extension, number)
        except errors.PbxError as exc:
            outcome = (
                "unknown"
                if isinstance(exc, errors.CommandTimeout | errors.ConnectionLost)
                else "failed"
            )
            bound.warning(
                "call failed",
                call_id=call_id,
                error=exc.code,
                detail=exc.message,
                outcome=outcome,
                elapsed_ms=_ms(started),
            )
            await self._finish(call_id, outcome, started, error=exc)
            raise
        elapsed = _ms(started)
        bound.info("cli done", call_id=call_id, channel=originated.channel.name, elapsed_ms=elapsed)
        await self._finish(call_id, "success", started, channel=originated.channel.name)
        return PlacedCall(
            call_id=call_id,
            tenant=tenant,
            extension=extension,
            phone=number,
            host=target.address,
            channel=originated.channel.name,
            response_time_ms=elapsed,
        )

    async def _finish(
        self,
        call_id: str,
        outcome: str,
        started: float,
        *,
        channel: str | None = None,
        error: errors.CallgateError | None = None,
    ) -> None:
        """Record the outcome; the call already happened, so a database fault is only logged."""
        try:
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
