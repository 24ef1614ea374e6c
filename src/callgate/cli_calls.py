"""`callgate call place|show|list|hangup` and `callgate calls watch`: the v1 API from a shell.

They go through the running service (so calls are verified, tracked and recorded exactly as
an integrator's), authenticated with an enterprise secret read from an environment variable:
a secret on the command line would show in the process list and the shell history.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, NoReturn

import httpx
import typer

from callgate.settings import load_settings

call_app = typer.Typer(
    help="Place and follow calls through the running service.", no_args_is_help=True
)
calls_app = typer.Typer(help="Live view of calls.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option(help="The service (default: CALLGATE_HOST:PORT).")]
SecretEnv = Annotated[str, typer.Option(help="Environment variable holding the enterprise secret.")]
DEFAULT_SECRET_ENV = "CALLGATE_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"callgate: {message}", err=True)
    raise typer.Exit(code)


def _client(url: str | None, secret_env: str, timeout: float | None = 60.0) -> httpx.Client:
    secret = os.environ.get(secret_env)
    if not secret:
        _fail(f"set {secret_env} to the enterprise's secret", 2)
    if url is None:
        settings = load_settings()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        url = f"http://{host}:{settings.port}"
    return httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=timeout
    )


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            _fail(f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}")
        except ValueError:
            _fail(f"{response.status_code}: {response.text[:200]}")
    return response.json()


def _show(call: dict[str, Any]) -> None:
    typer.echo(
        f"{call['id']}  {call['state']:<18} {call['from']} -> {call['to']}  "
        f"host {call['host']}  created {call['created_at']}"
    )


@call_app.command("place")
def place(
    from_: Annotated[str, typer.Option("--from", help="Extension that rings first.")],
    to: Annotated[str, typer.Option("--to", help="Number dialled once it answers.")],
    ring_timeout: Annotated[int | None, typer.Option(help="Seconds the customer rings.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes a retry safe.")] = None,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
) -> None:
    """Place a call (POST /v1/calls) and print it."""
    body: dict[str, Any] = {"from": from_, "to": to}
    if ring_timeout is not None:
        body["ring_timeout"] = ring_timeout
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    with _client(url, secret_env) as client:
        _show(_answer(client.post("/v1/calls", json=body, headers=headers)))


@call_app.command("show")
def show(call_id: str, url: Url = None, secret_env: SecretEnv = DEFAULT_SECRET_ENV) -> None:
    """A call with its timeline and durations."""
    with _client(url, secret_env) as client:
        call = _answer(client.get(f"/v1/calls/{call_id}"))
    _show(call)
    for event in call["timeline"]:
        typer.echo(f"  {event['at']}  {event['state']:<18} {event.get('detail') or ''}")
    typer.echo("  " + json.dumps(call["durations"]))


@call_app.command("list")
def list_calls(
    state: str | None = None,
    extension: str | None = None,
    phone: str | None = None,
    limit: int = 20,
    csv: Annotated[bool, typer.Option("--csv", help="CSV export instead of lines.")] = False,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
) -> None:
    """Call history, newest first."""
    params = {"state": state, "extension": extension, "phone": phone, "limit": limit}
    params = {k: v for k, v in params.items() if v is not None}
    with _client(url, secret_env) as client:
        if csv:
            response = client.get("/v1/calls", params={**params, "format": "csv"})
            if response.status_code >= 400:
                _answer(response)
            typer.echo(response.text, nl=False)
            return
        for call in _answer(client.get("/v1/calls", params=params))["items"]:
            _show(call)


@call_app.command("hangup")
def hangup(call_id: str, url: Url = None, secret_env: SecretEnv = DEFAULT_SECRET_ENV) -> None:
    """Hang a live call up."""
    with _client(url, secret_env) as client:
        _show(_answer(client.post(f"/v1/calls/{call_id}/hangup")))


@calls_app.command("watch")
def watch(
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    count: Annotated[int | None, typer.Option(help="Stop after this many transitions.")] = None,
) -> None:
    """Print every transition of the enterprise's calls as it happens (GET /v1/events)."""
    seen = 0
    with (
        _client(url, secret_env, timeout=None) as client,
        client.stream("GET", "/v1/events") as stream,
    ):
        if stream.status_code >= 400:
            stream.read()
            _answer(stream)
        for line in stream.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line.removeprefix("data: "))
            typer.echo(f"{event['at']}  {event['call_id']}  {event['state']:<18} {event['reason']}")
            seen += 1
            if count is not None and seen >= count:
                return
