"""``callgate webhook add|list|remove|enable`` and ``callgate enterprise crm set|show|remove``.

An endpoint's signing secret is printed once, when it is added; a RetailCRM API key is read
from the environment variable ``--api-key-env`` names (never from the command line, where `ps`
and shell histories show it) and stored encrypted with CALLGATE_SECRET_KEY. A running service
reads the endpoints at every poll: nothing needs a restart.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, TypeVar

import typer

from callgate.cli_common import fail as _fail
from callgate.cli_common import settings as _settings
from callgate.errors import CallgateError, ConfigurationError, InvalidInput

_T = TypeVar("_T")

webhook_app = typer.Typer(
    help="Signed webhooks: an enterprise's call events sent to its URLs.", no_args_is_help=True
)
crm_app = typer.Typer(
    help="An enterprise's RetailCRM account, told of its calls.", no_args_is_help=True
)


def _run(work: Callable[[], Awaitable[_T]]) -> _T:
    async def awaited() -> _T:
        return await work()

    try:
        return asyncio.run(awaited())
    except InvalidInput as exc:
        option = {"enterprise": "NUMBER", "event_types": "--event"}.get(exc.field, "--url")
        _fail(f"{option}: {exc.message.removeprefix(f'{exc.field}: ')}", 2)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except CallgateError as exc:
        _fail(exc.message)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in (header, *rows):
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


@webhook_app.command("add")
def webhook_add(
    number: Annotated[str, typer.Argument(help="The enterprise's number.")],
    url: Annotated[str, typer.Option(help="http:// or https://, no credentials in it.")],
    event: Annotated[
        list[str] | None,
        typer.Option(metavar="TYPE", help="Only this event type, e.g. call.completed (repeat)."),
    ] = None,
) -> None:
    """Send the enterprise's call events to URL, signed; its secret is printed this once."""
    from callgate.calls import webhooks  # lazily: httpx and the drivers load only here

    settings = _settings()
    endpoint, secret = _run(lambda: webhooks.cli_add_webhook(settings, number, url, event))
    typer.echo(f"webhook {endpoint.id} added for enterprise {endpoint.enterprise_number}")
    typer.echo(f"secret: {secret}")  # shown this once, never again


@webhook_app.command("list")
def webhook_list(
    number: Annotated[str | None, typer.Argument(help="Only this enterprise's.")] = None,
) -> None:
    """List endpoints (never their secrets): pending deliveries, and why one is disabled."""
    from callgate.calls import webhooks

    settings = _settings()
    listed = _run(lambda: webhooks.cli_list(settings, number))
    if not listed:
        typer.echo("no webhooks")
        return
    rows = []
    for endpoint, pending in listed:
        types = " ".join(endpoint.event_types) if endpoint.event_types else "all"
        if endpoint.disabled_at is not None:
            state = (
                f"disabled {endpoint.disabled_at:%Y-%m-%d %H:%M:%S}Z: {endpoint.disabled_reason}"
            )
        elif endpoint.failures and endpoint.retry_at is not None:
            state = f"failing ({endpoint.failures}), retry at {endpoint.retry_at:%H:%M:%S}Z"
        else:
            state = "active"
        rows.append(
            [str(endpoint.id), endpoint.enterprise_number, endpoint.url, types, str(pending), state]
        )
    _table(["ID", "ENTERPRISE", "URL", "EVENTS", "PENDING", "STATE"], rows)


@webhook_app.command("remove")
def webhook_remove(endpoint_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Remove an endpoint and its undelivered events."""
    from callgate.calls import webhooks

    settings = _settings()
    if not _run(lambda: webhooks.cli_remove_webhook(settings, endpoint_id)):
        _fail(f"no webhook {endpoint_id}")
    typer.echo(f"webhook {endpoint_id} removed")


@webhook_app.command("enable")
def webhook_enable(endpoint_id: Annotated[int, typer.Argument(metavar="ID")]) -> None:
    """Deliver again to a disabled endpoint (or one waiting out a back-off): its waiting
    events go first, then the events since it stopped."""
    from callgate.calls import webhooks

    settings = _settings()
    if not _run(lambda: webhooks.cli_enable(settings, endpoint_id)):
        _fail(f"no endpoint {endpoint_id}")
    typer.echo(f"endpoint {endpoint_id} enabled")


@crm_app.command("set")
def crm_set(
    number: Annotated[str, typer.Argument(help="The enterprise's number.")],
    url: Annotated[str, typer.Option(help="The account's address, e.g. https://x.retailcrm.ru")],
    api_key_env: Annotated[
        str, typer.Option(metavar="VAR", help="Environment variable holding the API key.")
    ],
) -> None:
    """Tell the enterprise's RetailCRM account of its calls (their start and end, and each
    ended call uploaded); replaces an account set before."""
    from callgate.calls import webhooks

    key = os.environ.get(api_key_env)
    if not key:
        _fail(f"--api-key-env: environment variable {api_key_env} is not set or empty", 2)
    settings = _settings()
    endpoint = _run(lambda: webhooks.set_crm(settings, number, url, key))
    typer.echo(f"enterprise {number}: RetailCRM {endpoint.url} (endpoint {endpoint.id})")


@crm_app.command("show")
def crm_show(number: Annotated[str, typer.Argument(help="The enterprise's number.")]) -> None:
    """The enterprise's RetailCRM account, if it has one (never its API key)."""
    from callgate.calls import webhooks

    settings = _settings()
    listed = _run(lambda: webhooks.cli_list(settings, number, webhooks.RETAILCRM))
    if not listed:
        typer.echo(f"enterprise {number}: no RetailCRM account")
        return
    endpoint, pending = listed[0]
    state = "active" if endpoint.disabled_at is None else f"disabled: {endpoint.disabled_reason}"
    typer.echo(f"enterprise {number}: RetailCRM {endpoint.url} (endpoint {endpoint.id})")
    typer.echo(f"pending: {pending}; {state}")


@crm_app.command("remove")
def crm_remove(number: Annotated[str, typer.Argument(help="The enterprise's number.")]) -> None:
    """Stop telling the enterprise's RetailCRM account (its undelivered requests are dropped)."""
    from callgate.calls import webhooks

    settings = _settings()
    if not _run(lambda: webhooks.remove_crm(settings, number)):
        _fail(f"enterprise {number} has no RetailCRM account")
    typer.echo(f"enterprise {number}: RetailCRM removed")
