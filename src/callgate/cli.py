"""The operator's command line: ``callgate serve | service | db | enterprise | host``.

Every command reads the same settings as the service (``CALLGATE_*`` and ``.env``); a bad one is
reported on one line naming the variable, exit status 2 (as for any bad argument), while a
failure to do the work (database down, host unreachable) exits with 1. Changes made here are
read by the service on its next call: nothing needs a restart.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import stat
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from callgate.calls import admin
from callgate.cli_calls import call_app, calls_app
from callgate.cli_common import fail as _fail
from callgate.cli_common import settings as _settings
from callgate.cli_service import service_app
from callgate.cli_webhooks import crm_app, webhook_app
from callgate.domain.destinations import POLICY_FIELDS, DestinationPolicy, describe
from callgate.domain.hosts import (
    HostRow,
    host_address,
    key_fingerprint,
    normalize_public_key,
    validate_ssh_user,
)
from callgate.domain.sealed import is_sealed, new_key
from callgate.errors import (
    AlreadyExists,
    CallgateError,
    ConfigurationError,
    DatabaseUnavailable,
    InvalidInput,
)
from callgate.redaction import mask_secret
from callgate.settings import ENTERPRISE_LIMITS, HostKeyPolicy
from callgate.validation import validate_context

_T = TypeVar("_T")

# pretty_exceptions off: rich's tracebacks print local variables, which may hold secrets.
app = typer.Typer(
    name="callgate",
    help="Start calls on remote Asterisk PBXs over SSH: service and administration.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database schema.", no_args_is_help=True)
enterprise_app = typer.Typer(help="Enterprises and their secrets.", no_args_is_help=True)
host_app = typer.Typer(help="Per-host SSH settings and pinned host keys.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(enterprise_app, name="enterprise")
app.add_typer(host_app, name="host")
app.add_typer(call_app, name="call")
app.add_typer(calls_app, name="calls")
app.add_typer(service_app, name="service")
app.add_typer(webhook_app, name="webhook")
enterprise_app.add_typer(crm_app, name="crm")

# Repository fields whose option is not simply "--" + the field name with dashes.
_OPTION_OF = {
    "address": "IP",
    "ssh_password": "--password-env",
    "ssh_key_file": "--key-file",
    "dial_context": "--context",
}
_HOST_HEADER = ["ADDRESS", "PORT", "USER", "PASSWORD", "KEY-FILE", "POLICY", "CONTEXT"]
_HOST_HEADER += ["TRANSPORT", "HOST-KEY"]
GENERATED_SECRET_BYTES = 32  # 43 URL-safe characters, 256 bits
MIN_SECRET_LENGTH = 16


def main() -> None:
    """Entry point of the ``callgate`` console script."""
    app(prog_name="callgate")


def _with_db(work: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``work`` (on the configured database), reporting failures."""
    try:
        return asyncio.run(_awaited(work))
    except InvalidInput as exc:
        option = _OPTION_OF.get(exc.field, "--" + exc.field.replace("_", "-"))
        _fail(f"{option}: {exc.message.removeprefix(f'{exc.field}: ')}", 2)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except (AlreadyExists, DatabaseUnavailable) as exc:
        _fail(exc.message)
    except CallgateError as exc:  # a PBX error of `host check`: its message is client-safe
        _fail(f"{exc.code}: {exc.message}")


async def _awaited(work: Callable[[], Awaitable[_T]]) -> _T:
    return await work()


def _check(option: str, check: Callable[[str], str], value: str) -> str:
    """``check(value)``; a ValueError or ConfigurationError exits 2 naming ``option``."""
    try:
        return check(value)
    except ValueError as exc:
        _fail(f"{option}: {exc}", 2)
    except ConfigurationError as exc:
        _fail(f"{option}: {exc.message}", 2)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@app.command()
def serve() -> None:
    """Run the HTTP service on CALLGATE_HOST:CALLGATE_PORT."""
    settings = _settings()
    from callgate.app import serve as run_service  # lazily: uvicorn and the API load only here

    try:
        run_service(settings)
    except ConfigurationError as exc:
        _fail(exc.message, 2)


@app.command("secret-key")
def secret_key() -> None:
    """Print a new key for CALLGATE_SECRET_KEY (it encrypts the SSH passwords stored by
    `host set`). Keep it out of the database's backups; a lost key means setting the
    passwords again."""
    typer.echo(new_key())


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Option(help="Target revision.")] = "head") -> None:
    """Create or upgrade callgate's tables (an existing enterprises table is left as it is)."""
    from alembic.util import CommandError

    settings = _settings()
    try:
        shown = admin.upgrade_schema(settings.database_url, revision)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except CommandError as exc:
        _fail(str(exc))
    except DatabaseUnavailable as exc:
        _fail(exc.message)
    typer.echo(f"database {shown} is at revision {revision}")


@enterprise_app.command("add")
def enterprise_add(
    number: Annotated[str, typer.Option(help="Short code, e.g. 0367.")],
    name: Annotated[str, typer.Option(help="Short name, e.g. june.")],
    ip: Annotated[str, typer.Option(help="The enterprise's Asterisk host.")],
    secret_env: Annotated[
        str | None, typer.Option(metavar="VAR", help="Environment variable with the clientId.")
    ] = None,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the clientId from standard input.")
    ] = False,
    secret: Annotated[str | None, typer.Option(hidden=True)] = None,
) -> None:
    """Add an active enterprise. Its secret (the clientId of its requests) is generated and
    printed once, unless given with --secret-env or --secret-stdin (then it is not printed)."""
    if secret is not None:
        _fail(
            "--secret: a secret on the command line shows in `ps` and shell history; "
            "give it with --secret-env VAR or --secret-stdin",
            2,
        )
    settings = _settings()
    address = _check("--ip", host_address, ip)
    given = _given_secret(secret_env, secret_stdin)
    chosen = given or secrets.token_urlsafe(GENERATED_SECRET_BYTES)
    if given is not None and len(given) < MIN_SECRET_LENGTH:
        typer.echo(f"warning: a secret under {MIN_SECRET_LENGTH} characters is guessable", err=True)
    url = settings.database_url
    added = _with_db(lambda: admin.add_enterprise(url, number, name, address, chosen))
    typer.echo(f"enterprise {added.number} ({added.name}) added, PBX host {added.ip}")
    if given is None:
        typer.echo(f"secret: {chosen}")  # generated: shown this once, never again
    else:
        typer.echo(f"secret stored as given: {mask_secret(given)}")


def _given_secret(env: str | None, stdin: bool) -> str | None:
    """The secret given in the environment or on standard input (its first line); None: none
    was given, one is generated."""
    if env is not None and stdin:
        _fail("--secret-env and --secret-stdin: give one of them", 2)
    if env is not None:
        value = os.environ.get(env)
        if not value:
            _fail(f"--secret-env: environment variable {env} is not set or empty", 2)
        return value
    if stdin:
        # Typed at a terminal: not echoed. Piped: its first line.
        tty = sys.stdin.isatty()
        value = getpass.getpass("secret: ") if tty else sys.stdin.readline().rstrip("\r\n")
        if not value:
            _fail("--secret-stdin: standard input holds no secret", 2)
        return value
    return None


@enterprise_app.command("list")
def enterprise_list() -> None:
    """List enterprises (secrets shown as their first 8 characters only) and where each may
    call: its own destination policy, or "default" (shown below the table)."""
    settings = _settings()
    url, region = settings.database_url, settings.default_region
    listed = _with_db(lambda: admin.list_enterprises(url))
    default, own = _with_db(lambda: admin.destination_policies(url, region))
    rows = [
        [e.number, e.name, e.ip, "yes" if e.active else "no", mask_secret(secret), shown]
        for e, secret in listed
        for shown in [describe(own[e.number]) if e.number in own else "default"]
    ]
    if rows:
        _table(["NUMBER", "NAME", "IP", "ACTIVE", "SECRET", "DESTINATIONS"], rows)
    else:
        typer.echo("no enterprises")
    typer.echo(f"default destinations: {describe(default)}")


_LIST = "comma-separated; '' for none"


@enterprise_app.command("policy")
def enterprise_policy(
    number: Annotated[str | None, typer.Argument(help="Its number (or --default).")] = None,
    is_default: Annotated[
        bool, typer.Option("--default", help="The global default, for every enterprise's unset.")
    ] = False,
    region: Annotated[
        str | None,
        typer.Option(metavar="CC", help="Its country: numbers without + are read in it."),
    ] = None,
    allowed_regions: Annotated[
        str | None, typer.Option(metavar="CC,…", help=f"Only these regions (or prefixes); {_LIST}.")
    ] = None,
    allowed_prefixes: Annotated[
        str | None, typer.Option(metavar="P,…", help=f"Only these prefixes (or regions); {_LIST}.")
    ] = None,
    denied_prefixes: Annotated[
        str | None, typer.Option(metavar="P,…", help=f"e.g. +882 (international form); {_LIST}.")
    ] = None,
    denied_types: Annotated[
        str | None,
        typer.Option(metavar="T,…", help=f"e.g. PREMIUM_RATE,SHARED_COST,EMERGENCY,UAN; {_LIST}."),
    ] = None,
    max_length: Annotated[int | None, typer.Option(min=1, max=15, help="Digits.")] = None,
    extensions: Annotated[
        str | None, typer.Option(metavar="R,…", help=f"Who may call, e.g. 100-199,250; {_LIST}.")
    ] = None,
    inherit: Annotated[
        list[str] | None, typer.Option(metavar="FIELD", help="Inherit a field again, e.g. region.")
    ] = None,
) -> None:
    """Show or change where an enterprise's calls may go (its destination policy); fields it
    leaves unset come from the global default, then from the shipped policy."""
    settings = _settings()
    if (number is None) == (not is_default):
        _fail("give an enterprise's number or --default, not both", 2)
    key = "*" if is_default else str(number)
    given = {
        "region": region,
        "allowed_regions": allowed_regions,
        "allowed_prefixes": allowed_prefixes,
        "denied_prefixes": denied_prefixes,
        "denied_types": denied_types,
        "max_length": max_length,
        "extensions": extensions,
    }
    changes: dict[str, str | int | None] = {k: v for k, v in given.items() if v is not None}
    for name in inherit or ():
        field = name.replace("-", "_")
        if field not in POLICY_FIELDS:
            _fail(f"--inherit: {name!r} is not one of {', '.join(POLICY_FIELDS)}", 2)
        changes[field] = None
    url, default_region = settings.database_url, settings.default_region
    policy: DestinationPolicy | None
    if changes:
        policy = _with_db(lambda: admin.set_policy(url, key, changes, default_region))
        if policy is None:
            _fail(f"no enterprise with number {key!r}")
    else:
        default, own = _with_db(lambda: admin.destination_policies(url, default_region))
        policy = own.get(key, default)
    typer.echo(f"{'default' if is_default else f'enterprise {key}'}: {describe(policy)}")


_LIMIT = "0: off"


@enterprise_app.command("limits")
def enterprise_limits(
    number: Annotated[str, typer.Argument(help="Its number.")],
    enterprise_per_second: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    enterprise_per_minute: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    extension_per_minute: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    destination_per_10_minutes: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    destination_per_day: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    live_calls_per_enterprise: Annotated[int | None, typer.Option(min=0, help=_LIMIT)] = None,
    default: Annotated[
        list[str] | None,
        typer.Option("--default", metavar="LIMIT", help="Back to CALLGATE_LIMIT_<LIMIT>."),
    ] = None,
) -> None:
    """Show or change an enterprise's own rate and live-call limits (the others are the
    CALLGATE_LIMIT_* defaults); a running service applies a change within
    CALLGATE_LIMIT_REFRESH_INTERVAL seconds."""
    settings = _settings()
    given = {
        "enterprise_per_second": enterprise_per_second,
        "enterprise_per_minute": enterprise_per_minute,
        "extension_per_minute": extension_per_minute,
        "destination_per_10_minutes": destination_per_10_minutes,
        "destination_per_day": destination_per_day,
        "live_calls_per_enterprise": live_calls_per_enterprise,
    }
    changes: dict[str, int | None] = {k: v for k, v in given.items() if v is not None}
    for name in default or ():
        field = name.replace("-", "_")
        if field not in ENTERPRISE_LIMITS:
            _fail(f"--default: {name!r} is not one of {', '.join(ENTERPRISE_LIMITS)}", 2)
        changes[field] = None
    url = settings.database_url
    if changes and not _with_db(lambda: admin.set_limits(url, number, changes)):
        _fail(f"no enterprise with number {number!r}")
    own = _with_db(lambda: admin.own_limits(url)).get(number, {})
    for name in ENTERPRISE_LIMITS:
        value = own.get(name, getattr(settings, f"limit_{name}"))
        typer.echo(f"{name}: {value or 'off'}{'' if name in own else ' (default)'}")


def _set_active(number: str, active: bool) -> None:
    url = _settings().database_url
    if not _with_db(lambda: admin.set_active(url, number, active)):
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


@host_app.command("set")
def host_set(
    ip: Annotated[str, typer.Argument(metavar="IP", help="The host, as in enterprises.ip.")],
    ssh_port: Annotated[int | None, typer.Option(min=1, max=65535)] = None,
    ssh_user: Annotated[str | None, typer.Option()] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            metavar="VAR", help="Environment variable with the password (stored encrypted)."
        ),
    ] = None,
    key_file: Annotated[Path | None, typer.Option(metavar="FILE", help="Private key.")] = None,
    host_key_policy: Annotated[HostKeyPolicy | None, typer.Option()] = None,
    host_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="The host's OpenSSH public key ('<type> <base64>'), pinned before the first "
            "contact (e.g. from ssh-keyscan, checked out of band).",
        ),
    ] = None,
    context: Annotated[str | None, typer.Option(metavar="C", help="Dialplan context.")] = None,
    transport: Annotated[
        str | None, typer.Option(metavar="NAME", help="A registered transport: rx, console, ...")
    ] = None,
) -> None:
    """Set per-host overrides of the CALLGATE_SSH_* defaults; only the given ones change."""
    settings = _settings()
    address = _check("IP", host_address, ip)
    if password_env is not None and key_file is not None:
        _fail("--password-env and --key-file: give one of them", 2)
    overrides: dict[str, object] = {}
    if ssh_port is not None:
        overrides["ssh_port"] = ssh_port
    if ssh_user is not None:
        overrides["ssh_user"] = _check("--ssh-user", validate_ssh_user, ssh_user)
    if password_env is not None:
        # From the environment: the password is in neither `ps` output nor shell history.
        password = os.environ.get(password_env)
        if not password:
            _fail(f"--password-env: environment variable {password_env} is not set or empty", 2)
        overrides["ssh_password"] = password
    if key_file is not None:
        overrides["ssh_key_file"] = str(_checked_key_file(key_file))
    if host_key_policy is not None:
        overrides["host_key_policy"] = host_key_policy
    if host_key is not None:
        overrides["host_key"] = _check("--host-key", normalize_public_key, host_key)
    if context is not None:
        overrides["dial_context"] = _check("--context", validate_context, context)
    if transport is not None:
        from callgate.wiring import registered_transport  # lazily: asyncssh loads only here

        overrides["transport"] = _check("--transport", registered_transport, transport)
    key = settings.secret_key
    row = _with_db(lambda: admin.set_host(settings.database_url, address, overrides, key))
    _table(_HOST_HEADER, [_host_cells(row)])


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


def _host_cells(row: HostRow) -> list[str]:
    """One host as table cells; ``-`` means "the default applies". Never the password."""
    try:
        pinned = key_fingerprint(row.host_key) if row.host_key else "-"
    except ValueError:
        pinned = "unreadable"
    values = [row.ssh_port, row.ssh_user, _password_cell(row.ssh_password), row.ssh_key_file]
    values += [row.host_key_policy, row.dial_context, row.transport]
    return [row.address, *("-" if value is None else str(value) for value in values), pinned]


def _password_cell(stored: str | None) -> str | None:
    """How a password is stored: ``encrypted``, or ``plain`` (stored in clear by an earlier
    version; the next `host set` of the host encrypts it)."""
    if stored is None or stored == "set":
        return stored
    return "encrypted" if is_sealed(stored) else "plain"


@host_app.command("list")
def host_list() -> None:
    """List the defaults and each host's overrides (passwords shown only as set or -)."""
    settings = _settings()
    rows = [_host_cells(row) for row in _with_db(lambda: admin.list_hosts(settings.database_url))]
    defaults = HostRow(
        address="(defaults)",
        ssh_port=settings.ssh_port,
        ssh_user=settings.ssh_user,
        ssh_password="set" if settings.ssh_password else None,  # a marker, never the value
        ssh_key_file=str(settings.ssh_key_file) if settings.ssh_key_file else None,
        host_key_policy=settings.ssh_host_key_policy.value,
        dial_context=settings.dial_context,
        transport=settings.transport,
    )
    _table(_HOST_HEADER, [_host_cells(defaults), *rows])


@host_app.command("forget-key")
def host_forget_key(ip: Annotated[str, typer.Argument(metavar="IP")]) -> None:
    """Forget the pinned host key after an intended key change; the next contact pins anew."""
    settings = _settings()
    address = _check("IP", host_address, ip)
    if _with_db(lambda: admin.forget_host_key(settings.database_url, address)):
        typer.echo(f"pinned host key of {address} forgotten")
    else:
        typer.echo(f"no host key was pinned for {address}")


@host_app.command("check")
def host_check(ip: Annotated[str, typer.Argument(metavar="IP")]) -> None:
    """Log in to the host as the service would and print its Asterisk version."""
    settings = _settings()
    address = _check("IP", host_address, ip)
    from callgate.wiring import check_host  # lazily: asyncssh loads only here

    async def work() -> str:
        async with admin.opened(settings.database_url) as database:
            return await check_host(settings, database, address)

    typer.echo(_with_db(work))
