"""Background senders find due work without reading through the finished work kept a day."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.db import work_queue
from identity.db.engine import Database, create_engine
from identity.mail.models import OutgoingEmail
from identity.settings import Settings
from identity.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription


@pytest.fixture
async def db(database: Settings) -> AsyncIterator[Database]:
    engine = Database(create_engine(database))
    yield engine
    await engine.dispose()


async def _mail(session: AsyncSession) -> Callable[[datetime | None], Any]:
    def one(sent_at: datetime | None) -> OutgoingEmail:
        return OutgoingEmail(
            to_address="ana@example.com", subject="s", text_body="t", sent_at=sent_at
        )

    return one


async def _deliveries(session: AsyncSession) -> Callable[[datetime | None], Any]:
    subscription = WebhookSubscription(
        url="https://hooks.example.com/", event_types=["user.updated"], secret_ciphertext="x"
    )
    event = WebhookEvent(type="user.updated", body="{}")
    session.add_all([subscription, event])
    await session.flush()

    def one(delivered_at: datetime | None) -> WebhookDelivery:
        return WebhookDelivery(
            event_id=event.id, subscription_id=subscription.id, delivered_at=delivered_at
        )

    return one


@pytest.mark.parametrize(
    ("model", "done", "rows"),
    [
        (OutgoingEmail, OutgoingEmail.sent_at, _mail),
        (WebhookDelivery, WebhookDelivery.delivered_at, _deliveries),
    ],
    ids=["mail", "webhooks"],
)
async def test_looking_for_due_work_reads_no_finished_work(
    db: Database, database: Settings, model: Any, done: Any, rows: Any
) -> None:
    # Finished rows are kept a day with their old next-attempt times, first in a full index
    # on it: every poll of every process read through the whole day's sent mail or delivered
    # events (on PostgreSQL a scan of the table) to find the few rows still waiting.
    long_ago = utcnow() - timedelta(hours=1)
    async with db.transaction() as session:
        make = await rows(session)
        for finished in [long_ago] * 300 + [None]:
            row = make(finished)
            row.next_attempt_at = long_ago
            session.add(row)
    query = work_queue.longest_waiting(model, done, utcnow(), 20).with_only_columns(model.id)
    async with db.transaction() as session:
        if database.is_sqlite:
            plan = await _plan(session, query, "EXPLAIN QUERY PLAN")
            assert any(f"{model.__tablename__}_waiting" in row[-1] for row in plan), plan
        else:
            # Tiny tables are scanned whatever their indexes: ask for the index's plan.
            await session.execute(text(f"ANALYZE {model.__tablename__}"))
            await session.execute(text("SET LOCAL enable_seqscan = off"))
            ((analysed,),) = await _plan(session, query, "EXPLAIN (ANALYZE, FORMAT JSON)")
            assert _rows_removed(analysed[0]["Plan"]) == 0, analysed


async def _plan(session: AsyncSession, query: Any, explain: str) -> list[Any]:
    compiled = query.compile(session.bind, compile_kwargs={"literal_binds": True})
    return list((await session.execute(text(f"{explain} {compiled}"))).all())


def _rows_removed(node: dict[str, Any]) -> int:
    """The rows a plan read and threw away, over all its nodes."""
    own: int = node.get("Rows Removed by Filter", 0)
    return own + sum(_rows_removed(child) for child in node.get("Plans", []))
