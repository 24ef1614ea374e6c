"""The outbox at volume, on SQLite and PostgreSQL, with a real receiver: a backlog larger than
one poll's batch, of two enterprises' calls, becomes exactly one delivery per own event, in
the log's order, the endpoint's cursor moved with them; delivered rows are kept, then pruned."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.sql.expression import Executable

from callgate.calls import dispatcher as sending
from callgate.calls import webhooks
from callgate.db import postgres
from callgate.db import webhooks as store
from callgate.db.enterprises import add_enterprise
from callgate.db.migrate import upgrade
from callgate.db.models import CALL_EVENTS, CALLS, WEBHOOK_DELIVERIES, utcnow
from callgate.settings import Settings
from tests.support.database import opened
from tests.support.receiver import receiver

CALLS_EACH = 300  # x 4 events x 2 enterprises: more than one batch (`calls.dispatcher.BATCH`)
STATES = ("initiated", "ringing_agent", "agent_answered", "completed")


async def test_a_backlog_is_delivered_once_in_order(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    settings = Settings(
        database_url=db_url,
        webhook_allow_private=True,
        webhook_poll_interval=0.05,
        webhook_concurrency=2,
    )
    with receiver() as inbox:
        async with opened(db_url) as database:
            for number in ("0367", "0999"):
                await add_enterprise(
                    database, number, f"e{number}", "127.0.0.1", f"s-{number}-xyzw"
                )
            _, secret = await webhooks.add_webhook(database, settings, "0367", inbox.url, None)
            del secret
            now = utcnow()
            calls, events = [], []
            for n in range(CALLS_EACH):
                for number in ("0367", "0999"):
                    call_id = f"{number}-{n:05d}"
                    calls.append(
                        {
                            "id": call_id,
                            "enterprise_number": number,
                            "extension": "150",
                            "phone": "+375296254070",
                            "host": "127.0.0.1",
                            "created_at": now,
                            "state": "completed",
                            "outcome": "success",
                            "agent_outcome": "answered",
                            "customer_outcome": "answered",
                        }
                    )
                    events += [
                        {"call_id": call_id, "state": state, "at": now + timedelta(seconds=i)}
                        for i, state in enumerate(STATES)
                    ]
            async with database.transaction() as tx:
                for start in range(0, len(calls), 200):
                    await tx.rowcount(CALLS.insert().values(calls[start : start + 200]))
                for start in range(0, len(events), 500):
                    await tx.rowcount(CALL_EVENTS.insert().values(events[start : start + 500]))

            dispatcher = sending.Dispatcher(database, settings)
            dispatcher.start()
            try:
                await inbox.until(lambda got: len(got) >= CALLS_EACH * len(STATES), within=120)
                await asyncio.sleep(0.5)  # a repeat would come now
            finally:
                await dispatcher.aclose()

            own = await database.rows(
                select(CALL_EVENTS.c.id)
                .join(CALLS, CALLS.c.id == CALL_EVENTS.c.call_id)
                .where(CALLS.c.enterprise_number == "0367")
                .order_by(CALL_EVENTS.c.id)
            )
            (endpoint,) = await store.list_endpoints(database, "0367")
            head = await store.head(database)
            kept = await database.value(select(func.count()).select_from(WEBHOOK_DELIVERIES))
            await store.prune(database, utcnow() + timedelta(seconds=1))
            left = await database.value(select(func.count()).select_from(WEBHOOK_DELIVERIES))

    ids = [r.headers["webhook-id"] for r in inbox.requests]
    assert ids == [f"evt_{row['id']}" for row in own]  # each once, in the log's order
    bodies = [json.loads(r.body) for r in inbox.requests]
    assert all(b["data"]["call_id"].startswith("0367-") for b in bodies)
    assert endpoint.cursor == head
    assert kept == len(own) and left == 0


@pytest.mark.postgres
async def test_a_poll_compiles_no_statement_again(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dispatcher polls twice a second, endpoints or not, on the instance that sends: the
    statements of a poll are compiled at the first one only (`db.postgres` keeps a compiled
    form by statement object, so one built per poll was compiled at every poll)."""
    await asyncio.to_thread(upgrade, pg_url)
    compiled: list[str] = []

    class Counted(postgres._Compiled):
        def __init__(self, statement: Executable, names: Mapping[str, Any] | None) -> None:
            super().__init__(statement, names)
            compiled.append(self.sql)

    monkeypatch.setattr(postgres, "_Compiled", Counted)
    monkeypatch.setattr(sending, "COUNT_EVERY", -1.0)  # the outbox counted at every poll
    settings = Settings(database_url=pg_url, webhook_allow_private=True)
    async with opened(pg_url) as database:
        dispatcher = sending.Dispatcher(database, settings)
        try:
            await dispatcher.poll()  # no endpoint: the log's head is not read
            await add_enterprise(database, "0367", "june", "127.0.0.1", "s-0367-xyzw")
            await webhooks.add_webhook(database, settings, "0367", "http://127.0.0.1:9/", None)
            await dispatcher.poll()
            first = len(compiled)
            for _ in range(3):
                await dispatcher.poll()
        finally:
            await dispatcher.aclose()
    assert first >= 4  # the endpoints, the counts (two), the head, the due rows
    assert compiled[first:] == []
