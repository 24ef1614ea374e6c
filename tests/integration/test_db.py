"""The data layer on both databases: migrations from empty, repositories, the host-key race."""

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
from sqlalchemy import String, column, insert, inspect, select, table, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from callgate.db.engine import database_state, make_engine, make_sessionmaker, safe_url
from callgate.db.host_keys import DbHostKeyStore
from callgate.db.migrate import VERSION_TABLE, alembic_config, upgrade
from callgate.db.models import Base, CallOutcome, CallRecord, PbxHost, UtcDateTime
from callgate.db.per_call import AsyncpgStatements, EngineStatements, per_call_statements
from callgate.db.repositories import (
    AlreadyExists,
    CallRepo,
    EnterpriseRepo,
    HostRepo,
    HostRow,
    TenantRow,
    finish_values,
    new_call_values,
    tenant_with_host,
)
from callgate.errors import ConfigurationError, InvalidInput, SshHostKeyRejected
from tests.support.services import POSTGRES_ADMIN_URL

Sessions = async_sessionmaker[AsyncSession]
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
async def sessions(migrated: str) -> AsyncIterator[Sessions]:
    """A sessionmaker on the migrated database; the engine is disposed afterwards."""
    engine = make_engine(migrated)
    try:
        yield make_sessionmaker(engine)
    finally:
        await engine.dispose()


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
            for change in compare_metadata(context, Base.metadata)
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
    engine = make_engine(db_url)
    try:
        async with make_sessionmaker(engine)() as session:
            stored = {row.id: row for row in await session.scalars(select(CallRecord))}
    finally:
        await engine.dispose()

    def sides(name: str) -> tuple[Any, ...]:
        row = stored[name]
        ring = [None if s is None else round(s, 2) for s in (row.agent_ring_s, row.customer_ring_s)]
        return row.agent_outcome, ring[0], row.customer_outcome, ring[1]

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
    assert stored["failed"].agent_reason == "PBX did not create the call"
    assert all(row.customer_reason is None for row in stored.values())


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


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql+psycopg2://u@h/db", "::nope::"])
def test_unsupported_urls_name_the_setting(url: str) -> None:
    """A URL the service cannot use is a ConfigurationError naming CALLGATE_DATABASE_URL."""
    with pytest.raises(ConfigurationError, match="CALLGATE_DATABASE_URL") as info:
        make_engine(url)
    assert ":p@" not in info.value.message


def test_safe_url_masks_passwords() -> None:
    """Passwords in the user part, in the query and in unparseable strings are masked."""
    assert "hunter2" not in safe_url("postgresql://app:hunter2@db:5432/callgate")
    assert "app:***@db" in safe_url("postgresql://app:hunter2@db:5432/callgate")
    assert "hunter2" not in safe_url("postgresql://app@db/callgate?password=hunter2")
    assert "hunter2" not in safe_url("::bad//app:hunter2@db")


async def test_database_state_reports_connected(migrated: str) -> None:
    """A reachable database reads "connected"."""
    engine = make_engine(migrated)
    try:
        assert await database_state(engine) == "connected"
    finally:
        await engine.dispose()


async def test_database_state_of_a_dead_server_is_a_class_name() -> None:
    """An unreachable server gives just an error class name, fast, and never the password."""
    engine = make_engine("postgresql://app:hunter2@127.0.0.1:9/callgate")
    try:
        started = asyncio.get_running_loop().time()
        state = await database_state(engine)
        assert asyncio.get_running_loop().time() - started < 5
    finally:
        await engine.dispose()
    assert state != "connected"
    assert state.isidentifier()
    assert "hunter2" not in state


async def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(sqlite_url: str) -> None:
    """SQLite connections use WAL and wait for a busy writer instead of failing at once."""
    engine = make_engine(sqlite_url)
    try:
        async with engine.connect() as connection:
            mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar()
            busy = (await connection.execute(text("PRAGMA busy_timeout"))).scalar()
    finally:
        await engine.dispose()
    assert mode == "wal"
    assert busy == 5000


# --- enterprises -----------------------------------------------------------------------------


async def test_enterprise_repo_round_trip(sessions: Sessions) -> None:
    """add, by_secret (active only), set_active and list_all work together."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        added = await repo.add("0367", "june", "10.0.0.5", "s" * 32)
        await repo.add("0100", "may", "pbx.example.com", "t" * 32)
        assert added.active is True
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        found = await repo.by_secret("s" * 32)
        assert found is not None and (found.number, found.name, found.ip) == (
            "0367",
            "june",
            "10.0.0.5",
        )
        assert await repo.by_secret("nope") is None
        assert await repo.by_secret("") is None
        assert [e.number for e in await repo.list_all()] == ["0100", "0367"]
        assert await repo.set_active("0367", False) is True
        assert await repo.by_secret("s" * 32) is None
        assert await repo.set_active("9999", False) is False
        assert await repo.set_active("0367", True) is True
        assert await repo.by_secret("s" * 32) is not None


async def test_tenant_with_host_reads_fresh_rows(sessions: Sessions) -> None:
    """The per-call read: the active tenant and its host row (or None), changes seen at once."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        await repo.add("0367", "june", "10.0.0.5", "s" * 32)
        await repo.add("0100", "may", "10.0.0.6", "t" * 32)
        await HostRepo(session).set("10.0.0.5", ssh_port=2222, ssh_user="callgate")
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        found = await repo.by_secret_with_host("s" * 32)
        assert found is not None
        enterprise, host = found
        assert (enterprise.number, enterprise.name, enterprise.ip, enterprise.active) == (
            "0367",
            "june",
            "10.0.0.5",
            True,
        )
        assert host is not None and (host.address, host.ssh_port, host.ssh_user) == (
            "10.0.0.5",
            2222,
            "callgate",
        )
        assert isinstance(enterprise, TenantRow) and isinstance(host, HostRow)  # plain rows
        found = await repo.by_secret_with_host("t" * 32)
        assert found is not None and found[0].number == "0100" and found[1] is None
        assert await repo.by_secret_with_host("nope") is None
        assert await repo.by_secret_with_host("") is None
        await repo.set_active("0367", False)
        assert await repo.by_secret_with_host("s" * 32) is None
        await HostRepo(session).set("10.0.0.6", ssh_port=2200)
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine)
    async with engine.connect() as connection:  # the service's way: no session
        found = await tenant_with_host(connection, "t" * 32)
        assert found is not None and found[1] is not None and found[1].ssh_port == 2200


async def test_enterprise_add_refuses_clashes(sessions: Sessions) -> None:
    """A second enterprise with the same number or the same secret is refused."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        await repo.add("0367", "june", "10.0.0.5", "s" * 32)
        with pytest.raises(AlreadyExists):
            await repo.add("0367", "other", "10.0.0.6", "u" * 32)
        with pytest.raises(AlreadyExists):
            await repo.add("0368", "other", "10.0.0.6", "s" * 32)
        assert len(await repo.list_all()) == 1


@pytest.mark.parametrize(
    ("field", "args"),
    [
        ("number", ("03 67", "june", "10.0.0.5", "s" * 32)),
        ("name", ("0367", "", "10.0.0.5", "s" * 32)),
        ("ip", ("0367", "june", "10.0.0.5;id", "s" * 32)),
        ("secret", ("0367", "june", "10.0.0.5", "with space")),
    ],
)
async def test_enterprise_add_validates(
    sessions: Sessions, field: str, args: tuple[str, str, str, str]
) -> None:
    """Each bad field is refused with InvalidInput naming it; nothing is stored."""
    async with sessions() as session:
        repo = EnterpriseRepo(session)
        with pytest.raises(InvalidInput) as info:
            await repo.add(*args)
        assert info.value.field == field
        assert await repo.list_all() == []


# --- hosts -----------------------------------------------------------------------------------


async def test_host_set_changes_only_the_given_fields(sessions: Sessions) -> None:
    """set() upserts: the first call creates the row, later calls leave other fields alone."""
    async with sessions() as session:
        repo = HostRepo(session)
        assert await repo.get("10.0.0.5") is None
        first = await repo.set("10.0.0.5", ssh_port=22, ssh_password="pw", host_key_policy="strict")
        assert (first.ssh_port, first.ssh_password, first.host_key_policy) == (22, "pw", "strict")
        first_update = first.updated_at
        second = await repo.set("10.0.0.5", dial_context="office", transport="console")
    assert (second.ssh_port, second.ssh_password, second.host_key_policy) == (22, "pw", "strict")
    assert (second.dial_context, second.transport) == ("office", "console")
    assert second.updated_at >= first_update
    assert second.updated_at.tzinfo is not None
    async with sessions() as session:
        cleared = await HostRepo(session).set("10.0.0.5", ssh_password=None)
        assert cleared.ssh_password is None and cleared.ssh_port == 22
        assert [h.address for h in await HostRepo(session).list_all()] == ["10.0.0.5"]


async def test_host_addresses_are_canonical(sessions: Sessions) -> None:
    """A host set as "PBX.Example.com" is found as "pbx.example.com" (and IPv6 likewise)."""
    async with sessions() as session:
        await HostRepo(session).set("PBX.Example.com", ssh_port=2222)
        await HostRepo(session).set("2001:DB8::1", ssh_port=2223)
    async with sessions() as session:
        by_name = await HostRepo(session).get("pbx.example.com")
        by_ip = await HostRepo(session).get("2001:db8:0::1")
    assert by_name is not None and by_name.ssh_port == 2222
    assert by_ip is not None and by_ip.ssh_port == 2223


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ssh_port", 0),
        ("ssh_user", "root;id"),
        ("host_key_policy", "sometimes"),
        ("dial_context", "in office"),
        ("transport", "ami"),
        ("ssh_password", ""),
    ],
)
async def test_host_set_validates(sessions: Sessions, field: str, value: object) -> None:
    """A bad override raises InvalidInput naming the field and stores nothing."""
    async with sessions() as session:
        repo = HostRepo(session)
        with pytest.raises(InvalidInput) as info:
            overrides: dict[str, Any] = {field: value}
            await repo.set("10.0.0.5", **overrides)
        assert info.value.field == field
        assert await repo.get("10.0.0.5") is None


async def test_pin_host_key_keeps_the_first_key(sessions: Sessions) -> None:
    """The first pinned key stays; a later one is not stored; forget clears it."""
    async with sessions() as session:
        repo = HostRepo(session)
        assert await repo.pin_host_key("10.0.0.5", key(1) + " comment") == key(1)
        assert await repo.pin_host_key("10.0.0.5", key(2)) == key(1)
        row = await repo.get("10.0.0.5")
        assert row is not None and row.host_key == key(1)
        assert await repo.forget_host_key("10.0.0.5") is True
        assert await repo.forget_host_key("10.0.0.5") is False
        assert await repo.pin_host_key("10.0.0.5", key(2)) == key(2)


async def test_pin_host_key_keeps_other_settings(sessions: Sessions) -> None:
    """Pinning a key on an existing row leaves its SSH settings alone."""
    async with sessions() as session:
        await HostRepo(session).set("10.0.0.5", ssh_port=5060, ssh_user="pbx")
        await HostRepo(session).pin_host_key("10.0.0.5", key(7))
        row = await HostRepo(session).get("10.0.0.5")
    assert row is not None
    assert (row.ssh_port, row.ssh_user, row.host_key) == (5060, "pbx", key(7))


async def test_pin_host_key_race_leaves_exactly_one(sessions: Sessions) -> None:
    """20 concurrent first contacts offering 20 different keys: one wins, all agree on it."""

    async def pin(n: int) -> str:
        async with sessions() as session:
            return await HostRepo(session).pin_host_key("10.0.0.9", key(n))

    results = await asyncio.gather(*(pin(n) for n in range(20)))
    assert len(set(results)) == 1
    assert results[0] in {key(n) for n in range(20)}
    async with sessions() as session:
        rows = [h for h in await HostRepo(session).list_all() if h.address == "10.0.0.9"]
    assert len(rows) == 1
    assert rows[0].host_key == results[0]


async def test_db_host_key_store(sessions: Sessions) -> None:
    """The HostKeyStore pins on first contact and returns the already pinned key afterwards."""
    store = DbHostKeyStore(sessions)
    assert await store.pin_host_key("10.0.0.5", 5059, key(1) + " root@pbx\n") == key(1)
    assert await store.pin_host_key("10.0.0.5", 22, key(2)) == key(1)
    assert await store.pinned_key("10.0.0.5") == key(1)
    with pytest.raises(SshHostKeyRejected):
        await store.pin_host_key("10.0.0.6", 22, "garbage")
    assert await store.pinned_key("10.0.0.6") is None


# --- calls -----------------------------------------------------------------------------------


async def test_call_lifecycle(sessions: Sessions) -> None:
    """create() records a pending call; finish() stores the outcome with aware UTC times."""
    async with sessions() as session:
        record = await CallRepo(session).create(
            enterprise_number="0367",
            extension="150",
            phone="+375296254070",
            host="10.0.0.5",
            request_id="req-1",
        )
    assert record.outcome == "pending"
    assert len(record.id) == 36
    async with sessions() as session:
        repo = CallRepo(session)
        assert await repo.finish(
            record.id,
            CallOutcome.SUCCESS,
            channel="Local/150@inoffice-00000001;1",
            response_time_ms=1399.39,
        )
        done = await repo.get(record.id)
    assert done is not None
    assert done.outcome == "success"
    assert done.channel == "Local/150@inoffice-00000001;1"
    assert done.response_time_ms == pytest.approx(1399.39)
    assert done.created_at.tzinfo is not None and done.finished_at is not None
    assert done.finished_at.utcoffset() == timedelta(0)
    assert abs(done.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert done.finished_at >= done.created_at


async def test_call_finish_rules(sessions: Sessions) -> None:
    """finish() refuses 'pending', reports an unknown id, and records failures' errors."""
    async with sessions() as session:
        repo = CallRepo(session)
        record = await repo.create(
            enterprise_number="0367", extension="150", phone="375296254070", host="10.0.0.5"
        )
        with pytest.raises(ValueError):
            await repo.finish(record.id, "pending")
        with pytest.raises(ValueError):
            await repo.finish(record.id, "exploded")
        assert await repo.finish("no-such-id", "failed") is False
        assert await repo.finish(
            record.id, "failed", error_code="pbx_connect_timeout", error="Connection timeout"
        )
        failed = await repo.get(record.id)
    assert failed is not None
    assert (failed.outcome, failed.error_code, failed.error) == (
        "failed",
        "pbx_connect_timeout",
        "Connection timeout",
    )


async def test_call_create_returns_what_it_stored(sessions: Sessions) -> None:
    """create() returns the row it inserted; a second idempotency key is an IntegrityError."""
    async with sessions() as session:
        repo = CallRepo(session)
        made = await repo.create(
            id="5c7d0e52-0000-4000-8000-000000000001",
            enterprise_number="0367",
            extension="150",
            phone="+375296254070",
            host="10.0.0.5",
            request_id="req-1",
            ring_timeout=25,
            metadata={"deal": 42},
            idempotency_key="crm-4711",
            request_hash="h" * 64,
        )
        assert made not in session  # built from the inserted values, not loaded
        with pytest.raises(IntegrityError):
            await repo.create(
                enterprise_number="0367",
                extension="151",
                phone="+375296254070",
                host="10.0.0.5",
                idempotency_key="crm-4711",
            )
        # The session is usable after the refusal; another tenant may reuse the key.
        other = await repo.create(
            enterprise_number="0100",
            extension="150",
            phone="+375296254070",
            host="10.0.0.5",
            idempotency_key="crm-4711",
        )
        stored = await repo.get(made.id)
    assert stored is not None and other.call_metadata is None
    for name in (
        "id",
        "enterprise_number",
        "extension",
        "phone",
        "host",
        "outcome",
        "request_id",
        "created_at",
        "state",
        "state_changed_at",
        "ring_timeout",
        "call_metadata",
        "idempotency_key",
        "request_hash",
    ):
        assert getattr(stored, name) == getattr(made, name), name
    assert (stored.outcome, stored.state, stored.call_metadata) == (
        "pending",
        "initiated",
        {"deal": 42},
    )
    assert stored.created_at == stored.state_changed_at


async def test_call_writes_join_a_transaction_the_caller_began(sessions: Sessions) -> None:
    """Inside a transaction the session holds, create() and finish() join it and commit it."""
    async with sessions() as session:
        repo = CallRepo(session)
        await session.execute(text("SELECT 1"))  # the caller's transaction begins
        assert session.in_transaction()
        made = await repo.create(
            enterprise_number="0367", extension="150", phone="+375296254070", host="10.0.0.5"
        )
        assert not session.in_transaction()  # committed
        await session.execute(text("SELECT 1"))
        assert await repo.finish(made.id, "success", channel="Local/150@inoffice-00000001;1")
        assert not session.in_transaction()
    async with sessions() as session:
        stored = await CallRepo(session).get(made.id)
    assert stored is not None and stored.outcome == "success"


async def test_recent_calls_newest_first(sessions: Sessions) -> None:
    """recent() lists the newest calls first, honours the limit, and filters by enterprise."""
    async with sessions() as session:
        repo = CallRepo(session)
        ids = []
        for n in range(5):
            record = await repo.create(
                enterprise_number="0367" if n % 2 else "0100",
                extension=f"1{n}0",
                phone="375296254070",
                host="10.0.0.5",
            )
            ids.append(record.id)
            await asyncio.sleep(0.002)  # distinct created_at values
        newest = await repo.recent(3)
        only = await repo.recent(10, enterprise_number="0367")
    assert [c.id for c in newest] == ids[::-1][:3]
    assert [c.id for c in only] == [ids[3], ids[1]]


async def test_naive_datetimes_are_refused(sessions: Sessions) -> None:
    """A naive datetime cannot be stored: its zone would be a guess."""
    async with sessions() as session:
        repo = CallRepo(session)
        record = await repo.create(
            enterprise_number="0367", extension="150", phone="375296254070", host="10.0.0.5"
        )
        with pytest.raises(Exception, match="naive"):
            await repo.finish(record.id, "success", finished_at=datetime(2025, 1, 1))


def test_repr_hides_secrets() -> None:
    """Model reprs (logs, tracebacks) carry neither secrets nor passwords."""
    assert "hunter2" not in repr(PbxHost(address="10.0.0.5", ssh_password="hunter2"))


async def test_per_call_statements_on_either_database(migrated: str, sessions: Sessions) -> None:
    """The per-call read, insert and finish: asyncpg's own path on PostgreSQL, the engine on
    SQLite, with the same results and the same exceptions (IntegrityError on a taken id)."""
    async with sessions() as session:
        await EnterpriseRepo(session).add("0367", "june", "10.0.0.5", "s" * 32)
        await HostRepo(session).set("10.0.0.5", ssh_port=2222, transport="console")
    statements = per_call_statements(migrated)
    expected = AsyncpgStatements if migrated.startswith("postgresql") else EngineStatements
    assert isinstance(statements, expected)
    await statements.open()
    try:
        found = await statements.tenant("s" * 32)
        assert found is not None
        tenant, host = found
        assert (tenant.number, tenant.name, tenant.ip, tenant.active) == (
            "0367",
            "june",
            "10.0.0.5",
            True,
        )
        assert host is not None and (host.ssh_port, host.transport) == (2222, "console")
        assert await statements.tenant("nope") is None
        assert await statements.tenant("x" * 256) is None  # cannot be stored: not even read

        values = new_call_values(
            enterprise_number="0367",
            extension="150",
            phone="+375296254070",
            host="10.0.0.5",
            metadata={"crm": {"deal": 7}},
        )
        await statements.insert_call(values)
        with pytest.raises(IntegrityError):
            await statements.insert_call(values)  # the same id again
        finished = finish_values(values["id"], "success", channel="Local/150@inoffice-1;1")
        assert await statements.finish_call(finished) == 1
        assert await statements.finish_call({**finished, "call_id": "no-such-call"}) == 0
    finally:
        await statements.close()
    async with sessions() as session:
        record = await CallRepo(session).get(values["id"])
    assert record is not None
    assert (record.outcome, record.channel, record.call_metadata) == (
        "success",
        "Local/150@inoffice-1;1",
        {"crm": {"deal": 7}},
    )
    assert record.created_at.tzinfo is not None and record.finished_at is not None


@pytest.mark.postgres
async def test_asyncpg_statements_replace_connections_the_server_closed(pg_url: str) -> None:
    """After a server restart (here: every callgate session terminated) the next statement
    runs on a new connection, without an error: asyncpg's pool drops the closed ones."""
    await asyncio.to_thread(upgrade, pg_url)
    statements = per_call_statements(pg_url)
    await statements.open()
    try:
        assert await statements.tenant("s" * 32) is None  # a connection is now pooled
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
        assert await statements.tenant("s" * 32) is None
    finally:
        await statements.close()
