"""All SQL about webhook subscriptions, events and deliveries."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, delete, func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db import work_queue
from identity.db.paging import Page, paged
from identity.webhooks import url_key
from identity.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription


@dataclass(frozen=True, slots=True)
class Leased:
    """A delivery taken for one attempt, with what posting it needs."""

    delivery_id: uuid.UUID
    attempts: int
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    body: str
    url: str
    secret_ciphertext: str


class UrlTaken(Exception):
    """The URL has a subscription already: ``existing``, read after the refused insert, so
    also one a concurrent transaction committed meanwhile (None if deleted again since)."""

    def __init__(self, existing: uuid.UUID | None) -> None:
        super().__init__(existing)
        self.existing = existing


async def insert_subscription(session: AsyncSession, subscription: WebhookSubscription) -> None:
    """Store it; UrlTaken when its URL has a subscription already."""
    try:
        # A savepoint: the refusal leaves the caller's transaction usable for the look-up.
        async with session.begin_nested():
            session.add(subscription)
    except IntegrityError:
        existing = await session.scalar(
            select(WebhookSubscription.id).where(
                WebhookSubscription.url_digest == url_key.digest(subscription.url)
            )
        )
        raise UrlTaken(existing) from None


async def list_subscriptions(
    session: AsyncSession, page: Page | None = None, *, hold: bool = False
) -> Sequence[WebhookSubscription]:
    """Every subscription; with ``hold``, share-locked (PostgreSQL) until the transaction
    ends, for deliveries about to refer to them: a deletion waits, and its cascade then
    takes the new deliveries too, where it would have left their foreign key dangling.
    SQLite needs none: ``record_event`` asks after the event's INSERT took its write lock."""
    statement = select(WebhookSubscription).order_by(
        WebhookSubscription.created_at, WebhookSubscription.id
    )
    statement = paged(statement, page)
    if hold:
        statement = statement.with_for_update(read=True)
    return (await session.scalars(statement)).all()


async def delete_subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> tuple[str, list[str]] | None:
    """Delete it with its pending deliveries; its URL and event types, or None when there
    was no such subscription."""
    result = await session.execute(
        delete(WebhookSubscription)
        .where(WebhookSubscription.id == subscription_id)
        .returning(WebhookSubscription.url, WebhookSubscription.event_types)
    )
    row = result.one_or_none()
    return None if row is None else (row.url, row.event_types)


async def subscription_exists(session: AsyncSession, subscription_id: uuid.UUID) -> bool:
    found = await session.scalar(
        select(WebhookSubscription.id).where(WebhookSubscription.id == subscription_id)
    )
    return found is not None


async def get_subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> WebhookSubscription | None:
    return await session.get(WebhookSubscription, subscription_id)


State = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True, slots=True)
class DeliveryView:
    """A delivery as staff see it: where it stands, and which event it carries."""

    delivery: WebhookDelivery
    event_type: str
    occurred_at: datetime

    @property
    def state(self) -> State:
        if self.delivery.delivered_at is not None:
            return "delivered"
        return "failed" if self.delivery.failed_at is not None else "pending"


def _in_state(state: State) -> tuple[ColumnElement[bool], ...]:
    delivered, failed = WebhookDelivery.delivered_at, WebhookDelivery.failed_at
    return {
        "delivered": (delivered.is_not(None),),
        "failed": (delivered.is_(None), failed.is_not(None)),
        "pending": (delivered.is_(None), failed.is_(None)),
    }[state]


async def list_deliveries(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    *,
    delivery_id: uuid.UUID | None = None,
    state: State | None = None,
    page: Page | None = None,
) -> list[DeliveryView]:
    """The subscription's deliveries, newest event first (one of them, with ``delivery_id``)."""
    conditions = [WebhookDelivery.subscription_id == subscription_id]
    if delivery_id is not None:
        conditions.append(WebhookDelivery.id == delivery_id)
    if state is not None:
        conditions.extend(_in_state(state))
    statement = (
        select(WebhookDelivery, WebhookEvent.type, WebhookEvent.occurred_at)
        .join(WebhookEvent, WebhookDelivery.event_id == WebhookEvent.id)
        .where(*conditions)
        .order_by(WebhookEvent.occurred_at.desc(), WebhookDelivery.id.desc())
    )
    result = await session.execute(paged(statement, page))
    return [DeliveryView(row[0], row[1], row[2]) for row in result]


async def requeue(
    session: AsyncSession, subscription_id: uuid.UUID, delivery_id: uuid.UUID, now: datetime
) -> bool:
    """Due now, with a fresh set of attempts, whatever its state; False when the
    subscription has no such delivery. A lease held by an attempt in flight is left alone,
    so that attempt is not joined by a second one."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.subscription_id == subscription_id,
        )
        .values(attempts=0, next_attempt_at=now, delivered_at=None, failed_at=None, last_error=None)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def record_event(session: AsyncSession, event: WebhookEvent) -> None:
    session.add(event)
    await session.flush()
    # Event types are few and subscriptions a handful per deployment: filtering the JSON list
    # here keeps the query the same on SQLite and PostgreSQL.
    for subscription in await list_subscriptions(session, hold=True):
        if event.type in subscription.event_types:
            session.add(
                WebhookDelivery(
                    event_id=event.id,
                    subscription_id=subscription.id,
                    next_attempt_at=event.occurred_at,
                )
            )
    await session.flush()


async def due(session: AsyncSession, now: datetime, limit: int) -> Sequence[uuid.UUID]:
    """The ids of up to ``limit`` deliveries due now, taken in turns: each subscription's
    longest waiting, then each one's second, and so on. A subscription with a backlog (a role
    change reaching thousands of members) then leaves room in every batch for the others'
    deliveries, however much older and more its own are, yet fills a batch when it alone has
    any due. Each subscription's own come in the order they became due, events in the order
    they occurred where that ties (deliveries deferred together, see ``defer``)."""
    # Turns are taken among every subscription with work due, from the first ``limit`` of
    # each: no more can come out of one. Each is a range of the per-subscription due index,
    # so a batch reads (subscriptions x limit) rows whatever the backlogs, where ranking every
    # due delivery would sort a whole backlog (100,000 after a role change). A window of the
    # longest waiting of all subscriptions together would be filled by one backlog that keeps
    # being retried (a consumer answering errors), holding the others until it was tried whole.
    subscriptions = await _with_work_due(session, now)
    if not subscriptions:
        return []
    firsts = union_all(*(_first_due(s, now, limit) for s in subscriptions)).subquery()
    in_order = (firsts.c.next_attempt_at, firsts.c.occurred_at, firsts.c.id)
    ranked = select(
        *in_order,
        func.row_number()
        .over(partition_by=firsts.c.subscription_id, order_by=in_order)
        .label("turn"),
    ).subquery()
    result = await session.scalars(
        select(ranked.c.id)
        .order_by(ranked.c.turn, ranked.c.next_attempt_at, ranked.c.occurred_at, ranked.c.id)
        .limit(limit)
    )
    return result.all()


def _due_to(
    subscription_id: ColumnElement[uuid.UUID] | uuid.UUID, now: datetime
) -> tuple[ColumnElement[bool], ...]:
    """The subscription's deliveries leasable now: a range of its due index."""
    return (
        WebhookDelivery.subscription_id == subscription_id,
        *work_queue.leasable(WebhookDelivery, WebhookDelivery.delivered_at, now),
    )


async def _with_work_due(session: AsyncSession, now: datetime) -> Sequence[uuid.UUID]:
    """The subscriptions with a delivery due now, each asked of its first in the due index
    (subscriptions are tens, their backlogs up to hundreds of thousands)."""
    # Its first in due order, not EXISTS: PostgreSQL answered EXISTS through the index of
    # all the subscription's deliveries, reading through a day of delivered ones.
    first = (
        select(WebhookDelivery.next_attempt_at)
        .where(*_due_to(WebhookSubscription.id, now))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
        .scalar_subquery()
    )
    statement = (
        select(WebhookSubscription.id).where(first.is_not(None)).order_by(WebhookSubscription.id)
    )
    return (await session.scalars(statement)).all()


# How many of one subscription's longest waiting deliveries ``_first_due`` puts in event
# order. A consumer back from a deferral has its whole backlog due at one time, and ordering
# all of it by event, a join and a sort of 100,000 rows, took a quarter of a second for each
# batch of 20; the window is read straight from the index, and deliveries are inserted as
# their events occur, so it holds the earliest of them.
WINDOW = 1000


def _first_due(subscription_id: uuid.UUID, now: datetime, limit: int) -> Select[Any]:
    """The subscription's first ``limit`` deliveries due now, in their order."""
    window = (
        select(WebhookDelivery.id, WebhookDelivery.event_id, WebhookDelivery.next_attempt_at)
        .where(*_due_to(subscription_id, now))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(WINDOW)
        .subquery()
    )
    first = (
        select(
            window.c.id,
            literal(subscription_id).label("subscription_id"),
            window.c.next_attempt_at,
            WebhookEvent.occurred_at,
        )
        .join(WebhookEvent, window.c.event_id == WebhookEvent.id)
        .order_by(window.c.next_attempt_at, WebhookEvent.occurred_at, window.c.id)
        .limit(limit)
        .subquery()
    )
    # Selected from as a subquery: SQLite takes no LIMIT on a part of a UNION itself.
    return select(first)


async def defer(
    session: AsyncSession, subscription_id: uuid.UUID, until: datetime, now: datetime
) -> None:
    """Nothing more for the subscription before ``until``: its deliveries not leased by an
    attempt under way wait till then, keeping their attempts (none is made) and their order
    (each comes no earlier than it would have, and those due together are told apart by
    their events' order)."""
    # Locked in id order (PostgreSQL), so two processes deferring one subscription at once
    # wait for each other instead of deadlocking over rows each locked first.
    rows = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            *work_queue.claimable(WebhookDelivery, WebhookDelivery.delivered_at, now),
            WebhookDelivery.next_attempt_at < until,
        )
        .order_by(WebhookDelivery.id)
        .with_for_update()
    )
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(rows.scalar_subquery()))
        .values(next_attempt_at=until)
    )


async def lease(
    session: AsyncSession, delivery_id: uuid.UUID, now: datetime, lease_for: timedelta
) -> Leased | None:
    """Take the delivery for ``lease_for``; None when another process holds it or it is done,
    or when it is no longer due: ``defer`` may have moved it since it was read as due."""
    result = await session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            *work_queue.leasable(WebhookDelivery, WebhookDelivery.delivered_at, now),
        )
        .values(leased_until=now + lease_for, attempts=WebhookDelivery.attempts + 1)
        .returning(WebhookDelivery.attempts)
    )
    attempts = result.scalar_one_or_none()
    if attempts is None:
        return None
    subscription_id, event_id, body, url, secret_ciphertext = (
        await session.execute(
            select(
                WebhookSubscription.id,
                WebhookEvent.id,
                WebhookEvent.body,
                WebhookSubscription.url,
                WebhookSubscription.secret_ciphertext,
            )
            .join(WebhookDelivery, WebhookDelivery.event_id == WebhookEvent.id)
            .join(WebhookSubscription, WebhookDelivery.subscription_id == WebhookSubscription.id)
            .where(WebhookDelivery.id == delivery_id)
        )
    ).one()
    return Leased(delivery_id, attempts, subscription_id, event_id, body, url, secret_ciphertext)


async def mark_delivered(session: AsyncSession, delivery_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(delivered_at=now, leased_until=None, last_error=None)
    )


async def mark_failed_attempt(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    attempt: int,
    error: str,
    retry_at: datetime | None,
    now: datetime,
) -> None:
    """Schedule the next attempt, or give up (``retry_at`` None) after the last one.

    A resend while attempt number ``attempt`` was out started a fresh count, due now: that
    stands, and the attempt only gives its lease back (else a failed last attempt of the old
    count would give up on the resend)."""
    values: dict[str, object] = {"leased_until": None, "last_error": error[:500]}
    if retry_at is None:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = retry_at
    row = WebhookDelivery.id == delivery_id
    marked = await session.execute(
        update(WebhookDelivery).where(row, WebhookDelivery.attempts == attempt).values(**values)
    )
    if not marked.rowcount:  # type: ignore[attr-defined]
        await session.execute(
            update(WebhookDelivery).where(row).values(leased_until=None, last_error=error[:500])
        )
