"""The events consumers can subscribe to, and ``emit``, which services call in their change's
transaction."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.webhooks import repository
from identity.webhooks.models import WebhookEvent

MEMBER_REMOVED = "member.removed"
PERMISSIONS_CHANGED = "member.permissions_changed"
USER_DISABLED = "user.disabled"
USER_ENABLED = "user.enabled"
PASSWORD_RESET = "user.password_reset"  # noqa: S105 - an event name, not a password
SESSIONS_REVOKED = "user.sessions_revoked"

EVENT_TYPES = frozenset(
    {
        MEMBER_REMOVED,
        PERMISSIONS_CHANGED,
        USER_DISABLED,
        USER_ENABLED,
        PASSWORD_RESET,
        SESSIONS_REVOKED,
    }
)


def about_member(account_id: uuid.UUID, user_id: uuid.UUID) -> dict[str, str]:
    """The data of the events about one membership."""
    return {"account_id": str(account_id), "user_id": str(user_id)}


def about_user(user_id: uuid.UUID) -> dict[str, str]:
    """The data of the events about one user."""
    return {"user_id": str(user_id)}


async def emit(session: AsyncSession, type: str, data: dict[str, Any]) -> None:
    """Record the event, and its delivery to every subscription that wants it, in the
    caller's transaction: it goes out only if that transaction commits."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    event = WebhookEvent(id=uuid.uuid4(), type=type, occurred_at=utcnow())
    event.body = json.dumps(
        {
            "id": str(event.id),
            "type": type,
            "occurred_at": event.occurred_at.isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        separators=(",", ":"),
    )
    await repository.record_event(session, event)
