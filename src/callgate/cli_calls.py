"""`callgate call place|show|list|hangup` and `callgate calls watch`: the v1 API from a shell.

By default they go through the running service, so calls are verified, tracked and recorded
exactly as an integrator's. With ``--direct`` the service's own application runs inside the
command instead (same validation, authorisation, PBX transport and database, no HTTP server),
for an operator on a machine with the service's settings while the service is down or
unreachable; ``call place --direct`` then follows its call to the end itself, since no running
tracker knows of it. Either way the enterprise secret is read from an environment variable: a
secret on the command line would show in the process list and the shell history.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import httpx
import typer

from callgate.domain.states import TERMINAL
from callgate.errors import ConfigurationError
from callgate.settings import load_settings

if TYPE_CHECKING:  # loaded only by --direct: the API and its dependencies are heavy imports
    from callgate.api.deps import Services
    from callgate.db.call_tracking import Subscription

call_app = typer.Typer(
    help="Place and follow calls through the running service (or --direct).",
    no_args_is_help=True,
)
calls_app = typer.Typer(help="Live view of calls.", no_args_is_help=True)

Url = Annotated[str | None, typer.Option(help="The service (default: CALLGATE_HOST:PORT).")]
SecretEnv = Annotated[str, typer.Option(help="Environment variable holding the enterprise secret.")]
Direct = Annotated[
    bool,
    typer.Option(
        "--direct",
        help="Without the service: run its code in this process, on the database and PBX "
        "hosts of its settings (CALLGATE_* variables, .env).",
    ),
]
DEFAULT_SECRET_ENV = "CALLGATE_CLIENT_SECRET"  # noqa: S105 - a variable name, not a secret
DIRECT_BASE_URL = "http://callgate.direct"  # never resolved: requests go to the app in-process
_T = TypeVar("_T")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"callgate: {message}", err=True)
    raise typer.Exit(code)


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(work)
    except ConfigurationError as exc:
        _fail(exc.message, 2)


@dataclass
class _Api:
    client: httpx.AsyncClient
    direct: Services | None  # with --direct: the in-process service's parts


@asynccontextmanager
async def _api(
    url: str | None, secret_env: str, direct: bool, *, stream: bool = False
) -> AsyncIterator[_Api]:
    """A client of the v1 API: the running service's, or (``direct``) this process's own.

    ``stream``: no read timeout (an event stream is quiet while nothing happens).
    """
    timeout = None if stream else 60.0
    secret = os.environ.get(secret_env)
    if not secret:
        _fail(f"set {secret_env} to the enterprise's secret", 2)
    headers = {"Authorization": f"Bearer {secret}"}
    if not direct:
        if url is None:
            settings = load_settings()
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
            url = f"http://{host}:{settings.port}"
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
            yield _Api(client, None)
        return
    if url is not None:
        _fail("--url and --direct exclude each other", 2)
    from callgate.app import create_app
    from callgate.logs import configure_logging

    settings = load_settings()
    # The service's log lines go to its log file (the call log stays whole), not between the
    # command's own output.
    configure_logging(
        settings.log_file, settings.log_format.value, settings.log_level, console=False
    )
    app = create_app(settings, resume_calls=False)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url=DIRECT_BASE_URL,
            headers=headers,
            timeout=timeout,
        ) as client,
    ):
        yield _Api(client, app.state.services)


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


def _sides(sides: dict[str, Any] | None) -> str:
    """Why each side ended, in one line: ``agent answered (rang 1.2 s); customer busy (…)``."""
    if not sides:
        return ""
    parts = []
    for name in ("agent", "customer"):
        side = sides.get(name)
        if side is None:
            parts.append(f"{name} not reached")
            continue
        text = f"{name} {side['result']}"
        details = [f"rang {side['ring_s']} s"] if side.get("ring_s") is not None else []
        details += [side["reason"]] if side.get("reason") else []
        parts.append(text + (f" ({', '.join(details)})" if details else ""))
    return "; ".join(parts)


def _transition(
    at: str, call_id: str, state: str, reason: str | None, sides: dict[str, Any] | None = None
) -> None:
    ends = _sides(sides)
    typer.echo(f"{at}  {call_id}  {state:<18} {reason or ''}" + (f"  [{ends}]" if ends else ""))


async def _follow(services: Services, subscription: Subscription, call: dict[str, Any]) -> None:
    """Print the call's transitions until it ends (``place --direct``: nobody else follows it)."""
    if call["state"] in TERMINAL:
        return
    if call["id"] not in services.tracker.live_calls():
        typer.echo("  (placed earlier by another process, which follows it)")
        return
    from callgate.api.v1.render import sides_out  # loaded already: --direct runs the app

    async for transition in subscription:
        if transition.call_id == call["id"]:
            state, sides = str(transition.state), sides_out(transition.sides)
            ends = None if sides is None else sides.model_dump(mode="json")
            _transition(
                transition.at.isoformat(), transition.call_id, state, transition.reason, ends
            )
            if state in TERMINAL:
                return


@call_app.command("place")
def place(
    from_: Annotated[str, typer.Option("--from", help="Extension that rings first.")],
    to: Annotated[str, typer.Option("--to", help="Number dialled once it answers.")],
    ring_timeout: Annotated[int | None, typer.Option(help="Seconds the customer rings.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes a retry safe.")] = None,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """Place a call (POST /v1/calls) and print it; with --direct, follow it to its end."""
    body: dict[str, Any] = {"from": from_, "to": to}
    if ring_timeout is not None:
        body["ring_timeout"] = ring_timeout
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}

    async def work() -> None:
        async with _api(url, secret_env, direct) as api:
            # Subscribed before the call exists: none of its transitions can be missed.
            subscription = api.direct.tracker.subscribe() if api.direct else None
            try:
                call = _answer(await api.client.post("/v1/calls", json=body, headers=headers))
                _show(call)
                if api.direct is not None and subscription is not None:
                    await _follow(api.direct, subscription, call)
            finally:
                if subscription is not None:
                    subscription.close()

    _run(work())


def _request(
    url: str | None, secret_env: str, direct: bool, method: str, path: str, **kwargs: Any
) -> httpx.Response:
    """One request to the v1 API (see `_api`), its body read."""

    async def work() -> httpx.Response:
        async with _api(url, secret_env, direct) as api:
            return await api.client.request(method, path, **kwargs)

    return _run(work())


@call_app.command("show")
def show(
    call_id: str,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """A call with its timeline, durations and, once it ended, why each side ended."""
    call = _answer(_request(url, secret_env, direct, "GET", f"/v1/calls/{call_id}"))
    _show(call)
    for event in call["timeline"]:
        typer.echo(f"  {event['at']}  {event['state']:<18} {event.get('detail') or ''}")
    typer.echo("  " + json.dumps(call["durations"]))
    if call.get("sides"):
        typer.echo("  sides: " + _sides(call["sides"]))


@call_app.command("list")
def list_calls(
    state: str | None = None,
    extension: str | None = None,
    phone: str | None = None,
    limit: int = 20,
    csv: Annotated[bool, typer.Option("--csv", help="CSV export instead of lines.")] = False,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """Call history, newest first."""
    params: dict[str, Any] = {"state": state, "extension": extension, "phone": phone}
    params = {k: v for k, v in params.items() if v is not None} | {"limit": limit}
    if csv:
        params["format"] = "csv"
    response = _request(url, secret_env, direct, "GET", "/v1/calls", params=params)
    if csv:
        if response.status_code >= 400:
            _answer(response)
        typer.echo(response.text, nl=False)
        return
    for call in _answer(response)["items"]:
        _show(call)


@call_app.command("hangup")
def hangup(
    call_id: str,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """Hang a live call up; it ends as `canceled`."""
    _show(_answer(_request(url, secret_env, direct, "POST", f"/v1/calls/{call_id}/hangup")))


@calls_app.command("watch")
def watch(
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    count: Annotated[int | None, typer.Option(help="Stop after this many transitions.")] = None,
) -> None:
    """Print every transition of the enterprise's calls as it happens (GET /v1/events).

    Through the service only: it is the service's tracker that sees the calls change.
    """

    async def work() -> None:
        seen = 0
        async with (
            _api(url, secret_env, direct=False, stream=True) as api,
            api.client.stream("GET", "/v1/events") as stream,
        ):
            if stream.status_code >= 400:
                await stream.aread()
                _answer(stream)
            async for line in stream.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line.removeprefix("data: "))
                _transition(
                    event["at"],
                    event["call_id"],
                    event["state"],
                    event["reason"],
                    event.get("sides"),
                )
                seen += 1
                if count is not None and seen >= count:
                    return

    _run(work())
