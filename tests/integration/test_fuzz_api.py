"""Fuzzing through real HTTP: whatever a client sends, a non-2xx answer dialled nothing and a
2xx answer dialled exactly once, with an ASCII-only command (counted at the simulator).

(a) Hypothesis drives the legacy endpoint and POST /v1/calls with arbitrary `code`/`phone`
    strings, through both PBX transports. (b) Schemathesis drives every operation of the
    service's own OpenAPI schema, positive and negative cases, against a running service.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
)

from callgate.errors import InvalidInput
from callgate.validation import normalize_phone, validate_code
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]

ORIGINATE = re.compile(
    r"channel originate Local/(?P<code>[0-9]{2,6})@inoffice application Dial "
    r"Local/(?P<phone>\+?[0-9]{3,15})@inoffice",
    re.ASCII,
)
FUZZ = settings(
    max_examples=40,
    deadline=None,  # a real call takes tens of milliseconds, a console's first one longer
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# Mostly near the allow-list's edge (valid values with one awkward character), some valid,
# some arbitrary Unicode: each kind must end in exactly one of the two outcomes.
_AWKWARD = st.sampled_from(["\n", "\x00", ";", " ", "+", "\u0661", "\uff11", "'", ",", "é"])


def _with_flaw(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    def insert(parts: tuple[str, str, int]) -> str:
        value, char, at = parts
        return value[:at] + char + value[at:]

    return st.tuples(valid, _AWKWARD, st.integers(0, 16)).map(insert)


_CODES = st.from_regex(r"[0-9]{2,6}", fullmatch=True)
_PHONES = st.from_regex(r"\+[1-9][0-9]{6,14}|[0-9]{3,15}", fullmatch=True)
codes = st.one_of(_CODES, _with_flaw(_CODES), st.text(max_size=12))
phones = st.one_of(_PHONES, _with_flaw(_PHONES), st.text(max_size=20))


@pytest.fixture(params=["rx", "console"])
async def nodup(
    request: pytest.FixtureRequest, pg_url: str, sshd: SshdServer, tmp_path: Path
) -> AsyncIterator[Stack]:
    """The stack without the double-click guard: each accepted request must dial once."""
    host = {"transport": request.param}
    async with call_stack(pg_url, sshd, tmp_path, host=host, duplicate_window=0) as stack:
        yield stack


async def _new_originates(stack: Stack, seen: int) -> list[str]:
    commands = [c.command for c in await stack.control.commands()]
    return [c for c in commands[seen:] if c.startswith("channel originate")]


def _expected(code: str, phone: str, code_field: str, phone_field: str) -> tuple[str, str] | None:
    """The values the service must dial, or None if it must refuse with a 422."""
    try:
        return validate_code(code, field=code_field), normalize_phone(phone, field=phone_field)
    except InvalidInput:
        return None


async def _check(stack: Stack, send: Any, code: str, phone: str, fields: tuple[str, str]) -> Any:
    seen = await stack.host_commands()
    response = await send()
    dialled = await _new_originates(stack, seen)
    expected = _expected(code, phone, *fields)
    if response.status_code == 422:
        assert dialled == []
        assert expected is None, "a valid request was refused"
        return response
    assert response.is_success, response.text
    assert expected is not None, "an invalid request was accepted"
    assert len(dialled) == 1
    command = ORIGINATE.fullmatch(dialled[0])
    assert dialled[0].isascii() and command is not None
    assert (command["code"], command["phone"]) == expected
    return response


@FUZZ
@given(code=codes, phone=phones)
async def test_legacy_fuzz_refuses_or_dials_once(nodup: Stack, code: str, phone: str) -> None:
    """Legacy: arbitrary code/phone give 422 (naming one of them) and no originate, or 200
    and exactly one ASCII originate of the normalised values."""
    response = await _check(
        nodup, lambda: nodup.call(code=code, phone=phone), code, phone, ("code", "phone")
    )
    if response.status_code == 422:
        assert response.json()["detail"][0]["loc"][1] in ("code", "phone")


@FUZZ
@given(code=codes, phone=phones | st.text(st.characters(categories=["Cs"]), min_size=1))
async def test_v1_fuzz_refuses_or_dials_once(nodup: Stack, code: str, phone: str) -> None:
    """POST /v1/calls: arbitrary from/to (lone surrogates too, JSON carries them) give a 422
    problem naming the field and no originate, or 201 and exactly one ASCII originate."""
    headers = {"Authorization": f"Bearer {nodup.secret}"}
    body = {"from": code, "to": phone}
    client = nodup.service.client

    async def send() -> Any:
        return await client.post("/v1/calls", json=body, headers=headers)

    response = await _check(nodup, send, code, phone, ("from", "to"))
    if response.status_code == 422:
        assert response.json()["field"] in ("from", "to")
    else:
        assert response.status_code == 201


# -- (b) schemathesis against the running service's own schema ---------------------------------

BUDGET = 25  # examples per operation and phase: the whole test stays well under 90 s


_T = TypeVar("_T")
DIALLING = {("POST", "/v1/calls"), ("GET", "/api/makecallexternal")}


@dataclass
class LiveStack:
    """A stack running on its own event loop in a worker thread, and the dialling ledger."""

    stack: Stack
    loop: asyncio.AbstractEventLoop
    expected: int = 0  # originates that the 2xx answers so far account for
    answers: dict[int, int] = field(default_factory=dict)  # status -> count

    @property
    def base_url(self) -> str:
        return self.stack.service.base_url

    def run(self, work: Coroutine[Any, Any, _T]) -> _T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=30)

    def originates(self) -> int:
        return self.run(self.stack.originates())

    def account(self, method: str, path: str, status: int, replayed: bool, n: int) -> None:
        """Check one answer against the originates it caused, and keep the total."""
        self.answers[status] = self.answers.get(status, 0) + 1
        if not 200 <= status < 300 or (method, path) not in DIALLING:
            assert n == 0, f"{method} {path} answered {status} after {n} originate(s)"
            return
        # A replayed Idempotency-Key answers the first request's call: that one dialled.
        assert n == (0 if replayed else 1), f"{method} {path} answered {status}, {n} originates"
        self.expected += 0 if replayed else 1


@contextlib.contextmanager
def _serve_in_thread(pg_url: str, sshd: SshdServer, tmp_path: Path) -> Iterator[LiveStack]:
    ready: Future[tuple[LiveStack, asyncio.Event]] = Future()

    async def serve() -> None:
        stop = asyncio.Event()
        try:
            async with call_stack(pg_url, sshd, tmp_path, duplicate_window=0) as stack:
                ready.set_result((LiveStack(stack, asyncio.get_running_loop()), stop))
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    thread = threading.Thread(target=asyncio.run, args=(serve(),), name="live-stack")
    thread.start()
    live, stop = ready.result(timeout=60)
    try:
        yield live
    finally:
        live.loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=60)


@pytest.fixture
def live(pg_url: str, sshd: SshdServer, tmp_path: Path) -> Iterator[LiveStack]:
    """The stack served from a worker thread (schemathesis' client blocks); at the end, the
    host must have received exactly the originates the 2xx answers account for."""
    with _serve_in_thread(pg_url, sshd, tmp_path) as running:
        yield running
        time.sleep(0.5)  # an originate sent after its request was answered would land now
        assert running.originates() == running.expected, running.answers


@pytest.fixture
def api_schema(live: LiveStack) -> schemathesis.BaseSchema:
    """The schema the service serves, with the stack's secret and a bounded budget."""
    config = schemathesis.Config.from_dict(
        {
            "headers": {"Authorization": f"Bearer {live.stack.secret}"},
            "generation": {"mode": "all", "max-examples": BUDGET},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{live.base_url}/openapi.json", config=config)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
def test_openapi_fuzz(case: schemathesis.Case[Any], live: LiveStack) -> None:
    """Every operation, positive and negative: no 5xx, answers conform to the schema, a 4xx
    dialled nothing, a dialling 2xx dialled once (the fixture re-checks the total at the end)."""
    seen = live.originates()
    response = case.call(headers={"Authorization": f"Bearer {live.stack.secret}"})
    dialled = live.originates() - seen
    replayed = response.headers.get("idempotent-replayed") == ["true"]
    live.account(case.method, case.path, response.status_code, replayed, dialled)
    case.validate_response(
        response,
        checks=[not_a_server_error, response_schema_conformance, content_type_conformance],
    )
