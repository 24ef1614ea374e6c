"""`callgate call …` and `callgate calls watch` against the running service, and `--direct`."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from asyncio.subprocess import PIPE, STDOUT
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from callgate.cli import app
from callgate.simulator.timeline import Scenario
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
CALL_ID = re.compile(r"^([0-9a-f-]{36})  ", re.M)
WATCHED = re.compile(r"^\S+T\S+  ([0-9a-f-]{36})  [a-z_]+")
SIDES = re.compile(r"agent answered \(rang [0-9.]+ s\); customer answered \(rang [0-9.]+ s\)")


@pytest.fixture
async def api(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[Stack]:
    async with call_stack(pg_url, sshd, tmp_path, track_interval=0.1) as stack:
        yield stack


async def _cli(stack: Stack, *args: str) -> tuple[int, str]:
    """Run the CLI in a thread (it is synchronous; the service runs in this loop)."""
    runner = CliRunner()
    env = {"CALLGATE_CLIENT_SECRET": stack.secret}
    result = await asyncio.to_thread(
        runner.invoke, app, [*args, "--url", stack.service.base_url], env=env
    )
    return result.exit_code, result.output


async def _direct(stack: Stack, tmp_path: Path, *args: str) -> tuple[int, str]:
    """`callgate … --direct` in its own process, as an operator runs it: the service's code in
    the command, on the stack's database and host, configured by the environment."""
    env = os.environ | {
        "CALLGATE_CLIENT_SECRET": stack.secret,
        "CALLGATE_DATABASE_URL": stack.db_url,
        "CALLGATE_LOG_FILE": str(tmp_path / "direct.log"),
        "CALLGATE_TRACK_INTERVAL": "0.1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "callgate", *args, "--direct",
        env=env, cwd=tmp_path, stdout=PIPE, stderr=STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_place_show_list_hangup(api: Stack) -> None:
    """A call placed from the shell can be shown, listed and hung up."""
    await api.control.set_scenario("150", Scenario(agent_answer_after=None))
    code, out = await _cli(api, "call", "place", "--from", "150", "--to", "+375296254070")
    assert code == 0, out
    match = CALL_ID.search(out)
    assert match is not None
    call_id = match.group(1)
    code, out = await _cli(api, "call", "show", call_id)
    assert code == 0 and call_id in out
    code, out = await _cli(api, "call", "list", "--extension", "150")
    assert code == 0 and call_id in out
    code, out = await _cli(api, "call", "hangup", call_id)
    assert code == 0, out
    assert await api.originates() == 1
    assert api.secret not in out


async def test_bad_input_and_missing_secret(api: Stack) -> None:
    """Errors are one line with the API's code; no secret means exit 2."""
    code, out = await _cli(api, "call", "place", "--from", "1;5", "--to", "+375296254070")
    assert code == 1
    assert "422 invalid_input" in out
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke, app, ["call", "list", "--url", api.service.base_url], env={}
    )
    assert result.exit_code == 2
    assert await api.host_commands() == 0


async def test_watch_prints_transitions(api: Stack) -> None:
    """`calls watch` prints the states of a call as the tracker sees them."""
    await api.control.set_scenario(
        "151", Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=0.3)
    )
    watcher = asyncio.create_task(_cli(api, "calls", "watch", "--count", "3"))
    await asyncio.sleep(0.5)  # let the stream connect
    # Placed over HTTP, not with a second CliRunner: a runner swaps the process's stdout while
    # it runs, so lines the watch printed meanwhile would land in the other runner's output.
    async with httpx.AsyncClient(base_url=api.service.base_url) as client:
        placed = await client.post(
            "/v1/calls",
            json={"from": "151", "to": "+375296254070"},
            headers={"Authorization": f"Bearer {api.secret}"},
        )
    assert placed.status_code == 201, placed.text
    code, watched = await asyncio.wait_for(watcher, 20)
    assert code == 0, watched
    # The service logs to the same stdout in this process: keep the watch's own lines.
    lines = [line for line in watched.splitlines() if WATCHED.match(line)]
    assert len(lines) == 3, watched
    assert {WATCHED.match(line).group(1) for line in lines} == {placed.json()["id"]}  # type: ignore[union-attr]


async def test_direct_place_follows_its_call_then_show_and_list(api: Stack, tmp_path: Path) -> None:
    """Without the service, `place --direct` dials once and prints each transition until the
    call ends; `show` and `list` read the same history directly."""
    await api.control.set_scenario(
        "152", Scenario(agent_answer_after=0.2, customer_answer_after=0.2, talk=0.3)
    )
    code, out = await _direct(
        api, tmp_path, "call", "place", "--from", "152", "--to", "+375296254070"
    )
    assert code == 0, out
    match = CALL_ID.search(out)
    assert match is not None
    call_id = match.group(1)
    states = [m.group(1) for m in re.finditer(rf"^\S+  {call_id}  ([a-z_]+)", out, re.M)]
    assert states[-1] == "completed", out
    assert "connected" in states, out
    ended = re.search(rf"^\S+  {call_id}  completed .*\[(.*)\]$", out, re.M)
    assert ended is not None, out  # the end's line says why each side ended
    assert SIDES.fullmatch(ended.group(1)) is not None, ended.group(1)
    assert await api.originates() == 1
    code, out = await _direct(api, tmp_path, "call", "show", call_id)
    assert code == 0, out
    assert f"{call_id}  completed" in out and "talk_s" in out
    shown = re.search(r"^  sides: (.*)$", out, re.M)
    assert shown is not None and shown.group(1) == ended.group(1), out
    code, out = await _direct(api, tmp_path, "call", "list", "--extension", "152")
    assert code == 0 and call_id in out
    log_text = (tmp_path / "direct.log").read_text()  # the command's own log: it dialled
    assert "ssh originate" in log_text and api.secret not in log_text


async def test_direct_hangup_of_a_call_the_service_follows(api: Stack, tmp_path: Path) -> None:
    """`hangup --direct` ends a call another process follows: the channel goes, the row says
    `canceled` at once, and the follower's later view (channels gone) does not overwrite it."""
    await api.control.set_scenario(
        "153", Scenario(agent_answer_after=0.1, customer_answer_after=None)
    )
    code, out = await _cli(api, "call", "place", "--from", "153", "--to", "+375296254070")
    assert code == 0, out
    match = CALL_ID.search(out)
    assert match is not None
    call_id = match.group(1)
    code, out = await _direct(api, tmp_path, "call", "hangup", call_id)
    assert code == 0, out
    assert f"{call_id}  canceled" in out
    assert await api.control.calls() == []
    await asyncio.sleep(0.5)  # several of the service's ticks: it sees the channels gone
    code, out = await _cli(api, "call", "show", call_id)
    assert code == 0 and f"{call_id}  canceled" in out, out
    assert "hung up through the API" in out
    # Stored by the process that hung up, from the row's times: the agent had answered.
    shown = re.search(
        r"^  sides: agent answered \(rang ([0-9.]+) s\); customer canceled", out, re.M
    )
    assert shown is not None, out
    assert 0.05 <= float(shown.group(1)) <= 1.0
    code, out = await _direct(api, tmp_path, "call", "hangup", call_id)
    assert code == 1 and "call_not_live: the call is canceled" in out


async def test_direct_and_url_exclude_each_other(api: Stack) -> None:
    code, out = await _cli(api, "call", "list", "--direct")
    assert code == 2 and "--url and --direct" in out
    assert await api.host_commands() == 0
