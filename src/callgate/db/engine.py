"""The database URL, SQLAlchemy's async engines (SQLite's, and the migrations'), the limits.

``CALLGATE_DATABASE_URL`` may be written the way operators write it elsewhere
(``postgresql://``, ``postgres://``, ``sqlite:///``): it is rewritten to the async driver here,
so one URL serves the service, the CLI and the migrations.

Nothing in this module puts a DSN or a password into a message: ``database_state`` is shown by
``/api/status`` and errors are logged.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from callgate.errors import ConfigurationError
from callgate.private_files import create_owner_only

if TYPE_CHECKING:
    from callgate.db.executor import Executor

# A dead PostgreSQL must not hold a call request for long: connecting gets 2 s, a statement 5 s.
CONNECT_TIMEOUT = 2.0
STATEMENT_TIMEOUT = 5.0
# PostgreSQL connections at most (`db.postgres`): enough for the call requests' statements
# and the tracker's writes at once.
POOL_SIZE = 30
# SQLite has no server to time out; a writer waits this long for another writer's lock.
SQLITE_BUSY_TIMEOUT = 5.0

_SETTING = "CALLGATE_DATABASE_URL"
_POSTGRES_NAMES = {"postgresql", "postgres", "postgresql+asyncpg"}
_SQLITE_NAMES = {"sqlite", "sqlite+aiosqlite"}
# Fallback masking for strings that are not even parseable as URLs: "//user:secret@" -> "***".
_USERINFO_PASSWORD = re.compile(r"(//[^/:@]*:)[^@/]*@")
_ALIVE = text("SELECT 1")


def async_url(url: str) -> URL:
    """Parse ``url`` and point it at the async driver; raise ConfigurationError otherwise."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(f"{_SETTING}: not a database URL") from None
    if parsed.drivername in _POSTGRES_NAMES:
        return parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername in _SQLITE_NAMES:
        return parsed.set(drivername="sqlite+aiosqlite")
    # Another driver (psycopg2, pysqlite, mysql, ...) cannot back an async engine: say so now
    # rather than with a driver import error at the first request.
    raise ConfigurationError(
        f"{_SETTING}: unsupported database {parsed.drivername!r}; "
        "use postgresql://... or sqlite:///path"
    )


def make_engine(
    url: str,
    *,
    statement_timeout: float | None = STATEMENT_TIMEOUT,
    for_migrations: bool = False,
) -> AsyncEngine:
    """An engine for ``url``: SQLite's `Database` (`db.sqlite`), and the migrations' (with
    ``for_migrations``: no statement timeout, atomic DDL). The service's PostgreSQL statements
    run on asyncpg's own pool instead (`db.postgres`).

    PostgreSQL: 2 s connect timeout, a server-side ``statement_timeout`` plus a slightly longer
    client-side one (the server's cancel is the clearer error; the client's also covers a host
    that stopped answering). SQLite: WAL (readers never block the writer) and a busy timeout.
    """
    target = async_url(url)
    if for_migrations:
        statement_timeout = None
    if target.drivername == "postgresql+asyncpg":
        server_settings = {"application_name": "callgate"}
        connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT}
        if statement_timeout is not None:
            server_settings["statement_timeout"] = str(int(statement_timeout * 1000))
            connect_args["command_timeout"] = statement_timeout + 1.0
        connect_args["server_settings"] = server_settings
        return create_async_engine(target, pool_pre_ping=True, connect_args=connect_args)

    engine = create_async_engine(
        target, pool_pre_ping=True, connect_args={"timeout": SQLITE_BUSY_TIMEOUT}
    )
    _configure_sqlite(engine, transactional_ddl=for_migrations)
    path = sqlite_file(url)
    if path is not None:

        @event.listens_for(engine.sync_engine, "do_connect")
        def _create_owner_only(*_args: Any) -> None:
            # Before SQLite creates the file with the umask's mode: it holds every
            # enterprise's secret. SQLite gives its -wal and -shm files the file's mode.
            create_owner_only(path)

    return engine


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for an in-memory database or another database."""
    target = async_url(url)
    name = target.database
    if target.drivername != "sqlite+aiosqlite" or not name or name == ":memory:":
        return None
    if name.startswith("file:"):  # a URI filename (``?uri=true``): SQLite resolves it
        return None
    return Path(name)


def _configure_sqlite(engine: AsyncEngine, *, transactional_ddl: bool) -> None:
    """Per-connection pragmas, and (for migrations) transactions that include DDL.

    The sqlite3 driver's legacy mode never puts CREATE/ALTER inside a transaction, so a failed
    migration would leave half its tables behind. For the migration engine SQLAlchemy emits
    ``BEGIN IMMEDIATE`` itself (taking the write lock up front) as SQLAlchemy's SQLite docs
    describe. The service's engine keeps the legacy mode: its writes are single statements and
    legacy mode never holds a read snapshot that a later write could find stale.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if transactional_ddl:
            dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            # journal_mode is a no-op (returns "memory") for in-memory databases.
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT * 1000)}")
            # WAL + NORMAL is durable against application crashes, which is what matters here.
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    if transactional_ddl:

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


async def database_state(database: Executor, within: float = 5.0) -> str:
    """``"connected"`` or the failure's class name only: the result is shown by /api/status."""
    try:
        async with asyncio.timeout(within):
            await database.value(_ALIVE)
    except DBAPIError as exc:
        # The wrapper's own name ("OperationalError") says little; the driver's says more.
        return type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    except Exception as exc:  # any failure is a state to report, never a crash of /api/status
        return type(exc).__name__
    return "connected"


def describe_db_error(exc: BaseException) -> str:
    """A short, secret-free account of a database failure (never SQL, parameters or a DSN)."""
    if isinstance(exc, DBAPIError):
        detail = str(exc.orig)
        if "no such table" in detail or ("relation" in detail and "does not exist" in detail):
            return "the tables are missing; run `callgate db upgrade` first"
        return type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def safe_url(url: str) -> str:
    """``url`` with its password (in the user part or a ``password`` query key) masked."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return _USERINFO_PASSWORD.sub(r"\1***@", url)
    if parsed.query:
        masked = {
            key: ("***" if key.lower() in {"password", "passwd"} else value)
            for key, value in parsed.query.items()
        }
        parsed = parsed.set(query=masked)
    return parsed.render_as_string(hide_password=True)
