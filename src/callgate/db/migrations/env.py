"""Alembic environment for callgate, async-aware and configured in code (no alembic.ini).

``callgate.db.migrate.alembic_config`` passes the database URL in ``config.attributes["url"]``
(not as an ini option: configparser would treat a ``%`` of a URL-encoded password as
interpolation). A caller that already holds a synchronous connection may pass it as
``config.attributes["connection"]`` instead.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from callgate.db.engine import async_url, make_engine
from callgate.db.migrate import VERSION_TABLE
from callgate.db.models import METADATA

# pg_advisory_xact_lock key: two instances upgrading at once run the migrations one at a time.
MIGRATION_LOCK_KEY = 0x63616C6C  # "call"

config = context.config
target_metadata = METADATA


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: use callgate.db.migrate.upgrade(url)")
    return str(url)


def run_migrations_offline() -> None:
    """Emit the SQL (``alembic upgrade --sql``) instead of running it."""
    context.configure(
        url=async_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table=VERSION_TABLE,
    )
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    """Run the pending migrations in one transaction on ``connection``."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=VERSION_TABLE,
        # The migration engine wraps DDL in real transactions on SQLite too (see engine.py),
        # so every migration is all-or-nothing on both databases.
        transactional_ddl=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite's ALTER is limited
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


async def run_async_migrations() -> None:
    """Open a migration engine (no statement timeout, atomic DDL) and run the migrations."""
    engine = make_engine(_url(), for_migrations=True)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    """Run against the database, on a private event loop.

    ``loop_factory`` keeps asyncio.Runner from installing (and afterwards clearing) the thread's
    current event loop, so a synchronous caller's own loop setup is left alone.
    """
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        runner.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
