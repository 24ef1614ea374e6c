"""``enterprise_policies``: each enterprise's destination policy, and the global default.

The per-call read joins them to the enterprise's row (`enterprises.by_secret_with_host`), so
the policy costs no round trip of its own and a CLI change applies to the next call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.sql.elements import Label

from callgate.db.executor import Executor, Row
from callgate.db.models import ENTERPRISE_POLICIES
from callgate.db.per_enterprise import enterprise_exists, upsert
from callgate.domain.destinations import POLICY_FIELDS, PolicyOverrides, check_overrides

DEFAULT = "*"  # the number of the global default's row

_OWN = ENTERPRISE_POLICIES.alias("own_policy")
_DEFAULT = ENTERPRISE_POLICIES.alias("default_policy")
# The per-call read's policy columns, labelled apart: the enterprise's own and the default's.
POLICY_COLUMNS: tuple[Label[Any], ...] = tuple(
    table.c[name].label(f"{prefix}_{name}")
    for prefix, table in (("own", _OWN), ("default", _DEFAULT))
    for name in POLICY_FIELDS
)
_COLUMNS = tuple(ENTERPRISE_POLICIES.c[name] for name in ("enterprise_number", *POLICY_FIELDS))
_ALL = select(*_COLUMNS).order_by(ENTERPRISE_POLICIES.c.enterprise_number)


def joined(enterprise_number: Any) -> tuple[Any, Any, Any, Any]:
    """(own table, its join condition, default table, its condition) for an outer join to the
    enterprise whose number is the column ``enterprise_number``."""
    return (
        _OWN,
        _OWN.c.enterprise_number == enterprise_number,
        _DEFAULT,
        _DEFAULT.c.enterprise_number == DEFAULT,
    )


def overrides_of(found: Row, prefix: str = "") -> PolicyOverrides:
    """The `PolicyOverrides` of a result row holding the policy columns (named ``prefix`` +
    field); all None when the row had no policy."""
    return PolicyOverrides(*(found[prefix + name] for name in POLICY_FIELDS))


async def list_policies(database: Executor) -> dict[str, PolicyOverrides]:
    """Every stored policy by enterprise number (`DEFAULT` included when stored)."""
    return {found["enterprise_number"]: overrides_of(found) for found in await database.rows(_ALL)}


async def set_policy(
    database: Executor, number: str, changes: Mapping[str, str | int | None]
) -> PolicyOverrides | None:
    """Change the given fields of ``number``'s policy (None: inherited again); InvalidInput
    naming a bad field, None when there is no such enterprise (`DEFAULT` always is)."""
    values = check_overrides(dict(changes))
    if number != DEFAULT and not await enterprise_exists(database, number):
        return None
    return overrides_of(await upsert(database, ENTERPRISE_POLICIES, number, values, _COLUMNS))
