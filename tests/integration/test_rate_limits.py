"""Rate and concurrency limits: the limits module on memory and on the real Redis, and through
real HTTP (429 with Retry-After, and not one originate at the host for a refused call)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from callgate import errors
from callgate.calls.rate_limits import Limits, LiveCalls, RateLimited, storage_for
from callgate.db.enterprise_limits import set_limits
from callgate.settings import Settings
from callgate.simulator import Scenario
from tests.support.database import opened
from tests.support.hygiene import REGISTRY
from tests.support.service import free_port, running_service
from tests.support.sshd import SshdServer
from tests.support.stack import ENTERPRISE, LIMITS_OFF, call_stack

OTHER = "+375296254071"
LONG = Scenario(agent_answer_after=0.3, customer_answer_after=0.3, talk=60.0)  # stays live


def _limits(store: dict[str, Any], **values: Any) -> Limits:
    settings = Settings(_env_file=None, log_file=None, **(LIMITS_OFF | store | values))
    return Limits(settings, LiveCalls(0, 0, followed=lambda: ()), storage_for(settings))


async def test_a_refused_call_uses_up_nothing(limit_store: dict[str, Any]) -> None:
    limits = _limits(limit_store, limit_enterprise_per_minute=3, limit_extension_per_minute=2)
    try:
        await limits.check_call("0367", "150", "+375296254070")
        await limits.check_call("0367", "150", OTHER)
        with pytest.raises(RateLimited) as refused:
            await limits.check_call("0367", "150", "+375296254072")
        assert refused.value.code == "rate_limited"
        assert 1 <= refused.value.retry_after <= 60
        assert "extension" in refused.value.message
        await limits.check_call("0367", "151", OTHER)  # the refused call took no place
        with pytest.raises(RateLimited, match="enterprise"):
            await limits.check_call("0367", "152", OTHER)
        await limits.check_call("0999", "150", OTHER)  # another enterprise's own count
    finally:
        await limits.aclose()


async def test_an_enterprise_s_own_limits_replace_the_defaults(
    limit_store: dict[str, Any],
) -> None:
    limits = _limits(limit_store, limit_extension_per_minute=1)
    try:
        limits.use({"0367": {"extension_per_minute": 2, "live_calls_per_enterprise": 1}})
        await limits.check_call("0367", "150", OTHER)
        await limits.check_call("0367", "150", OTHER)
        with pytest.raises(RateLimited, match="at most 2 per 1 minute"):
            await limits.check_call("0367", "150", OTHER)
        await limits.check_call("0999", "150", OTHER)
        with pytest.raises(RateLimited, match="at most 1 per 1 minute"):
            await limits.check_call("0999", "150", OTHER)
        limits.reserve("a", "0367", "h1")
        with pytest.raises(RateLimited, match="live calls"):
            limits.reserve("b", "0367", "h1")
        limits.reserve("c", "0999", "h1")  # the default: off
    finally:
        await limits.aclose()


async def test_a_number_is_limited_per_enterprise(limit_store: dict[str, Any]) -> None:
    limits = _limits(limit_store, limit_destination_per_10_minutes=1)
    try:
        await limits.check_call("0367", "150", OTHER)
        with pytest.raises(RateLimited, match="number") as refused:
            await limits.check_call("0367", "151", OTHER)
        assert 60 < refused.value.retry_after <= 600
        assert OTHER not in refused.value.message and "4071" not in refused.value.message
        await limits.check_call("0999", "150", OTHER)
    finally:
        await limits.aclose()


async def test_failed_authentications_per_address(limit_store: dict[str, Any]) -> None:
    limits = _limits(limit_store, limit_auth_failures_per_minute=2)
    try:
        for _ in range(2):
            await limits.check_authentication("192.0.2.7")
            await limits.failed_authentication("192.0.2.7")
        with pytest.raises(RateLimited, match="authentications"):
            await limits.check_authentication("192.0.2.7")
        await limits.check_authentication("192.0.2.8")
    finally:
        await limits.aclose()


async def test_instances_share_the_counts_through_redis(limit_store: dict[str, Any]) -> None:
    """Two instances on one Redis share the counts; in memory each has its own."""
    first = _limits(limit_store, limit_extension_per_minute=1)
    second = _limits(limit_store, limit_extension_per_minute=1)
    try:
        await first.check_call("0367", "150", OTHER)
        if "redis_url" in limit_store:
            with pytest.raises(RateLimited):
                await second.check_call("0367", "150", OTHER)
        else:
            await second.check_call("0367", "150", OTHER)
    finally:
        await first.aclose()
        await second.aclose()


async def test_an_unreachable_redis_refuses_the_call() -> None:
    limits = _limits({"redis_url": "redis://127.0.0.1:1/0"}, limit_extension_per_minute=5)
    try:
        with pytest.raises(errors.DatabaseUnavailable, match="rate limit store"):
            await limits.check_call("0367", "150", OTHER)
    finally:
        await limits.aclose()


# -- through real HTTP ---------------------------------------------------------------------------


@pytest.mark.sshd
@pytest.mark.postgres
async def test_legacy_over_the_extension_rate_is_429_and_dials_nothing(
    pg_url: str, sshd: SshdServer, tmp_path: Path, limit_store: dict[str, Any]
) -> None:
    async with call_stack(
        pg_url, sshd, tmp_path, **limit_store, limit_extension_per_minute=2
    ) as stack:
        assert (await stack.call(phone="+375296254070")).status_code == 200
        assert (await stack.call(phone=OTHER)).status_code == 200
        refused = await stack.call(phone="+375296254072")
        assert refused.status_code == 429, refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.json() == {
            "detail": "Rate limit exceeded: too many calls from this extension: "
            "at most 2 per 1 minute"
        }
        assert await stack.originates() == 2
        assert (await stack.call(code="151", phone="+375296254072")).status_code == 200
        assert await stack.originates() == 3


@pytest.mark.sshd
@pytest.mark.postgres
async def test_v1_over_the_number_rate_is_a_429_problem(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    async with call_stack(pg_url, sshd, tmp_path, limit_destination_per_10_minutes=1) as stack:
        client = stack.service.client
        first = await client.post(
            "/v1/calls", json={"from": "150", "to": OTHER}, headers=stack.auth()
        )
        assert first.status_code == 201, first.text
        refused = await client.post(
            "/v1/calls", json={"from": "151", "to": OTHER}, headers=stack.auth()
        )
        assert refused.status_code == 429, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert 60 < int(refused.headers["retry-after"]) <= 600
        body = refused.json()
        assert (body["code"], body["status"]) == ("rate_limited", 429)
        assert "4071" not in refused.text
        assert await stack.originates() == 1


@pytest.mark.sshd
@pytest.mark.postgres
async def test_a_guessing_client_is_refused_even_with_the_right_secret(
    pg_url: str, sshd: SshdServer, tmp_path: Path, limit_store: dict[str, Any]
) -> None:
    """Failed authentications are counted per address and checked before the secret is."""
    async with call_stack(
        pg_url, sshd, tmp_path, **limit_store, limit_auth_failures_per_minute=2
    ) as stack:
        for guess in ("a" * 32, "b" * 32):
            assert (await stack.call(clientId=guess)).status_code == 401
        refused = await stack.call()
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["detail"].startswith("Rate limit exceeded: too many failed")
        v1 = await stack.service.client.get("/v1/calls", headers=stack.auth())
        assert v1.status_code == 429 and v1.json()["code"] == "rate_limited"
        assert "retry-after" in v1.headers
        assert await stack.originates() == 0


@pytest.mark.sshd
@pytest.mark.postgres
async def test_live_calls_per_enterprise_are_capped_until_one_ends(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    async with call_stack(
        pg_url, sshd, tmp_path, limit_live_calls_per_enterprise=1, track_interval=0.1
    ) as stack:
        await stack.control.set_default_scenario(LONG)
        first = await stack.call()
        assert first.status_code == 200, first.text
        refused = await stack.call(code="151", phone=OTHER)
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "5"
        assert "live calls" in refused.json()["detail"]
        assert await stack.originates() == 1
        call_id = first.json()["call_id"]
        hangup = await stack.service.client.post(
            f"/v1/calls/{call_id}/hangup", headers=stack.auth()
        )
        assert hangup.status_code == 200, hangup.text
        assert (await stack.ended(call_id))["state"] == "canceled"
        for _ in range(50):  # the tracker lets the ended call go at its next tick
            again = await stack.call(code="151", phone=OTHER)
            if again.status_code != 429:
                break
            await asyncio.sleep(0.1)
        assert again.status_code == 200, again.text
        assert await stack.originates() == 2


@pytest.mark.sshd
@pytest.mark.postgres
async def test_a_started_instance_counts_the_live_calls_it_resumes(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """The live calls in the database hold their places in a service started after them."""
    async with call_stack(pg_url, sshd, tmp_path, limit_live_calls_per_enterprise=1) as stack:
        await stack.control.set_default_scenario(LONG)
        assert (await stack.call()).status_code == 200
        values: dict[str, Any] = {
            "database_url": pg_url,
            "port": free_port(),
            "log_file": tmp_path / "later.log",
        }
        values |= LIMITS_OFF | {"limit_live_calls_per_enterprise": 1}
        later = Settings(_env_file=None, **values)
        REGISTRY.record_stack(stack.secret, later.log_file)
        async with running_service(later) as restarted:
            query = {"code": "151", "phone": OTHER, "clientId": stack.secret}
            refused = await restarted.client.get("/api/makecallexternal", params=query)
        assert refused.status_code == 429, refused.text
        assert await stack.originates() == 1


@pytest.mark.sshd
@pytest.mark.postgres
async def test_an_enterprise_s_own_limit_applies_to_its_calls(
    pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """`callgate enterprise limits` stores it; the running service reads it within the
    refresh interval, and the next call over it is refused."""
    async with call_stack(pg_url, sshd, tmp_path, limit_refresh_interval=0.1) as stack:
        async with opened(pg_url) as database:
            assert await set_limits(database, ENTERPRISE["number"], {"extension_per_minute": 1})
        await asyncio.sleep(0.5)
        assert (await stack.call()).status_code == 200
        refused = await stack.call(phone=OTHER)
        assert refused.status_code == 429, refused.text
        assert "at most 1 per 1 minute" in refused.json()["detail"]
        assert (await stack.call(code="151", phone=OTHER)).status_code == 200
        assert await stack.originates() == 2
