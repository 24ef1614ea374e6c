"""Run callgate's migrations from code: no alembic.ini, any working directory, installed or not.

The migration scripts live inside the package (``callgate/db/migrations``), found relative to
this file, so ``callgate db upgrade`` works the same from a checkout and from a wheel.

For development, the same config drives any Alembic command, e.g. a new revision::

    from alembic import command
    command.revision(alembic_config(url), message="...", autogenerate=True)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
# Its own version table: the production database is shared with other services, and one of
# them may well keep an `alembic_version` of its own.
VERSION_TABLE = "callgate_alembic_version"


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` for ``url``, built in memory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # Split lists on the OS path separator (Alembic's recommended setting), and keep
    # Alembic from guessing.
    config.set_main_option("path_separator", "os")
    # The URL travels as an attribute, not an ini option: configparser would read the "%" of a
    # URL-encoded password as interpolation syntax. env.py reads it from here.
    config.attributes["url"] = url
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at ``url`` up to ``revision``. Synchronous: call it from sync code only.

    The migrations run on a private event loop in the calling thread (see env.py), so calling
    this from inside a running loop would deadlock that loop's thread or fail; it is refused
    with a RuntimeError instead. From async code use ``await asyncio.to_thread(upgrade, url)``.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # no loop running in this thread: the supported case
    else:
        raise RuntimeError(
            "callgate.db.migrate.upgrade() is synchronous and cannot run inside a running "
            "event loop; use `await asyncio.to_thread(upgrade, url)`"
        )
    command.upgrade(alembic_config(url), revision)
