"""Two service instances on one PostgreSQL, through real HTTP, counting the originates that
reach the one PBX host: the same call asked of both at once is placed once (the double-click
guard across instances), the live-call cap of an enterprise holds across them, and originates
from one extension on both at once each get their own channel (the lock across instances)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callgate.calls import rate_limits
from callgate.simulator import Scenario
from tests.support.instances import listening, second_instance
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]
LONG = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=60.0)  # stays live


@contextlib.asynccontextmanager
async def instances(
    pg_url: str, sshd: SshdServer, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[Stack, Stack]]:
    async with (
        call_stack(pg_url, sshd, tmp_path, track_interval=0.1, **settings) as first,
        second_instance(first, tmp_path) as second,
    ):
        await listening(pg_url, 2)
        yield first, second


@pytest.fixture
async def two(pg_url: str, sshd: SshdServer, tmp_path: Path) -> AsyncIterator[tuple[Stack, Stack]]:
    async with instances(pg_url, sshd, tmp_path, limit_live_calls_per_enterprise=1) as both:
        yield both


@pytest.fixture
async def uncapped(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> AsyncIterator[tuple[Stack, Stack]]:
    async with instances(pg_url, sshd, tmp_path) as both:
        yield both


async def test_the_same_call_asked_of_two_instances_is_placed_once(
    two: tuple[Stack, Stack],
) -> None:
    first, second = two
    await first.control.set_scenario("151", LONG)
    body = {"from": "151", "to": "+375296254070"}
    answers = await asyncio.gather(
        *(s.service.client.post("/v1/calls", json=body, headers=s.auth()) for s in two)
    )
    assert sorted(a.status_code for a in answers) == [200, 201], [a.text for a in answers]
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1  # both answered with the one call
    duplicate = next(a for a in answers if a.status_code == 200)
    assert duplicate.headers["X-Callgate-Duplicate-Of"] in ids
    assert await first.originates() == 1
    # Asked again of the other instance, a moment later: still that call.
    again = await second.service.client.post("/v1/calls", json=body, headers=second.auth())
    assert again.status_code == 200 and again.json()["id"] in ids
    assert await first.originates() == 1


async def test_the_live_call_cap_holds_across_instances(two: tuple[Stack, Stack]) -> None:
    first, second = two
    for extension in ("151", "152"):
        await first.control.set_scenario(extension, LONG)
    placed = await first.service.client.post(
        "/v1/calls", json={"from": "151", "to": "+375296254070"}, headers=first.auth()
    )
    assert placed.status_code == 201, placed.text
    await asyncio.sleep(rate_limits.RECOUNT * 1.5)  # the other instance counts it now
    refused = await second.service.client.post(
        "/v1/calls", json={"from": "152", "to": "+375296254071"}, headers=second.auth()
    )
    assert refused.status_code == 429, refused.text
    assert "live calls" in refused.json()["detail"]
    assert await first.originates() == 1  # nothing dialled for the refused call
    hung = await first.service.client.post(
        f"/v1/calls/{placed.json()['id']}/hangup", headers=first.auth()
    )
    assert hung.status_code == 200, hung.text
    await first.ended(placed.json()["id"])
    await asyncio.sleep(rate_limits.RECOUNT * 1.5)  # its place is free on both again
    again = await second.service.client.post(
        "/v1/calls", json={"from": "152", "to": "+375296254071"}, headers=second.auth()
    )
    assert again.status_code == 201, again.text


async def test_originates_from_one_extension_on_two_instances_get_their_own_channels(
    uncapped: tuple[Stack, Stack],
) -> None:
    """Each instance's check takes the newest first leg of the extension not yet credited to
    a call: without the lock across instances, two originates at once could take one leg."""
    first, second = uncapped
    await first.control.set_scenario("151", LONG)
    phones = [f"+37529625408{index}" for index in range(6)]
    answers = await asyncio.gather(
        *(
            stack.service.client.post(
                "/v1/calls", json={"from": "151", "to": phone}, headers=stack.auth()
            )
            for stack, phone in zip([first, second] * 3, phones, strict=True)
        )
    )
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    channels = [a.json()["channels"]["agent"] for a in answers]
    assert len(set(channels)) == 6, channels
    assert await first.originates() == 6
