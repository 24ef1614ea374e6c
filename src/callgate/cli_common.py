"""What every command module says the same way: a failure on one line, and the settings."""

from __future__ import annotations

from typing import NoReturn

import typer

from callgate.errors import ConfigurationError
from callgate.settings import Settings, load_settings


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def settings() -> Settings:
    """The settings, or exit 2 naming the bad variable."""
    try:
        return load_settings()
    except ConfigurationError as exc:
        fail(exc.message, 2)
