"""A delivery checks where it connects, not only the URL when the endpoint was added: an
endpoint whose host has come to point into the service's own network since (here: added while
private targets were allowed, delivered after they no longer are) is refused at the
connection, nothing reaches it, and the refusal is recorded as the delivery's failure."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select

from callgate.calls import dispatcher as sending
from callgate.calls import webhooks
from callgate.db import webhooks as store
from callgate.db.enterprises import add_enterprise
from callgate.db.migrate import upgrade
from callgate.db.models import CALL_EVENTS, CALLS, WEBHOOK_DELIVERIES, utcnow
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.receiver import receiver


async def test_a_target_turned_private_is_refused_at_delivery(sqlite_url: str) -> None:
    await asyncio.to_thread(upgrade, sqlite_url)
    allowed = Settings(database_url=sqlite_url, webhook_allow_private=True)
    settings = allowed.model_copy(
        update={"webhook_allow_private": False, "webhook_poll_interval": 0.05}
    )
    with receiver() as inbox:
        async with opened(sqlite_url) as database:
            await add_enterprise(database, "0367", "june", "127.0.0.1", "s-0367-xyzw")
            await webhooks.add_webhook(database, allowed, "0367", inbox.url, None)
            now = utcnow()
            await database.rowcount(
                CALLS.insert().values(
                    id="c1", enterprise_number="0367", extension="150",
                    phone="+375296254070", host="127.0.0.1", created_at=now, state="completed",
                )
            )  # fmt: skip
            await database.rowcount(
                CALL_EVENTS.insert().values(
                    [{"call_id": "c1", "state": s, "at": now + timedelta(seconds=i)}
                     for i, s in enumerate(("initiated", "completed"))]
                )
            )  # fmt: skip
            dispatcher = sending.Dispatcher(database, settings)
            dispatcher.start()
            try:
                for _ in range(200):
                    (endpoint,) = await store.list_endpoints(database, "0367")
                    if endpoint.failures:
                        break
                    await asyncio.sleep(0.05)
            finally:
                await dispatcher.aclose()
            errors = await database.rows(select(WEBHOOK_DELIVERIES.c.last_error))
    assert inbox.requests == []
    assert endpoint.failures == 1 and endpoint.retry_at is not None  # retried later, as any
    assert any(
        (row["last_error"] or "").startswith("target refused: resolves to a private")
        for row in errors
    ), errors
