"""The status page (`/admin`) in a real headless Chromium (Debian's, driven by Playwright): it
loads without console errors, shows a call placed through the API within 2 s and follows it
through its states, turns a blackholed host red, refuses a wrong token; and through plain
HTTP: off without a token, Bearer access, the vendored script served as pinned.

The run writes docs/admin-page.png, the picture the README shows.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, ViewportSize, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from callgate.api.admin import HERE as ADMIN_DIR
from callgate.api.admin import HTMX
from callgate.db.enterprises import add_enterprise
from callgate.db.hosts import set_host
from callgate.db.migrate import upgrade
from callgate.domain.states import LIVE
from callgate.settings import Settings
from callgate.simulator import Scenario
from tests.support.database import opened
from tests.support.hygiene import REGISTRY, STACK_PHONE
from tests.support.netfaults import Blackhole
from tests.support.service import free_port, running_service
from tests.support.services import missing
from tests.support.sshd import SshdServer
from tests.support.stack import Stack, call_stack, sshd_host_row

CHROMIUM = Path(os.environ.get("CALLGATE_CHROMIUM", "/usr/bin/chromium"))
HAVE_CHROMIUM = CHROMIUM.exists()
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "admin-page.png"
VIEWPORT = ViewportSize(width=1200, height=800)
RED = "rgb(198, 40, 40)"  # --red in static/admin.css
# Each phase lasts longer than the page's 1 s refresh, so that each can be seen on it.
PHASES = Scenario(agent_answer_after=1.5, customer_answer_after=1.5, talk=3.0)
LONG = Scenario(agent_answer_after=0.5, customer_answer_after=0.5, talk=60.0)
SECOND_HOST = "127.0.0.2"  # a second loopback address: the enterprise whose host is blackholed


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless (Playwright's own browser download is not used)."""
    if not HAVE_CHROMIUM:
        missing("chromium", f"{CHROMIUM} not found (Debian package: chromium)")
    async with async_playwright() as playwright:
        # As root (CI containers) Chromium's sandbox cannot start.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=args
        )
        try:
            yield launched
        finally:
            await launched.close()


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on(
            "console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None
        )
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)


async def sign_in(page: Page, base_url: str, token: str) -> None:
    await page.goto(f"{base_url}/admin")
    assert page.url.endswith("/admin/login")  # not signed in: the form
    await page.fill("#token", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base_url}/admin")


def admin_token(stack: Stack) -> str:
    token = stack.service.settings.admin_token
    assert token is not None
    REGISTRY.record("secret", token.get_secret_value())  # never in a log (tests/support/hygiene)
    return token.get_secret_value()


async def states_seen(page: Page, call_id: str, within: float) -> list[str]:
    """The states the page shows for the call, in order, until its row leaves the live table."""
    seen: list[str] = []
    deadline = time.monotonic() + within
    row = page.locator(f'#live-calls tr[data-call="{call_id}"]')
    while time.monotonic() < deadline:
        if await row.count() == 0:
            return seen
        try:  # the row may leave the table between the count and this read
            state = await row.get_attribute("data-state", timeout=500)
        except PlaywrightTimeout:
            continue
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        await asyncio.sleep(0.1)
    pytest.fail(f"the call stayed live on the page for {within} s (seen: {seen})")


@pytest.mark.sshd
@pytest.mark.postgres
async def test_live_calls_and_a_failing_host(
    browser: Browser, pg_url: str, sshd: SshdServer, tmp_path: Path
) -> None:
    """Signed in through the form: a call placed through the API is on the page within 2 s and
    moves through its states; a host that never answers turns red; no console error."""
    hole = await Blackhole.start(SECOND_HOST)
    console_host = {"transport": "console"}
    try:
        async with call_stack(
            pg_url, sshd, tmp_path, host=console_host, ssh_connect_timeout=2.0
        ) as stack:
            token = admin_token(stack)
            async with opened(pg_url) as database:
                second = secrets.token_hex(16)
                REGISTRY.record("secret", second)
                await add_enterprise(
                    database, number="0368", name="may", ip=SECOND_HOST, secret=second
                )
                await set_host(database, SECOND_HOST, sshd_host_row(sshd, ssh_port=hole.port))
            context = await browser.new_context(viewport=VIEWPORT)
            page = await context.new_page()
            console = Console(page)
            base = stack.service.base_url
            await sign_in(page, base, token)

            cookies = await context.cookies()
            assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
                ("callgate_admin", True, "Strict")
            ]
            assert token not in cookies[0]["value"]
            # Both hosts are listed before any call: configuration, not traffic, names them.
            hosts = page.locator("article.host")
            assert await hosts.count() == 2
            assert await page.get_attribute("#verdict", "data-verdict") == "ok"

            # A call through the API: on the page within 2 s, then through its states.
            await stack.control.set_scenario("150", PHASES)
            answer = await stack.service.client.post(
                "/v1/calls", headers=stack.auth(), json={"from": "150", "to": STACK_PHONE}
            )
            assert answer.status_code == 201, answer.text
            placed = time.monotonic()
            call_id = answer.json()["id"]
            row = page.locator(f'#live-calls tr[data-call="{call_id}"]')
            await row.wait_for(timeout=2000)
            assert time.monotonic() - placed < 2.0
            assert STACK_PHONE not in await row.inner_text()  # masked
            seen = await states_seen(page, call_id, within=20)
            order = [state.value for state in LIVE]
            assert seen == sorted(seen, key=order.index), seen  # forward only
            assert {"ringing_agent", "ringing_customer", "connected"} <= set(seen), seen
            assert (await stack.ended(call_id))["state"] == "completed"

            # A call that stays connected, for the picture; then the blackholed host's call.
            await stack.control.set_scenario("151", LONG)
            long_call = await stack.service.client.post(
                "/v1/calls", headers=stack.auth(), json={"from": "151", "to": STACK_PHONE}
            )
            assert long_call.status_code == 201, long_call.text
            failed = await stack.service.client.post(
                "/v1/calls",
                headers={"Authorization": f"Bearer {second}"},
                json={"from": "160", "to": "+375291112233"},
            )
            assert failed.status_code == 504, failed.text  # the connect timed out
            assert hole.accepted >= 1
            card = page.locator(f'article.host[data-host="{SECOND_HOST}:{hole.port}"]')
            await page.wait_for_selector(
                f'article.host[data-host="{SECOND_HOST}:{hole.port}"][data-health="failing"]',
                timeout=2500,
            )
            badge = card.locator(".badge")
            assert await badge.inner_text() == "FAILING"
            colour = "el => getComputedStyle(el).backgroundColor"
            assert await badge.evaluate(colour) == RED
            assert await page.get_attribute("#verdict", "data-verdict") == "failing"
            assert "timed out" in await card.locator(".error").inner_text()
            good = page.locator('article.host[data-health="ok"]')
            assert await good.count() == 1
            failure = page.locator("#failures tbody tr", has_text=f"{SECOND_HOST}:{hole.port}")
            await failure.wait_for(timeout=2000)
            assert "timed out" in await failure.inner_text()
            await page.locator(
                f'#live-calls tr[data-call="{long_call.json()["id"]}"][data-state="connected"]'
            ).wait_for(timeout=5000)

            SCREENSHOT.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(SCREENSHOT))
            text = await page.content()
            for clear in (token, stack.secret, second, STACK_PHONE, "+375291112233"):
                assert clear not in text
            assert console.errors == []
            await context.close()
    finally:
        await hole.close()


async def plain_service(tmp_path: Path, **values: Any) -> Settings:
    url = f"sqlite+aiosqlite:///{tmp_path / 'callgate.db'}"
    await asyncio.to_thread(upgrade, url)
    return Settings(
        database_url=url, port=free_port(), log_file=tmp_path / "callgate.log", **values
    )


async def test_a_wrong_token_is_refused(browser: Browser, tmp_path: Path) -> None:
    """The form with a wrong token: 401, a page saying so, no cookie, the token not echoed;
    a wrong Bearer is refused as well, and the live part without a login too."""
    token, wrong = secrets.token_hex(32), "wrong-" + secrets.token_hex(8)
    REGISTRY.record("secret", token)
    config = await plain_service(tmp_path, admin_token=token)
    REGISTRY.record_log_file(config.log_file)
    async with running_service(config) as service:
        context = await browser.new_context(viewport=VIEWPORT)
        page = await context.new_page()
        console = Console(page)
        await page.goto(f"{service.base_url}/admin/login")
        await page.fill("#token", wrong)
        async with page.expect_response(lambda r: r.request.method == "POST") as posted:
            await page.click("button[type=submit]")
        assert (await posted.value).status == 401
        assert await page.locator("#refused").inner_text() == "That token was refused."
        assert wrong not in await page.content()
        assert await context.cookies() == []
        assert page.url.endswith("/admin/login")
        # The browser's own 401 is the only console line: the page itself raised nothing.
        assert all("401" in line for line in console.errors), console.errors
        await context.close()

        client = service.client
        bearer = await client.get("/admin", headers={"Authorization": f"Bearer {wrong}"})
        assert bearer.status_code == 401
        assert wrong not in bearer.text
        forged = await client.get("/admin", headers={"Cookie": "callgate_admin=9999999999.00"})
        assert forged.status_code == 303
        live = await client.get("/admin/fragment")
        assert (live.status_code, live.headers["hx-redirect"]) == (401, "/admin/login")
        ok = await client.get("/admin", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200
        assert "script-src 'self'" in ok.headers["content-security-policy"]
        assert ok.headers["cache-control"] == "no-store"


async def test_refused_tokens_are_limited_per_address(tmp_path: Path) -> None:
    """Wrong admin tokens count against the address, as an enterprise's wrong secrets do:
    past `CALLGATE_LIMIT_AUTH_FAILURES_PER_MINUTE`, 429 with Retry-After before the token is
    looked at (the right one too), by the form and by Bearer alike; no cookie is set."""
    token = secrets.token_hex(16)
    REGISTRY.record("secret", token)
    config = await plain_service(tmp_path, admin_token=token, limit_auth_failures_per_minute=3)
    async with running_service(config) as service:
        client = service.client
        refused = [
            await client.post("/admin/login", content=f"token=wrong{index}", headers=FORM)
            for index in range(2)
        ]
        refused.append(await client.get("/admin", headers={"Authorization": "Bearer wrong"}))
        assert [r.status_code for r in refused] == [401, 401, 401]
        right = await client.post("/admin/login", content=f"token={token}", headers=FORM)
        bearer = await client.get("/admin", headers={"Authorization": "Bearer wrong"})
    assert right.status_code == 429
    assert 0 < int(right.headers["retry-after"]) <= 60
    assert "Too many refused tokens from this address" in right.text
    assert "set-cookie" not in right.headers
    assert bearer.status_code == 429


async def test_off_without_an_admin_token(tmp_path: Path) -> None:
    """No CALLGATE_ADMIN_TOKEN: the page does not exist (404, saying why), whatever is sent."""
    config = await plain_service(tmp_path)
    async with running_service(config) as service:
        client = service.client
        for response in (
            await client.get("/admin"),
            await client.get("/admin", headers={"Authorization": "Bearer x"}),
            await client.get("/admin/fragment"),
            await client.get("/admin/login"),
            await client.post("/admin/login", content=b"token=", headers=FORM),
        ):
            assert response.status_code == 404
            assert "CALLGATE_ADMIN_TOKEN" in response.text


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


async def test_the_vendored_script_is_served_as_pinned(tmp_path: Path) -> None:
    """htmx comes from the service itself, byte for byte the file VENDORED records."""
    config = await plain_service(tmp_path, admin_token=secrets.token_hex(16))
    async with running_service(config) as service:
        response = await service.client.get(f"/admin/static/{HTMX}")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    recorded = {
        line.split()[3]: line.split()[4]
        for line in (ADMIN_DIR / "static" / "VENDORED").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert hashlib.sha256(response.content).hexdigest() == recorded[HTMX]


async def test_bearer_and_cookie_reach_the_live_part(tmp_path: Path) -> None:
    """A script may use `Authorization: Bearer`; the form's cookie opens the page and its live
    part, and is not the token."""
    token = secrets.token_hex(16)
    REGISTRY.record("secret", token)
    config = await plain_service(tmp_path, admin_token=token)
    async with running_service(config) as service:
        bearer = {"Authorization": f"Bearer {token}"}
        assert (await service.client.get("/admin/fragment", headers=bearer)).status_code == 200
        async with httpx.AsyncClient(base_url=service.base_url) as browserless:
            login = await browserless.post("/admin/login", content=f"token={token}", headers=FORM)
            assert (login.status_code, login.headers["location"]) == (303, "/admin")
            cookie = login.headers["set-cookie"]
            assert token not in cookie
            for attribute in ("HttpOnly", "SameSite=strict", "Path=/admin"):
                assert attribute.lower() in cookie.lower()
            assert (await browserless.get("/admin/fragment")).status_code == 200


async def test_the_page_says_when_it_stops_updating(browser: Browser, tmp_path: Path) -> None:
    """When the service stops answering, the page says so instead of showing an old picture
    as the current one."""
    token = secrets.token_hex(16)
    REGISTRY.record("secret", token)
    config = await plain_service(tmp_path, admin_token=token)
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    async with running_service(config) as service:
        await sign_in(page, service.base_url, token)
        assert await page.locator("#stale").is_hidden()
    await page.locator("#stale").wait_for(state="visible", timeout=3000)
    assert "stale" in (await page.get_attribute("body", "class") or "")
    await context.close()
