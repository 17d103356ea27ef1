"""All SQL about the outgoing-mail queue."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db import work_queue
from identity.mail.models import MAX_SUBJECT, OutgoingEmail


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    text: str
    html: str | None = None


def _subject(text: str) -> str:
    """``text`` as one header line that fits its column. Subjects name people and accounts,
    whose names may hold line breaks; a header value with one cannot be built into a message
    (it would start a header of its own), and the message would be retried to no end. Every
    run of whitespace, line breaks included, becomes one space. Two long names together can
    outgrow the column, which PostgreSQL enforces: the subject is cut, with an ellipsis,
    rather than the change that sends it refused."""
    line = " ".join(text.split())
    return line if len(line) <= MAX_SUBJECT else line[: MAX_SUBJECT - 1] + "…"


async def enqueue(session: AsyncSession, message: Message, now: datetime) -> uuid.UUID:
    """Queue ``message`` in the caller's transaction: it is sent only if that commits."""
    row = OutgoingEmail(
        to_address=message.to,
        subject=_subject(message.subject),
        text_body=message.text,
        html_body=message.html,
        next_attempt_at=now,
    )
    session.add(row)
    await session.flush()
    return row.id


async def due(session: AsyncSession, now: datetime, limit: int) -> Sequence[uuid.UUID]:
    return await work_queue.due(session, OutgoingEmail, OutgoingEmail.sent_at, now, limit)


async def lease(
    session: AsyncSession, email_id: uuid.UUID, now: datetime, lease_for: timedelta
) -> OutgoingEmail | None:
    """Take the message for ``lease_for``; None when another sender holds it or it is done,
    or when it is no longer due (another sender failed it since it was read as due)."""
    result = await session.execute(
        update(OutgoingEmail)
        .where(
            OutgoingEmail.id == email_id,
            *work_queue.leasable(OutgoingEmail, OutgoingEmail.sent_at, now),
        )
        .values(leased_until=now + lease_for, attempts=OutgoingEmail.attempts + 1)
        .returning(OutgoingEmail)
    )
    return result.scalar_one_or_none()


async def mark_sent(session: AsyncSession, email_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(OutgoingEmail)
        .where(OutgoingEmail.id == email_id)
        .values(sent_at=now, leased_until=None, last_error=None)
    )


async def mark_failed_attempt(
    session: AsyncSession, email_id: uuid.UUID, error: str, retry_at: datetime | None, now: datetime
) -> None:
    """Schedule the next attempt, or give up (``retry_at`` None) after the last one."""
    values: dict[str, object] = {"leased_until": None, "last_error": error[:500]}
    if retry_at is None:
        values["failed_at"] = now
    else:
        values["next_attempt_at"] = retry_at
    await session.execute(
        update(OutgoingEmail).where(OutgoingEmail.id == email_id).values(**values)
    )
