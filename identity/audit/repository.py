"""All SQL for the audit log: insert and read, nothing else (the log is append-only)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.models import AuditEvent


@dataclass(frozen=True, slots=True)
class EventFilter:
    account_id: uuid.UUID | None = None
    action: str | None = None
    actor_user_id: uuid.UUID | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


async def insert_event(session: AsyncSession, event: AuditEvent) -> None:
    session.add(event)
    await session.flush()


async def list_events(
    session: AsyncSession, where: EventFilter, before_id: int | None, limit: int
) -> Sequence[AuditEvent]:
    """Newest first; ``before_id`` pages back from an earlier answer's last id."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if where.account_id is not None:
        statement = statement.where(AuditEvent.account_id == where.account_id)
    if where.action is not None:
        statement = statement.where(AuditEvent.action == where.action)
    if where.actor_user_id is not None:
        statement = statement.where(AuditEvent.actor_user_id == where.actor_user_id)
    if where.target_id is not None:
        statement = statement.where(AuditEvent.target_id == where.target_id)
    if where.since is not None:
        statement = statement.where(AuditEvent.occurred_at >= where.since)
    if where.until is not None:
        statement = statement.where(AuditEvent.occurred_at < where.until)
    if before_id is not None:
        statement = statement.where(AuditEvent.id < before_id)
    return (await session.scalars(statement)).all()
