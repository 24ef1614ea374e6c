"""The data layer on both databases: migrations from empty, the statements, the host-key race."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    String,
    bindparam,
    column,
    func,
    insert,
    inspect,
    select,
    table,
    text,
    update,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError

from callgate.db.calls import (
    CallFilter,
    CallRecord,
    finish_call,
    finish_values,
    get_call,
    get_calls_with_hosts,
    insert_call,
    list_calls,
    new_call_values,
)
from callgate.db.engine import POOL_SIZE, database_state, make_engine, safe_url
from callgate.db.enterprises import (
    EnterpriseRow,
    add_enterprise,
    by_secret_with_host,
    list_enterprises,
    set_active,
)
from callgate.db.executor import Database, connect
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.hosts import forget_host_key, get_host, list_hosts, pin_host_key, set_host
from callgate.db.migrate import VERSION_TABLE, alembic_config, upgrade
from callgate.db.models import CALLS, METADATA, CallOutcome, UtcDateTime
from callgate.db.postgres import PostgresDatabase
from callgate.db.sqlite import SqliteDatabase
from callgate.domain.hosts import HostRow
from callgate.errors import AlreadyExists, ConfigurationError, InvalidInput, SshHostKeyRejected
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.services import POSTGRES_ADMIN_URL

VERSION_ROWS = table(VERSION_TABLE, column("version_num"))

# The newest migration: an upgrade from empty must end there.
HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def key(n: int) -> str:
    """A distinct, well-formed ed25519 public key line per ``n``."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + n.to_bytes(32, "big")
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


@pytest.fixture
def migrated(db_url: str) -> str:
    """``db_url`` upgraded to head."""
    upgrade(db_url)
    return db_url


@pytest.fixture
async def database(migrated: str) -> AsyncIterator[Database]:
    """The service's `Database` on the migrated database, closed afterwards."""
    async with opened(migrated) as found:
        yield found


async def _sync(url: str, work: Any) -> Any:
    """Run ``work(sync_connection)`` on a short-lived engine."""
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(work)
    finally:
        await engine.dispose()


# --- migrations ------------------------------------------------------------------------------


async def test_upgrade_from_empty_creates_the_schema(db_url: str) -> None:
    """From an empty database, upgrade creates the three tables, indexes and version row."""
    await asyncio.to_thread(upgrade, db_url)

    def schema(connection: Connection) -> dict[str, Any]:
        inspector = inspect(connection)
        return {
            "tables": set(inspector.get_table_names()),
            "enterprises": [c["name"] for c in inspector.get_columns("enterprises")],
            "indexes": {i["name"]: i["column_names"] for i in inspector.get_indexes("calls")},
            "version": connection.execute(select(VERSION_ROWS.c.version_num)).scalar_one(),
        }

    found = await _sync(db_url, schema)
    assert {"enterprises", "pbx_hosts", "calls", VERSION_TABLE} <= found["tables"]
    assert found["enterprises"] == ["number", "name", "ip", "secret", "active"]
    assert found["indexes"]["ix_calls_enterprise_number_created_at"] == [
        "enterprise_number",
        "created_at",
    ]
    assert found["indexes"]["ix_calls_host_extension"] == ["host", "extension"]
    assert found["version"] == HEAD


def test_upgrade_twice_is_harmless(migrated: str) -> None:
    """A second upgrade (every deployment runs one) changes nothing and does not fail."""
    upgrade(migrated)
    rows = asyncio.run(
        _sync(migrated, lambda c: c.execute(select(VERSION_ROWS.c.version_num)).scalars().all())
    )
    assert rows == [HEAD]


async def test_migrations_match_the_models(migrated: str) -> None:
    """Alembic's autogenerate finds no difference between the migrated schema and models.py."""

    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [
            change
            for change in compare_metadata(context, METADATA)
            if VERSION_TABLE not in repr(change)
        ]

    assert await _sync(migrated, diff) == []


async def test_foreign_calls_table_stops_the_migration_atomically(db_url: str) -> None:
    """Another service's `calls` table fails the upgrade, and nothing of it is left behind."""
    engine = make_engine(db_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE calls (caller text, started text)"))
    finally:
        await engine.dispose()
    with pytest.raises(Exception, match="calls"):
        await asyncio.to_thread(upgrade, db_url)
    tables = await _sync(db_url, lambda c: set(inspect(c).get_table_names()))
    assert tables == {"calls"}


# A `calls` row as revision 0002 knows it: the columns the 0003 backfill reads.
CALLS_0002 = table(
    "calls",
    *(column(name, String()) for name in ("id", "enterprise_number", "extension", "phone")),
    *(column(name, String()) for name in ("host", "outcome", "state", "end_reason", "error")),
    *(
        column(name, UtcDateTime())
        for name in ("created_at", "agent_answered_at", "customer_answered_at", "ended_at")
    ),
)


async def test_0003_gives_calls_that_had_ended_their_sides(db_url: str) -> None:
    """Rows ended before 0003: each side from the row's state and times, as the tracker would
    have decided without Asterisk's words; a live row is left for the tracker."""
    await asyncio.to_thread(upgrade, db_url, "0002")
    t0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)

    def at(seconds: float | None) -> datetime | None:
        return None if seconds is None else t0 + timedelta(seconds=seconds)

    rows = {  # state, agent answered, customer answered, ended (seconds after created_at)
        "completed": ("completed", 1.0, 3.0, 10.0),
        "customer_unanswered": ("customer_no_answer", 1.0, None, 5.0),
        "agent_timed_out": ("agent_no_answer", None, None, 30.0),
        "agent_unanswered": ("agent_no_answer", None, None, 5.0),
        "canceled_early": ("canceled", None, None, 2.0),
        "canceled_late": ("canceled", 1.0, None, 4.0),
        "failed": ("failed", None, None, 0.5),
        "lost": ("lost", 1.0, None, 70.0),
        "live": ("ringing_agent", None, None, None),
    }
    engine = make_engine(db_url)
    try:
        async with engine.begin() as connection:
            for name, (state, agent, customer, ended) in rows.items():
                values: dict[str, Any] = {
                    "id": name,
                    "enterprise_number": "0367",
                    "extension": "150",
                    "phone": "+375296254070",
                    "host": "h",
                    "state": state,
                    "outcome": "failed" if state == "failed" else "success",
                    "end_reason": "PBX did not create the call" if ended else None,
                    "created_at": t0,
                    "agent_answered_at": at(agent),
                    "customer_answered_at": at(customer),
                    "ended_at": at(ended),
                }
                await connection.execute(insert(CALLS_0002).values(values))
    finally:
        await engine.dispose()
    await asyncio.to_thread(upgrade, db_url)
    async with opened(db_url) as database:
        stored = {row["id"]: row for row in await database.rows(select(CALLS))}

    def sides(name: str) -> tuple[Any, ...]:
        row = stored[name]
        ring = [
            None if s is None else round(s, 2)
            for s in (row["agent_ring_s"], row["customer_ring_s"])
        ]
        return row["agent_outcome"], ring[0], row["customer_outcome"], ring[1]

    assert {name: sides(name) for name in rows} == {
        "completed": ("answered", 1.0, "answered", 2.0),
        "customer_unanswered": ("answered", 1.0, "unknown", 4.0),
        "agent_timed_out": ("no_answer", 30.0, None, None),
        "agent_unanswered": ("unknown", 5.0, None, None),
        "canceled_early": ("canceled", 2.0, None, None),
        "canceled_late": ("answered", 1.0, "canceled", 3.0),
        "failed": ("failed", None, None, None),
        "lost": ("answered", 1.0, "unknown", None),
        "live": (None, None, None, None),
    }
    assert stored["failed"]["agent_reason"] == "PBX did not create the call"
    assert all(row["customer_reason"] is None for row in stored.values())


def test_upgrade_works_from_any_directory(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No alembic.ini and no particular working directory are needed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert alembic_config(sqlite_url).config_file_name is None
    upgrade(sqlite_url)
    assert list(elsewhere.iterdir()) == []  # nothing written to the working directory
    assert Path(sqlite_url.split("///", 1)[1]).exists()


async def test_upgrade_refuses_a_running_loop(sqlite_url: str) -> None:
    """upgrade is sync-only: called inside a running loop it fails clearly, not by deadlock."""
    with pytest.raises(RuntimeError, match="to_thread"):
        upgrade(sqlite_url)


# --- engine helpers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg"),
        ("postgres://u@h/db", "postgresql+asyncpg"),
        ("postgresql+asyncpg://u@h/db", "postgresql+asyncpg"),
        ("sqlite:///x.db", "sqlite+aiosqlite"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite"),
    ],
)
async def test_make_engine_uses_the_async_drivers(url: str, driver: str) -> None:
    """Plain postgres/sqlite URLs are rewritten to asyncpg/aiosqlite."""
    engine = make_engine(url)
    try:
        assert engine.url.drivername == driver
    finally:
        await engine.dispose()


@pytest.mark.parametrize(
    ("url", "backend"),
    [
        ("postgresql://u@h/db", PostgresDatabase),
        ("postgres://u@h/db", PostgresDatabase),
        ("sqlite:///x.db", SqliteDatabase),
        ("sqlite+aiosqlite:///x.db", SqliteDatabase),
    ],
)
async def test_connect_picks_one_backend_per_family(url: str, backend: type[Any]) -> None:
    """PostgreSQL's statements run on asyncpg's own pool, SQLite's on SQLAlchemy's engine."""
    database = connect(url)
    try:
        assert isinstance(database, backend)
    finally:
        await database.close()


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql+psycopg2://u@h/db", "::nope::"])
def test_unsupported_urls_name_the_setting(url: str) -> None:
    """A URL the service cannot use is a ConfigurationError naming CALLGATE_DATABASE_URL."""
    with pytest.raises(ConfigurationError, match="CALLGATE_DATABASE_URL") as info:
        connect(url)
    assert ":p@" not in info.value.message


def test_safe_url_masks_passwords() -> None:
    """Passwords in the user part, in the query and in unparseable strings are masked."""
    assert "hunter2" not in safe_url("postgresql://app:hunter2@db:5432/callgate")
    assert "app:***@db" in safe_url("postgresql://app:hunter2@db:5432/callgate")
    assert "hunter2" not in safe_url("postgresql://app@db/callgate?password=hunter2")
    assert "hunter2" not in safe_url("::bad//app:hunter2@db")


async def test_database_state_reports_connected(database: Database) -> None:
    """A reachable database reads "connected"."""
    assert await database_state(database) == "connected"


async def test_database_state_of_a_dead_server_is_a_class_name() -> None:
    """An unreachable server gives just an error class name, fast, and never the password."""
    async with opened("postgresql://app:hunter2@127.0.0.1:9/callgate") as database:
        started = asyncio.get_running_loop().time()
        state = await database_state(database)
        assert asyncio.get_running_loop().time() - started < 5
    assert state != "connected"
    assert state.isidentifier()
    assert "hunter2" not in state


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    """SQLite connections use WAL and wait for a busy writer instead of failing at once."""
    async with opened(sqlite_url) as database:
        mode = await database.value(text("PRAGMA journal_mode"))
        busy = await database.value(text("PRAGMA busy_timeout"))
    assert mode == "wal"
    assert busy == 5000


async def test_a_transaction_commits_together_or_not_at_all(database: Database) -> None:
    """The statements of a transaction are stored when it ends, and none of them when it
    fails: here the second insert of the same id, after a first that worked."""
    first = new_call_values(enterprise_number="0367", extension="150", phone="1", host="h")
    second = new_call_values(enterprise_number="0367", extension="151", phone="2", host="h")
    with pytest.raises(IntegrityError):
        async with database.transaction() as writing:
            await insert_call(writing, first)
            await insert_call(writing, first)
    assert await get_call(database, first["id"]) is None
    async with database.transaction() as writing:
        await insert_call(writing, first)
        await insert_call(writing, second)
    assert await get_call(database, first["id"]) is not None
    assert await get_call(database, second["id"]) is not None


async def test_many_runs_one_statement_for_each_set_of_values(database: Database) -> None:
    """`many`: a prebuilt statement run once per set of values, alone or in a transaction that
    takes every row or none; nothing to run is no statement at all."""
    rows = [
        new_call_values(enterprise_number="0367", extension=f"15{n}", phone=str(n), host="h")
        for n in range(3)
    ]
    await database.many(insert(CALLS), rows[:2])
    await database.many(insert(CALLS), [])
    with pytest.raises(IntegrityError):
        async with database.transaction() as writing:
            await writing.many(insert(CALLS), rows[2:] + rows[:1])  # the first one again
    stored = [await get_call(database, row["id"]) for row in rows]
    assert [call is not None for call in stored] == [True, True, False]
    renamed = update(CALLS).where(CALLS.c.id == bindparam("p_id"))
    await database.many(renamed, [{"p_id": row["id"], "extension": "777"} for row in rows[:2]])
    renamed_calls = [await get_call(database, row["id"]) for row in rows[:2]]
    assert [call.extension if call else None for call in renamed_calls] == ["777"] * 2


# --- enterprises -----------------------------------------------------------------------------


async def test_enterprises_round_trip(database: Database) -> None:
    """add, the per-call read (active only), set_active and the list work together."""
    added = await add_enterprise(database, "0367", "june", "10.0.0.5", "s" * 32)
    await add_enterprise(database, "0100", "may", "pbx.example.com", "t" * 32)
    assert added == EnterpriseRow("0367", "june", "10.0.0.5", True)
    found = await by_secret_with_host(database, "s" * 32)
    assert found is not None and found[:2] == (added, None)
    assert await by_secret_with_host(database, "nope") is None
    listed = await list_enterprises(database)
    assert [(e.number, secret) for e, secret in listed] == [("0100", "t" * 32), ("0367", "s" * 32)]
    assert await set_active(database, "0367", False) is True
    assert await by_secret_with_host(database, "s" * 32) is None
    assert await set_active(database, "9999", False) is False
    assert await set_active(database, "0367", True) is True
    assert await by_secret_with_host(database, "s" * 32) is not None


async def test_the_per_call_read_sees_fresh_rows(database: Database) -> None:
    """The per-call read: the active enterprise and its host row (or None), changes seen at
    once, as plain values."""
    await add_enterprise(database, "0367", "june", "10.0.0.5", "s" * 32)
    await add_enterprise(database, "0100", "may", "10.0.0.6", "t" * 32)
    await set_host(database, "10.0.0.5", {"ssh_port": 2222, "ssh_user": "callgate"})
    found = await by_secret_with_host(database, "s" * 32)
    assert found is not None and found[:2] == (
        EnterpriseRow("0367", "june", "10.0.0.5", True),
        HostRow("10.0.0.5", ssh_port=2222, ssh_user="callgate"),
    )
    found = await by_secret_with_host(database, "t" * 32)
    assert found is not None and found[0].number == "0100" and found[1] is None
    await set_active(database, "0367", False)
    assert await by_secret_with_host(database, "s" * 32) is None
    await set_host(database, "10.0.0.6", {"ssh_port": 2200})
    found = await by_secret_with_host(database, "t" * 32)
    assert found is not None and found[1] is not None and found[1].ssh_port == 2200


async def test_calls_are_read_with_their_hosts_rows_in_one_statement(pg_url: str) -> None:
    """The tracker's adoption reads a round's calls and their hosts' rows at once (None: no
    row, the defaults apply); an unknown id is absent (PostgreSQL only: `= ANY(array)`)."""
    await asyncio.to_thread(upgrade, pg_url)
    async with opened(pg_url) as database:
        await set_host(database, "10.0.0.5", {"ssh_port": 2222, "ssh_user": "callgate"})
        ids = []
        for host in ("10.0.0.5", "10.0.0.6"):
            values = new_call_values(
                enterprise_number="0367", extension="150", phone="79001234567", host=host
            )
            await insert_call(database, values)
            ids.append(values["id"])
        found = {
            row.host: (row.id, host)
            for row, host in await get_calls_with_hosts(database, [*ids, "nope"])
        }
        assert found == {
            "10.0.0.5": (ids[0], HostRow("10.0.0.5", ssh_port=2222, ssh_user="callgate")),
            "10.0.0.6": (ids[1], None),
        }


async def test_enterprise_add_refuses_clashes(database: Database) -> None:
    """A second enterprise with the same number or the same secret is refused."""
    await add_enterprise(database, "0367", "june", "10.0.0.5", "s" * 32)
    with pytest.raises(AlreadyExists):
        await add_enterprise(database, "0367", "other", "10.0.0.6", "u" * 32)
    with pytest.raises(AlreadyExists):
        await add_enterprise(database, "0368", "other", "10.0.0.6", "s" * 32)
    assert len(await list_enterprises(database)) == 1


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("number", ("03 67", "june", "10.0.0.5", "s" * 32)),
        ("name", ("0367", "", "10.0.0.5", "s" * 32)),
        ("ip", ("0367", "june", "10.0.0.5;id", "s" * 32)),
        ("secret", ("0367", "june", "10.0.0.5", "with space")),
        ("secret", ("0367", "june", "10.0.0.5", "x" * 256)),
    ],
)
async def test_enterprise_add_validates(
    database: Database, field: str, args: tuple[str, str, str, str]
) -> None:
    """Each bad field is refused with InvalidInput naming it; nothing is stored."""
    with pytest.raises(InvalidInput) as info:
        await add_enterprise(database, *args)
    assert info.value.field == field
    assert await list_enterprises(database) == []


# --- hosts -----------------------------------------------------------------------------------


async def test_host_set_changes_only_the_given_fields(database: Database) -> None:
    """set_host upserts: the first call creates the row, later calls leave other fields be."""
    assert await get_host(database, "10.0.0.5") is None
    first = await set_host(
        database, "10.0.0.5", {"ssh_port": 22, "ssh_password": "pw", "host_key_policy": "strict"}
    )
    assert (first.ssh_port, first.ssh_password, first.host_key_policy) == (22, "pw", "strict")
    second = await set_host(database, "10.0.0.5", {"dial_context": "office", "transport": "rx"})
    assert (second.ssh_port, second.ssh_password, second.host_key_policy) == (22, "pw", "strict")
    assert (second.dial_context, second.transport) == ("office", "rx")
    assert await get_host(database, "10.0.0.5") == second
    cleared = await set_host(database, "10.0.0.5", {"ssh_password": None})
    assert cleared.ssh_password is None and cleared.ssh_port == 22
    assert [h.address for h in await list_hosts(database)] == ["10.0.0.5"]


async def test_host_set_stamps_the_change(database: Database) -> None:
    """Every change stamps ``updated_at``, timezone-aware."""
    await set_host(database, "10.0.0.5", {"ssh_port": 22})
    stamp = text("SELECT updated_at FROM pbx_hosts")
    first = await database.value(stamp)
    await asyncio.sleep(0.01)
    await set_host(database, "10.0.0.5", {"ssh_port": 23})
    assert await database.value(stamp) != first


async def test_host_addresses_are_canonical(database: Database) -> None:
    """A host set as "PBX.Example.com" is found as "pbx.example.com" (and IPv6 likewise)."""
    await set_host(database, "PBX.Example.com", {"ssh_port": 2222})
    await set_host(database, "2001:DB8::1", {"ssh_port": 2223})
    by_name = await get_host(database, "pbx.example.com")
    by_ip = await get_host(database, "2001:db8:0::1")
    assert by_name is not None and by_name.ssh_port == 2222
    assert by_ip is not None and by_ip.ssh_port == 2223


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ssh_port", 0),
        ("ssh_user", "root;id"),
        ("host_key_policy", "sometimes"),
        ("dial_context", "in office"),
        ("transport", "Not A Name"),
        ("ssh_password", ""),
    ],
)
async def test_host_set_validates(database: Database, field: str, value: object) -> None:
    """A bad setting raises InvalidInput naming the field and stores nothing."""
    with pytest.raises(InvalidInput) as info:
        await set_host(database, "10.0.0.5", {field: value})
    assert info.value.field == field
    assert await get_host(database, "10.0.0.5") is None


async def test_host_set_refuses_unknown_fields(database: Database) -> None:
    with pytest.raises(TypeError, match="address"):
        await set_host(database, "10.0.0.5", {"address": "10.0.0.6"})


async def test_pin_host_key_keeps_the_first_key(database: Database) -> None:
    """The first pinned key stays; a later one is not stored; forget clears it."""
    assert await pin_host_key(database, "10.0.0.5", key(1) + " comment") == key(1)
    assert await pin_host_key(database, "10.0.0.5", key(2)) == key(1)
    row = await get_host(database, "10.0.0.5")
    assert row is not None and row.host_key == key(1)
    assert await forget_host_key(database, "10.0.0.5") is True
    assert await forget_host_key(database, "10.0.0.5") is False
    assert await pin_host_key(database, "10.0.0.5", key(2)) == key(2)


async def test_pin_host_key_keeps_other_settings(database: Database) -> None:
    """Pinning a key on an existing row leaves its SSH settings alone."""
    await set_host(database, "10.0.0.5", {"ssh_port": 5060, "ssh_user": "pbx"})
    await pin_host_key(database, "10.0.0.5", key(7))
    row = await get_host(database, "10.0.0.5")
    assert row is not None
    assert (row.ssh_port, row.ssh_user, row.host_key) == (5060, "pbx", key(7))


async def test_pin_host_key_race_leaves_exactly_one(database: Database) -> None:
    """20 concurrent first contacts offering 20 different keys: one wins, all agree on it."""
    results = await asyncio.gather(*(pin_host_key(database, "10.0.0.9", key(n)) for n in range(20)))
    assert len(set(results)) == 1
    assert results[0] in {key(n) for n in range(20)}
    rows = [h for h in await list_hosts(database) if h.address == "10.0.0.9"]
    assert len(rows) == 1
    assert rows[0].host_key == results[0]


async def test_db_host_key_store(database: Database) -> None:
    """The HostKeyStore pins on first contact and returns the already pinned key afterwards."""
    store = DbHostKeyStore(database)
    assert await store.pin_host_key("10.0.0.5", 5059, key(1) + " root@pbx\n") == key(1)
    assert await store.pin_host_key("10.0.0.5", 22, key(2)) == key(1)
    assert await store.pinned_key("10.0.0.5") == key(1)
    with pytest.raises(SshHostKeyRejected):
        await store.pin_host_key("10.0.0.6", 22, "garbage")
    assert await store.pinned_key("10.0.0.6") is None


def test_host_row_repr_hides_the_password() -> None:
    """A host row's repr (logs, tracebacks) never carries its password."""
    assert "hunter2" not in repr(HostRow("10.0.0.5", ssh_password="hunter2"))


# --- calls -----------------------------------------------------------------------------------


async def test_call_lifecycle(database: Database) -> None:
    """A call row is inserted pending and finished with its outcome, with aware UTC times."""
    values = new_call_values(
        enterprise_number="0367",
        extension="150",
        phone="+375296254070",
        host="10.0.0.5",
        request_id="req-1",
    )
    await insert_call(database, values)
    pending = await get_call(database, values["id"])
    assert pending is not None and pending.outcome == "pending" and len(pending.id) == 36
    outcome = finish_values(
        values["id"],
        CallOutcome.SUCCESS,
        channel="Local/150@inoffice-00000001;1",
        response_time_ms=1399.39,
    )
    assert await finish_call(database, outcome)
    done = await get_call(database, values["id"])
    assert done is not None
    assert done.outcome == "success"
    assert done.channel == "Local/150@inoffice-00000001;1"
    assert done.response_time_ms == pytest.approx(1399.39)
    assert done.created_at.tzinfo is not None and done.finished_at is not None
    assert done.finished_at.utcoffset() == timedelta(0)
    assert abs(done.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert done.finished_at >= done.created_at


async def test_call_finish_rules(database: Database) -> None:
    """An outcome must be final and known; an unknown id is reported; errors are stored."""
    values = new_call_values(
        enterprise_number="0367", extension="150", phone="375296254070", host="10.0.0.5"
    )
    await insert_call(database, values)
    with pytest.raises(ValueError):
        finish_values(values["id"], "pending")
    with pytest.raises(ValueError):
        finish_values(values["id"], "exploded")
    assert await finish_call(database, finish_values("no-such-id", "failed")) is False
    failed = finish_values(
        values["id"], "failed", error_code="pbx_connect_timeout", error="Connection timeout"
    )
    assert await finish_call(database, failed)
    stored = await get_call(database, values["id"])
    assert stored is not None
    assert (stored.outcome, stored.error_code, stored.error) == (
        "failed",
        "pbx_connect_timeout",
        "Connection timeout",
    )


async def test_call_insert_stores_every_value(database: Database) -> None:
    """The row holds what was inserted; an (enterprise, idempotency key) taken twice is an
    IntegrityError, another enterprise may use the same key."""
    values = new_call_values(
        id="5c7d0e52-0000-4000-8000-000000000001",
        enterprise_number="0367",
        extension="150",
        phone="+375296254070",
        host="10.0.0.5",
        request_id="req-1",
        ring_timeout=25,
        metadata={"crm": {"deal": 42}},
        idempotency_key="crm-4711",
        request_hash="h" * 64,
    )
    await insert_call(database, values)
    again = new_call_values(
        enterprise_number="0367",
        extension="151",
        phone="+375296254070",
        host="10.0.0.5",
        idempotency_key="crm-4711",
    )
    with pytest.raises(IntegrityError):
        await insert_call(database, again)
    with pytest.raises(IntegrityError):
        await insert_call(database, values)  # the same id again
    await insert_call(database, {**again, "enterprise_number": "0100"})
    stored = await get_call(database, values["id"])
    assert isinstance(stored, CallRecord)
    assert {
        name: getattr(stored, "call_metadata" if name == "metadata" else name) for name in values
    } == values
    assert (stored.outcome, stored.state) == ("pending", "initiated")
    assert stored.created_at == stored.state_changed_at


async def test_list_calls_newest_first_by_cursor(database: Database) -> None:
    """A page lists the newest calls first, of one enterprise; its cursor gives the next."""
    ids = []
    for n in range(5):
        values = new_call_values(
            enterprise_number="0367" if n % 2 else "0100",
            extension=f"1{n}0",
            phone="375296254070",
            host="10.0.0.5",
        )
        await insert_call(database, values)
        ids.append(values["id"])
        await asyncio.sleep(0.002)  # distinct created_at values
    page, cursor = await list_calls(database, CallFilter("0100"), limit=2)
    assert [c.id for c in page] == [ids[4], ids[2]] and cursor is not None
    page, cursor = await list_calls(database, CallFilter("0100"), limit=2, cursor=cursor)
    assert [c.id for c in page] == [ids[0]] and cursor is None
    page, _ = await list_calls(database, CallFilter("0367", extension="130"), limit=10)
    assert [c.id for c in page] == [ids[3]]


async def test_naive_datetimes_are_refused(sqlite_url: str) -> None:
    """A naive datetime cannot be stored: its zone would be a guess (`models.UtcDateTime`, run
    by SQLAlchemy's engine; PostgreSQL's statements get their times from `models.utcnow`)."""
    await asyncio.to_thread(upgrade, sqlite_url)
    async with opened(sqlite_url) as database:
        values = new_call_values(
            enterprise_number="0367", extension="150", phone="375296254070", host="10.0.0.5"
        )
        await insert_call(database, values)
        with pytest.raises(Exception, match="naive"):
            await finish_call(
                database, finish_values(values["id"], "success", finished_at=datetime(2025, 1, 1))
            )


@pytest.mark.postgres
async def test_postgres_pool_replaces_connections_the_server_closed(pg_url: str) -> None:
    """After a server restart (here: every callgate session terminated) the next statement
    runs on a new connection, without an error: asyncpg's pool drops the closed ones."""
    await asyncio.to_thread(upgrade, pg_url)
    async with opened(pg_url) as database:
        assert await by_secret_with_host(database, "s" * 32) is None  # a connection is pooled
        admin = await asyncpg.connect(POSTGRES_ADMIN_URL)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND application_name = 'callgate'",
                make_url(pg_url).database,
            )
        finally:
            await admin.close()
        assert terminated >= 1
        await asyncio.sleep(0.05)  # the server's goodbye reaches the pooled connection
        assert await by_secret_with_host(database, "s" * 32) is None


async def test_statements_built_per_use_do_not_crowd_out_the_others(database: Database) -> None:
    """More statements built one by one (a history filter each) than PostgreSQL's backend
    keeps compiled: each still runs as itself, and so do the statements built once."""
    await add_enterprise(database, "0367", "june", "10.0.0.5", "s" * 32)
    values = new_call_values(enterprise_number="0367", extension="150", phone="1", host="h")
    await insert_call(database, values)
    for n in range(600):
        extension = "150" if n % 100 == 0 else f"{n}"
        page, _ = await list_calls(database, CallFilter("0367", extension=extension), limit=5)
        assert [c.id for c in page] == ([values["id"]] if extension == "150" else [])
    assert await by_secret_with_host(database, "s" * 32) is not None


@pytest.mark.postgres
async def test_the_pool_opens_no_more_connections_than_its_size(pg_url: str) -> None:
    """`CALLGATE_DATABASE_POOL_SIZE`: several instances share the server's `max_connections`,
    so each one's pool is bounded; statements beyond it wait for a connection."""
    settings = Settings(database_url=pg_url, database_pool_size=3)
    database = connect(settings.database_url, settings.database_pool_size)
    await database.open()
    name = make_url(pg_url).database
    watcher = await asyncpg.connect(pg_url)
    try:
        slow = select(func.pg_sleep(0.3))
        busy = asyncio.gather(*(database.value(slow) for _ in range(7)))
        await asyncio.sleep(0.15)
        opened = await watcher.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = $1 AND application_name = 'callgate'",
            name,
        )
        await busy
        assert opened == 3
    finally:
        await watcher.close()
        await database.close()


def test_the_pool_size_setting_defaults_to_the_drivers_own() -> None:
    assert Settings().database_pool_size == POOL_SIZE
