"""The destination policy through real HTTP: a refused destination is a 403 (legacy and v1)
that dials nothing at the host, and the log shows the number masked only."""

from __future__ import annotations

import pytest

from callgate.db.policies import DEFAULT, set_policy
from tests.support.database import opened
from tests.support.hygiene import record
from tests.support.stack import Stack

pytestmark = [pytest.mark.sshd, pytest.mark.postgres]

REFUSED = [
    ("+19005551234", "+190******34 is a premium rate number"),
    ("+881612345678", "+881*******78 is in the denied range +881"),
    ("00882123456789", "0088********89 is in the denied range +882"),
    ("+34901123456", "+349******56 is a shared cost number"),
    ("112", "1** is an emergency number"),
    ("911", "9** is an emergency number"),
]


async def test_legacy_refuses_with_403_and_dials_nothing(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Premium, satellite (also in the national 00 form), shared cost and emergency numbers:
    403 with the reason, the number masked; no command reaches the host, and the log keeps
    the number masked."""
    for number, why in REFUSED:
        record("phone", number)
        response = await stack.call(phone=number)
        assert response.status_code == 403, response.text
        assert response.json() == {"detail": f"Destination not allowed: {why}"}
        assert number not in response.text or len(number) <= 3
    assert await stack.host_commands() == 0
    text = capsys.readouterr().out  # the service's log lines
    assert "call refused" in text and "+190******34" in text
    assert "+19005551234" not in text and "00882123456789" not in text
    allowed = await stack.call()
    assert allowed.status_code == 200, allowed.text
    assert await stack.originates() == 1


async def test_v1_refuses_with_a_problem_and_dials_nothing(stack: Stack) -> None:
    """v1: 403 problem+json with the stable code, with and without an Idempotency-Key."""
    client = stack.service.client
    for headers in ({}, {"Idempotency-Key": "crm-1"}):
        response = await client.post(
            "/v1/calls",
            json={"from": "150", "to": "+870773111111"},
            headers=stack.auth() | headers,
        )
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        problem = response.json()
        assert problem["code"] == "destination_not_allowed"
        assert problem["detail"] == "+870*******11 is in the denied range +870"
    listed = await client.get("/v1/calls", headers=stack.auth())
    assert listed.json()["items"] == []  # nothing recorded either
    assert await stack.host_commands() == 0


async def test_a_changed_policy_applies_to_the_next_call(stack: Stack) -> None:
    """The enterprise's own extension ranges and allowed regions, and the global default, as
    `callgate enterprise policy` stores them, apply without a restart."""
    async with opened(stack.db_url) as database:
        await set_policy(database, "0367", {"extensions": "100-149", "allowed_regions": "BY"})
    other = await stack.call(code="150")
    assert other.status_code == 403
    assert other.json() == {
        "detail": "Destination not allowed: extension 150 is not one of the enterprise's extensions"
    }
    abroad = await stack.call(code="120", phone="+441234567890")
    assert abroad.json()["detail"] == (
        "Destination not allowed: +441*******90 is outside the allowed regions and prefixes"
    )
    assert await stack.host_commands() == 0
    async with opened(stack.db_url) as database:
        await set_policy(database, DEFAULT, {"max_length": 10})
    longer = await stack.call(code="120")
    assert longer.status_code == 403
    assert "longer than 10 digits" in longer.json()["detail"]
    async with opened(stack.db_url) as database:
        await set_policy(database, "0367", {"max_length": 15})  # its own value wins
    placed = await stack.call(code="120")
    assert placed.status_code == 200, placed.text
    assert await stack.originates() == 1
