"""`callgate call place|show|list|hangup` and `callgate calls watch`: the v1 API from a shell.

By default they go through the running service, so calls are verified, tracked and recorded
exactly as an integrator's. With ``--direct`` the command runs the service's use cases itself
(same validation, authorisation, PBX transport and database, no HTTP server), for an operator
on a machine with the service's settings while the service is down or unreachable; ``call
place --direct`` then follows its call to the end itself, since no running tracker knows of
it. Either way the enterprise secret is read from an environment variable: a secret on the
command line would show in the process list and the shell history.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import httpx
import typer

from callgate.domain.states import TERMINAL
from callgate.errors import CallgateError, ConfigurationError
from callgate.settings import load_settings

if TYPE_CHECKING:  # loaded only by --direct: the use cases and their drivers are heavy imports
    from callgate.calls.reading import CallView
    from callgate.calls.service import Enterprise
    from callgate.calls.services import Services
    from callgate.calls.watching import EnterpriseFeed
    from callgate.domain.outcomes import Sides

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
FOLLOW_QUIET = 60.0  # seconds a followed call may go without a transition before a re-check
_T = TypeVar("_T")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"callgate: {message}", err=True)
    raise typer.Exit(code)


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    try:
        return asyncio.run(work)
    except ConfigurationError as exc:
        _fail(exc.message, 2)
    except CallgateError as exc:  # --direct: a use case's refusal, with the API's code
        _fail(f"{exc.code}: {exc.message}")


def _secret(secret_env: str) -> str:
    secret = os.environ.get(secret_env)
    if not secret:
        _fail(f"set {secret_env} to the enterprise's secret", 2)
    return secret


@asynccontextmanager
async def _client(
    url: str | None, secret_env: str, *, stream: bool = False
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the running service's v1 API.

    ``stream``: no read timeout (an event stream is quiet while nothing happens).
    """
    secret = _secret(secret_env)
    if url is None:
        settings = load_settings()
        host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
        url = f"http://{host}:{settings.port}"
    headers = {"Authorization": f"Bearer {secret}"}
    timeout = None if stream else 60.0
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=timeout) as client:
        yield client


@asynccontextmanager
async def _direct(url: str | None, secret_env: str) -> AsyncIterator[tuple[Services, Enterprise]]:
    """The service's use cases, wired in this process, and the enterprise of the secret."""
    if url is not None:
        _fail("--url and --direct exclude each other", 2)
    async with direct_services(_secret(secret_env)) as found:
        yield found


@asynccontextmanager
async def direct_services(secret: str) -> AsyncIterator[tuple[Services, Enterprise]]:
    """`_direct` for a secret at hand (`callgate service test --call`)."""
    from callgate.logs import configure_logging
    from callgate.wiring import running

    settings = load_settings()
    # The service's log lines go to its log file (the call log stays whole), not between the
    # command's own output.
    configure_logging(
        settings.log_file, settings.log_format.value, settings.log_level, console=False
    )
    async with running(settings, resume_calls=False) as cases:
        yield cases, await cases.calls.authorise(secret)


def _answer(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            body = response.json()
            _fail(f"{response.status_code} {body.get('code', '')}: {body.get('detail', '')}")
        except ValueError:
            _fail(f"{response.status_code}: {response.text[:200]}")
    return response.json()


def _call(view: CallView) -> dict[str, Any]:
    """A call read directly, in the keys of its v1 body that the lines below print."""
    return {
        "id": view.id,
        "state": view.state,
        "from": view.extension,
        "to": view.phone,
        "host": view.host,
        "created_at": view.created_at.isoformat(),
        "timeline": [
            {"state": e.state, "at": e.at.isoformat(), "detail": e.detail} for e in view.timeline
        ],
        "durations": view.durations,
        "sides": _sides_of(view.sides),
    }


def _sides_of(sides: Sides | None) -> dict[str, Any] | None:
    from callgate.calls.export import side_ring_s

    if sides is None:
        return None
    return {
        name: None
        if side is None
        else {"result": side.outcome.value, "ring_s": side_ring_s(side), "reason": side.reason}
        for name, side in (("agent", sides.agent), ("customer", sides.customer))
    }


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


async def _follow(cases: Services, feed: EnterpriseFeed, call: CallView) -> str:
    """Print the call's transitions until it ends (``place --direct``: nobody else follows it);
    the last state seen."""
    if call.state in TERMINAL:
        return call.state
    if not cases.watching.follows(call.id):
        typer.echo("  (placed earlier by another process, which follows it)")
        return call.state
    state = call.state
    async for transition in feed:
        if transition is None or transition.call_id != call.id:
            continue
        state = str(transition.state)
        _transition(
            transition.at.isoformat(),
            call.id,
            state,
            transition.reason,
            _sides_of(transition.sides),
        )
        if state in TERMINAL:
            break
    return state


async def place_direct(
    secret: str,
    extension: str,
    to: str,
    *,
    ring_timeout: int | None = None,
    idempotency_key: str | None = None,
) -> str:
    """``call place --direct``: place the call in this process, print it and each of its
    transitions until it ends; its last state."""
    from callgate.validation import normalize_phone, validate_extension

    async with direct_services(secret) as (cases, enterprise):
        max_length = cases.settings.code_max_length
        valid = (
            validate_extension(extension, max_length, field="from"),
            normalize_phone(to, field="to"),
        )
        # Subscribed before the call exists: none of its transitions can be missed.
        feed = await cases.watching.feed(enterprise.number, quiet=FOLLOW_QUIET)
        try:
            placement = await cases.placing.place(
                enterprise,
                *valid,
                request_id=uuid.uuid4().hex[:16],
                ring_timeout=ring_timeout,
                idempotency_key=idempotency_key,
            )
            _show(_call(placement.call))
            return await _follow(cases, feed, placement.call)
        finally:
            feed.close()


@call_app.command("place")
def place(
    extension: Annotated[str, typer.Option("--from", help="Extension that rings first.")],
    to: Annotated[str, typer.Option("--to", help="Number dialled once it answers.")],
    ring_timeout: Annotated[int | None, typer.Option(help="Seconds the customer rings.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Makes a retry safe.")] = None,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """Place a call (POST /v1/calls) and print it; with --direct, follow it to its end."""

    async def remote() -> None:
        body: dict[str, Any] = {"from": extension, "to": to}
        if ring_timeout is not None:
            body["ring_timeout"] = ring_timeout
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        async with _client(url, secret_env) as client:
            _show(_answer(await client.post("/v1/calls", json=body, headers=headers)))

    async def here() -> None:
        if url is not None:
            _fail("--url and --direct exclude each other", 2)
        secret = _secret(secret_env)
        await place_direct(
            secret, extension, to, ring_timeout=ring_timeout, idempotency_key=idempotency_key
        )

    _run(here() if direct else remote())


@call_app.command("show")
def show(
    call_id: str,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """A call with its timeline, durations and, once it ended, why each side ended."""

    async def remote() -> dict[str, Any]:
        async with _client(url, secret_env) as client:
            return dict(_answer(await client.get(f"/v1/calls/{call_id}")))

    async def here() -> dict[str, Any]:
        async with _direct(url, secret_env) as (cases, enterprise):
            return _call(await cases.reads.call(enterprise.number, call_id))

    call = _run(here() if direct else remote())
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

    async def remote() -> str | list[dict[str, Any]]:
        params: dict[str, Any] = {"state": state, "extension": extension, "phone": phone}
        params = {k: v for k, v in params.items() if v is not None} | {"limit": limit}
        if csv:
            params["format"] = "csv"
        async with _client(url, secret_env) as client:
            response = await client.get("/v1/calls", params=params)
        if not csv:
            return list(_answer(response)["items"])
        if response.status_code >= 400:
            _answer(response)
        return response.text

    async def here() -> str | list[dict[str, Any]]:
        from callgate.calls.export import csv_text

        async with _direct(url, secret_env) as (cases, enterprise):
            page = await cases.reads.page(
                enterprise.number, state=state, extension=extension, phone=phone, limit=limit
            )
        return csv_text(page.calls) if csv else [_call(call) for call in page.calls]

    found = _run(here() if direct else remote())
    if isinstance(found, str):
        typer.echo(found, nl=False)
        return
    for call in found:
        _show(call)


@call_app.command("hangup")
def hangup(
    call_id: str,
    url: Url = None,
    secret_env: SecretEnv = DEFAULT_SECRET_ENV,
    direct: Direct = False,
) -> None:
    """Hang a live call up; it ends as `canceled`."""

    async def remote() -> dict[str, Any]:
        async with _client(url, secret_env) as client:
            return dict(_answer(await client.post(f"/v1/calls/{call_id}/hangup")))

    async def here() -> dict[str, Any]:
        async with _direct(url, secret_env) as (cases, enterprise):
            await cases.calls.hangup(enterprise, call_id)
            return _call(await cases.reads.call(enterprise.number, call_id))

    _show(_run(here() if direct else remote()))


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
            _client(url, secret_env, stream=True) as client,
            client.stream("GET", "/v1/events") as stream,
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
