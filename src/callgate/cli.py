"""The operator's command line: ``callgate serve | db | enterprise | host``.

Every command reads the same settings as the service (``CALLGATE_*`` and ``.env``); a bad one is
reported on one line naming the variable, with exit status 2 (usage and configuration errors),
while a failure to do the work (database down, host unreachable) exits with 1.

Changes made here are read by the service on its next call: nothing needs a restart.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import secrets
import stat
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from callgate.db.engine import async_url, make_engine, make_sessionmaker, safe_url
from callgate.db.models import PbxHost
from callgate.db.repositories import AlreadyExists, EnterpriseRepo, HostOverrides, HostRepo
from callgate.errors import CallgateError, ConfigurationError, InvalidInput
from callgate.hosts import host_address, key_fingerprint, validate_ssh_user
from callgate.settings import HostKeyPolicy, Settings, Transport, load_settings
from callgate.validation import validate_context

_T = TypeVar("_T")
Sessions = async_sessionmaker[AsyncSession]

# pretty_exceptions off: rich's tracebacks print local variables, which may hold secrets.
app = typer.Typer(
    name="callgate",
    help="Start calls on remote Asterisk PBXs over SSH: service and administration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
enterprise_app = typer.Typer(help="Tenants and their secrets.", no_args_is_help=True)
host_app = typer.Typer(help="Per-host SSH settings and pinned host keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(enterprise_app, name="enterprise")
app.add_typer(host_app, name="host")

# How a repository's field is called on this command line, for error messages.
_OPTION_OF = {
    "number": "--number",
    "name": "--name",
    "ip": "--ip",
    "secret": "--secret",
    "address": "IP",
    "ssh_port": "--ssh-port",
    "ssh_user": "--ssh-user",
    "ssh_password": "--password-env",
    "ssh_key_file": "--key-file",
    "host_key_policy": "--host-key-policy",
    "dial_context": "--context",
    "transport": "--transport",
}
GENERATED_SECRET_BYTES = 32  # 43 URL-safe characters, 256 bits
MIN_SECRET_LENGTH = 16


def main() -> None:
    """Entry point of the ``callgate`` console script."""
    app(prog_name="callgate")


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    raise typer.Exit(code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as exc:
        _fail(exc.message, 2)


def _describe(exc: BaseException) -> str:
    """A short, secret-free account of a database failure (never SQL, parameters or a DSN)."""
    if isinstance(exc, DBAPIError):
        detail = str(exc.orig)
        if "no such table" in detail or "does not exist" in detail:
            return "the tables are missing; run `callgate db upgrade` first"
        return type(exc.orig).__name__ if exc.orig is not None else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


def _with_db(settings: Settings, work: Callable[[Sessions], Awaitable[_T]]) -> _T:
    """Run ``work`` with a sessionmaker on the configured database, reporting failures."""
    try:
        engine = make_engine(settings.database_url)
    except ConfigurationError as exc:
        _fail(exc.message, 2)

    async def run() -> _T:
        try:
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except InvalidInput as exc:
        _fail(_invalid(exc), 2)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except AlreadyExists as exc:
        _fail(str(exc))
    except CallgateError as exc:  # a PBX error of `host check`: its message is client-safe
        _fail(f"{exc.code}: {exc.message}")
    except (DBAPIError, OSError, TimeoutError) as exc:
        _fail(f"database {safe_url(settings.database_url)}: {_describe(exc)}")


def _invalid(exc: InvalidInput) -> str:
    detail = exc.message.removeprefix(f"{exc.field}: ")
    return f"{_OPTION_OF.get(exc.field, exc.field)}: {detail}"


def _lazy(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported only now: the module may belong to a part not yet installed."""
    try:
        target = getattr(importlib.import_module(module), name, None)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            _fail(f"{module} is not available in this installation")
        raise
    if not callable(target):
        _fail(f"{module}.{name} is not available in this installation")
    return target  # type: ignore[no-any-return]


def _checked_address(ip: str, option: str) -> str:
    try:
        return host_address(ip)
    except ConfigurationError as exc:
        _fail(f"{option}: {exc.message}", 2)


def mask_secret(secret: str) -> str:
    """The first 8 characters and ``…`` (fewer for short secrets: never more than half)."""
    return secret[: min(8, len(secret) // 2)] + "…"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


# --- serve and db ----------------------------------------------------------------------------


@app.command()
def serve() -> None:
    """Run the HTTP service on CALLGATE_HOST:CALLGATE_PORT."""
    settings = _settings()
    run = _lazy("callgate.app", "serve")
    try:
        result = run(settings)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except ConfigurationError as exc:
        _fail(exc.message, 2)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
) -> None:
    """Create or upgrade callgate's tables (an existing enterprises table is left as it is)."""
    from alembic.util import CommandError

    from callgate.db.migrate import upgrade

    settings = _settings()
    try:
        async_url(settings.database_url)
        upgrade(settings.database_url, revision)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except CommandError as exc:
        _fail(str(exc))
    except (DBAPIError, OSError, TimeoutError) as exc:
        _fail(f"database {safe_url(settings.database_url)}: {_describe(exc)}")
    typer.echo(f"database {safe_url(settings.database_url)} is at revision {revision}")


# --- enterprise ------------------------------------------------------------------------------


@enterprise_app.command("add")
def enterprise_add(
    number: Annotated[str, typer.Option(help="Short code, e.g. 0367.")],
    name: Annotated[str, typer.Option(help="Short name, e.g. june.")],
    ip: Annotated[str, typer.Option(help="The enterprise's Asterisk host.")],
    secret: Annotated[
        str | None, typer.Option(help="The clientId; generated when omitted (recommended).")
    ] = None,
) -> None:
    """Add an active enterprise and print its secret (the clientId of its requests)."""
    settings = _settings()
    address = _checked_address(ip, "--ip")
    if secret is None:
        secret = secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    elif len(secret) < MIN_SECRET_LENGTH:
        typer.echo(f"warning: a secret under {MIN_SECRET_LENGTH} characters is guessable", err=True)
    chosen = secret

    async def work(sessions: Sessions) -> None:
        async with sessions() as session:
            await EnterpriseRepo(session).add(number, name, address, chosen)

    _with_db(settings, work)
    typer.echo(f"enterprise {number} ({name}) added, PBX host {address}")
    typer.echo(f"secret: {chosen}")


@enterprise_app.command("list")
def enterprise_list() -> None:
    """List enterprises; secrets are shown as their first 8 characters only."""
    settings = _settings()

    async def work(sessions: Sessions) -> list[list[str]]:
        async with sessions() as session:
            return [
                [e.number, e.name, e.ip, "yes" if e.active else "no", mask_secret(e.secret)]
                for e in await EnterpriseRepo(session).list_all()
            ]

    rows = _with_db(settings, work)
    if not rows:
        typer.echo("no enterprises")
        return
    _table(["NUMBER", "NAME", "IP", "ACTIVE", "SECRET"], rows)


def _set_active(number: str, active: bool) -> None:
    settings = _settings()

    async def work(sessions: Sessions) -> bool:
        async with sessions() as session:
            return await EnterpriseRepo(session).set_active(number, active)

    if not _with_db(settings, work):
        _fail(f"no enterprise with number {number!r}")
    typer.echo(f"enterprise {number} {'enabled' if active else 'disabled'}")


@enterprise_app.command("disable")
def enterprise_disable(number: Annotated[str, typer.Argument(help="Its number.")]) -> None:
    """Refuse the enterprise's requests (401) from the next call on."""
    _set_active(number, False)


@enterprise_app.command("enable")
def enterprise_enable(number: Annotated[str, typer.Argument(help="Its number.")]) -> None:
    """Accept the enterprise's requests again."""
    _set_active(number, True)


# --- host ------------------------------------------------------------------------------------


@host_app.command("set")
def host_set(
    ip: Annotated[str, typer.Argument(metavar="IP", help="The host, as in enterprises.ip.")],
    ssh_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    ssh_user: Annotated[str | None, typer.Option()] = None,
    password_env: Annotated[
        str | None,
        typer.Option(metavar="VAR", help="Read the SSH password from this environment variable."),
    ] = None,
    key_file: Annotated[
        Path | None, typer.Option(metavar="FILE", help="SSH private key file.")
    ] = None,
    host_key_policy: Annotated[HostKeyPolicy | None, typer.Option()] = None,
    context: Annotated[str | None, typer.Option(metavar="C", help="Dialplan context.")] = None,
    transport: Annotated[Transport | None, typer.Option()] = None,
) -> None:
    """Set per-host overrides of the CALLGATE_SSH_* defaults; only the given ones change."""
    settings = _settings()
    address = _checked_address(ip, "IP")
    overrides: HostOverrides = {}
    if password_env is not None and key_file is not None:
        _fail("--password-env and --key-file: give one of them", 2)
    if ssh_port is not None:
        overrides["ssh_port"] = ssh_port
    if ssh_user is not None:
        try:
            overrides["ssh_user"] = validate_ssh_user(ssh_user)
        except ValueError as exc:
            _fail(f"--ssh-user: {exc}", 2)
    if password_env is not None:
        # From the environment, so the password is in neither `ps` output nor shell history.
        password = os.environ.get(password_env)
        if not password:
            _fail(f"--password-env: environment variable {password_env} is not set or empty", 2)
        overrides["ssh_password"] = password
    if key_file is not None:
        overrides["ssh_key_file"] = str(_checked_key_file(key_file))
    if host_key_policy is not None:
        overrides["host_key_policy"] = host_key_policy
    if context is not None:
        try:
            overrides["dial_context"] = validate_context(context)
        except ValueError as exc:
            _fail(f"--context: {exc}", 2)
    if transport is not None:
        overrides["transport"] = transport

    async def work(sessions: Sessions) -> list[str]:
        async with sessions() as session:
            return _host_cells(await HostRepo(session).set(address, **overrides))

    cells = _with_db(settings, work)
    _table(_HOST_HEADER, [cells])


def _checked_key_file(path: Path) -> Path:
    """The key file as an absolute path; it must be a readable regular file."""
    resolved = path.expanduser().resolve()
    if not resolved.is_file():
        _fail(f"--key-file: {path} is not an existing file", 2)
    if not os.access(resolved, os.R_OK):
        _fail(f"--key-file: {path} is not readable", 2)
    if resolved.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        typer.echo(f"warning: {path} is accessible to other users; chmod 600 it", err=True)
    return resolved


_HOST_HEADER = [
    "ADDRESS", "PORT", "USER", "PASSWORD", "KEY-FILE", "POLICY", "CONTEXT", "TRANSPORT", "HOST-KEY"
]


def _host_cells(row: PbxHost) -> list[str]:
    """One host as table cells; ``-`` means "the default applies". Never the password."""

    def cell(value: object) -> str:
        return "-" if value is None else str(value)

    try:
        pinned = key_fingerprint(row.host_key) if row.host_key else "-"
    except ValueError:
        pinned = "unreadable"
    return [
        row.address,
        cell(row.ssh_port),
        cell(row.ssh_user),
        "set" if row.ssh_password else "-",
        cell(row.ssh_key_file),
        cell(row.host_key_policy),
        cell(row.dial_context),
        cell(row.transport),
        pinned,
    ]


@host_app.command("list")
def host_list() -> None:
    """List the defaults and each host's overrides (passwords shown only as set or -)."""
    settings = _settings()

    async def work(sessions: Sessions) -> list[list[str]]:
        async with sessions() as session:
            return [_host_cells(row) for row in await HostRepo(session).list_all()]

    rows = _with_db(settings, work)
    defaults = [
        "(defaults)",
        str(settings.ssh_port),
        settings.ssh_user,
        "set" if settings.ssh_password else "-",
        str(settings.ssh_key_file) if settings.ssh_key_file else "-",
        settings.ssh_host_key_policy.value,
        settings.dial_context,
        settings.transport.value,
        "-",
    ]
    _table(_HOST_HEADER, [defaults, *rows])


@host_app.command("forget-key")
def host_forget_key(ip: Annotated[str, typer.Argument(metavar="IP")]) -> None:
    """Forget the pinned host key after an intended key change; the next contact pins anew."""
    settings = _settings()
    address = _checked_address(ip, "IP")

    async def work(sessions: Sessions) -> bool:
        async with sessions() as session:
            return await HostRepo(session).forget_host_key(address)

    if _with_db(settings, work):
        typer.echo(f"pinned host key of {address} forgotten")
    else:
        typer.echo(f"no host key was pinned for {address}")


@host_app.command("check")
def host_check(ip: Annotated[str, typer.Argument(metavar="IP")]) -> None:
    """Log in to the host as the service would and print its Asterisk version."""
    settings = _settings()
    address = _checked_address(ip, "IP")
    check_host = _lazy("callgate.pbx.factory", "check_host")

    async def work(sessions: Sessions) -> str:
        result = check_host(settings, sessions, address)
        if inspect.isawaitable(result):
            result = await result
        return str(result)

    typer.echo(_with_db(settings, work))
