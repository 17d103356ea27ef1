"""Tables worked through by background senders: outgoing mail and webhook deliveries.

Each row waits for ``next_attempt_at``, is leased by one process at a time until
``leased_until``, and ends done (its ``done`` column) or given up (``failed_at``); these are
the two questions every sender asks of such a table.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


def claimable(
    model: Any, done: InstrumentedAttribute[Any], now: datetime
) -> tuple[ColumnElement[bool], ...]:
    """Not done, not given up, and leased by nobody (or by a process whose lease ran out)."""
    return (
        done.is_(None),
        model.failed_at.is_(None),
        or_(model.leased_until.is_(None), model.leased_until < now),
    )


def leasable(
    model: Any, done: InstrumentedAttribute[Any], now: datetime
) -> tuple[ColumnElement[bool], ...]:
    """Claimable, and its next attempt due. A lease asks it again of the row it read as due:
    meanwhile another process may have taken it, failed and scheduled the retry, which a
    lease on ``claimable`` alone would make at once, out of its backoff."""
    return (*claimable(model, done, now), model.next_attempt_at <= now)


def longest_waiting(
    model: Any, done: InstrumentedAttribute[Any], now: datetime, limit: int
) -> Select[tuple[Any]]:
    """Up to ``limit`` leasable rows, the longest waiting first (read through
    ``base.waiting_index``, which holds these rows alone)."""
    return (
        select(model)
        .where(*leasable(model, done, now))
        .order_by(model.next_attempt_at)
        .limit(limit)
    )


async def due(
    session: AsyncSession, model: Any, done: InstrumentedAttribute[Any], now: datetime, limit: int
) -> Sequence[uuid.UUID]:
    """The ids of ``longest_waiting``."""
    rows = longest_waiting(model, done, now, limit).with_only_columns(model.id)
    return (await session.scalars(rows)).all()
