"""Recording who changed what, in the same transaction as the change itself.

Because the event is written with the change, a rolled-back change leaves no event and a
committed one always has its event.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit import repository
from identity.audit.models import AuditEvent
from identity.audit.repository import EventFilter
from identity.clock import utcnow

__all__ = ["Actor", "EventFilter", "list_events", "record", "record_as"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and from where: what every audit event names."""

    user_id: uuid.UUID | None = None
    client_id: str | None = None
    ip: str | None = None
    request_id: str | None = None


async def record(
    session: AsyncSession,
    *,
    action: str,
    actor_user_id: uuid.UUID | None,
    actor_client_id: str | None,
    account_id: uuid.UUID | None,
    target_type: str | None,
    target_id: str | None,
    ip: str | None,
    request_id: str | None,
    details: dict[str, Any],
) -> None:
    await repository.insert_event(
        session,
        AuditEvent(
            occurred_at=utcnow(),
            action=action,
            actor_user_id=actor_user_id,
            actor_client_id=actor_client_id,
            account_id=account_id,
            target_type=target_type,
            target_id=target_id,
            ip=ip[:45] if ip else None,
            request_id=request_id,
            details=details,
        ),
    )


async def record_as(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    account_id: uuid.UUID | None,
    target: tuple[str, Any],
    old: Any = None,
    new: Any = None,
) -> None:
    """``record`` for a change made by ``actor``; ``target`` is (type, id)."""
    await record(
        session,
        action=action,
        actor_user_id=actor.user_id,
        actor_client_id=actor.client_id,
        account_id=account_id,
        target_type=target[0],
        target_id=str(target[1]),
        ip=actor.ip,
        request_id=actor.request_id,
        details={"old": old, "new": new},
    )


async def list_events(
    session: AsyncSession, where: EventFilter, before_id: int | None = None, limit: int = 50
) -> Sequence[AuditEvent]:
    return await repository.list_events(session, where, before_id, limit)
