"""The legacy ``enterprises`` table (five columns), and the per-call authorisation read.

Nothing is cached: the service reads an enterprise, its host row and its destination policy
per call, so CLI changes apply to the next call without a restart. A legacy table may lack
any constraint, so a clash is checked here too, and a secret stored twice names its lowest
number, deterministically.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select, true, update
from sqlalchemy.exc import IntegrityError

from callgate.db.executor import Database, Executor
from callgate.db.hosts import HOST_COLUMNS, host_row
from callgate.db.models import ENTERPRISES, PBX_HOSTS
from callgate.db.policies import POLICY_COLUMNS, joined, overrides_of
from callgate.domain.destinations import PolicyOverrides
from callgate.domain.enterprises import check_enterprise
from callgate.domain.hosts import HostRow
from callgate.errors import AlreadyExists

_COLUMNS = tuple(ENTERPRISES.c[name] for name in ("number", "name", "ip", "active"))
_ALREADY = "an enterprise with this number or secret already exists"


@dataclass(frozen=True, slots=True)
class EnterpriseRow:
    """An ``enterprises`` row as a call needs it: never the secret."""

    number: str
    name: str
    ip: str  # its PBX host, as stored
    active: bool


# The per-call read: the active enterprise with this secret and its host row, one round trip.
# The stored secret comes back too, to be compared in constant time (`by_secret_with_host`).
# With them the enterprise's destination policy: its own and the global default's rows.
_OWN, _ON_OWN, _DEFAULT, _ON_DEFAULT = joined(ENTERPRISES.c.number)
_BY_SECRET_WITH_HOST = (
    select(*_COLUMNS, ENTERPRISES.c.secret, *HOST_COLUMNS, *POLICY_COLUMNS)
    .select_from(
        ENTERPRISES.outerjoin(PBX_HOSTS, PBX_HOSTS.c.address == ENTERPRISES.c.ip)
        .outerjoin(_OWN, _ON_OWN)
        .outerjoin(_DEFAULT, _ON_DEFAULT)
    )
    .where(ENTERPRISES.c.secret == bindparam("secret"), ENTERPRISES.c.active == true())
    .order_by(ENTERPRISES.c.number)
    .limit(1)
)
_CLASH = (
    select(ENTERPRISES.c.number)
    .where(
        (ENTERPRISES.c.number == bindparam("number"))
        | (ENTERPRISES.c.secret == bindparam("secret"))
    )
    .limit(1)
)
_ADD = insert(ENTERPRISES)
_ALL = select(*_COLUMNS, ENTERPRISES.c.secret).order_by(ENTERPRISES.c.number)
_SET_ACTIVE = (
    update(ENTERPRISES)
    .where(ENTERPRISES.c.number == bindparam("p_number"))
    .values(active=bindparam("p_active"))
)


async def by_secret_with_host(
    database: Executor, secret: str
) -> tuple[EnterpriseRow, HostRow | None, PolicyOverrides, PolicyOverrides] | None:
    """The active enterprise with this secret, its ``pbx_hosts`` row (None: no row, the
    defaults apply), its own stored destination policy and the global default's. Check the
    secret first (`validation.is_plausible_secret`).

    The request carries nothing but the secret, so the row is found by it (the legacy table
    has no other key a client sends, and other systems read its ``secret`` column as it is).
    The row found is then accepted only if its secret equals the one given, compared with
    `hmac.compare_digest`: whatever the database's comparison is (a case-insensitive
    collation, say), nothing but the exact bytes authorise, and that last comparison takes
    the same time wherever the strings differ. The index lookup before it is not
    constant time (its byte comparisons stop at the first difference), a difference of
    nanoseconds inside a database round trip of a millisecond or more: accepted, since a
    lookup by anything else would need a column other systems do not maintain.
    """
    found = await database.row(_BY_SECRET_WITH_HOST, {"secret": secret})
    # A legacy ``char(n)`` column returns its value padded with spaces; a secret has none.
    stored = str(found["secret"]).rstrip(" ") if found is not None else ""
    if found is None or not hmac.compare_digest(stored.encode(), secret.encode()):
        return None
    enterprise = EnterpriseRow(*(found[column.name] for column in _COLUMNS))
    host = None if found["address"] is None else host_row(found)
    return enterprise, host, overrides_of(found, "own_"), overrides_of(found, "default_")


async def add_enterprise(
    database: Database, number: str, name: str, ip: str, secret: str
) -> EnterpriseRow:
    """Insert an active enterprise; InvalidInput for a bad field, AlreadyExists on a clash."""
    address = check_enterprise(number, name, ip, secret)
    try:
        async with database.transaction() as writing:
            if await writing.value(_CLASH, {"number": number, "secret": secret}) is not None:
                raise AlreadyExists(_ALREADY)
            values = {"number": number, "name": name, "ip": address, "secret": secret}
            await writing.rowcount(_ADD, {**values, "active": True})
    except IntegrityError:
        raise AlreadyExists(_ALREADY) from None
    return EnterpriseRow(number, name, address, True)


async def list_enterprises(database: Executor) -> list[tuple[EnterpriseRow, str]]:
    """Every enterprise by number, with its secret (the CLI shows a few characters of it)."""
    return [
        (EnterpriseRow(*(found[column.name] for column in _COLUMNS)), found["secret"])
        for found in await database.rows(_ALL)
    ]


_ACTIVE_NUMBERS = select(ENTERPRISES.c.number).where(ENTERPRISES.c.active == true())


async def active_numbers(database: Executor) -> set[str]:
    """The numbers of the active enterprises (open event streams are checked against it)."""
    return {found["number"] for found in await database.rows(_ACTIVE_NUMBERS)}


async def set_active(database: Executor, number: str, active: bool) -> bool:
    """Enable or disable an enterprise; False if there is no such number."""
    return await database.rowcount(_SET_ACTIVE, {"p_number": number, "p_active": active}) > 0
