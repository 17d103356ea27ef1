"""All SQL about browser sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.db.core_insert import insert_of, insert_row
from identity.sessions.models import BrowserSession

_INSERT = insert_of(BrowserSession)


async def add(session: AsyncSession, browser_session: BrowserSession) -> None:
    """Store a new session, its ``id`` chosen by the caller (see ``identity.db.core_insert``)."""
    await insert_row(session, _INSERT, browser_session)


async def find_live(session: AsyncSession, token_hash: str, now: datetime) -> BrowserSession | None:
    """The session behind a cookie, unless revoked, expired, or its user disabled."""
    result = await session.execute(
        select(BrowserSession)
        .join(User, User.id == BrowserSession.user_id)
        .where(
            BrowserSession.token_hash == token_hash,
            BrowserSession.revoked_at.is_(None),
            BrowserSession.expires_at > now,
            User.disabled.is_(False),
        )
    )
    return result.scalar_one_or_none()


def seen(browser_session: BrowserSession, now: datetime, expires_at: datetime) -> None:
    """Record a use of a live session, and the expiry it moves it to (written with the
    caller's transaction; the columns set leave a sign-out meanwhile in force)."""
    browser_session.last_seen_at, browser_session.expires_at = now, expires_at


async def hold_unrevoked(
    session: AsyncSession, session_id: uuid.UUID | None
) -> BrowserSession | None:
    """The session, if it still exists unrevoked. On PostgreSQL its row is share-locked until
    the caller's transaction ends: a sign-out in progress is waited for and then seen, and one
    that starts later waits for the caller, whose refresh tokens it then finds and revokes
    (identity.sessions.revocation). SQLite's one writer at a time needs no lock."""
    if session_id is None:
        return None
    return await session.scalar(
        select(BrowserSession)
        .where(BrowserSession.id == session_id, BrowserSession.revoked_at.is_(None))
        .with_for_update(read=True)
    )


class Revoked(NamedTuple):
    id: uuid.UUID
    user_id: uuid.UUID
    sid: uuid.UUID | None
    expires_at: datetime


async def revoke(session: AsyncSession, token_hash: str, now: datetime) -> Revoked | None:
    """Revoke the session behind a cookie, expired or not; None when there was none unrevoked."""
    result = await session.execute(
        update(BrowserSession)
        .where(BrowserSession.token_hash == token_hash, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(
            BrowserSession.id,
            BrowserSession.user_id,
            BrowserSession.sid,
            BrowserSession.expires_at,
        )
    )
    row = result.one_or_none()
    return None if row is None else Revoked(row.id, row.user_id, row.sid, row.expires_at)


async def replace_token(session: AsyncSession, session_id: uuid.UUID, token_hash: str) -> bool:
    """Give a live session a new token; False when it ended meanwhile."""
    result = await session.execute(
        update(BrowserSession)
        .where(BrowserSession.id == session_id, BrowserSession.revoked_at.is_(None))
        .values(token_hash=token_hash)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def live_for_user(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> list[BrowserSession]:
    """The user's sessions that are neither revoked nor expired, newest sign-in first."""
    result = await session.scalars(
        select(BrowserSession)
        .where(
            BrowserSession.user_id == user_id,
            BrowserSession.revoked_at.is_(None),
            BrowserSession.expires_at > now,
        )
        .order_by(BrowserSession.auth_time.desc())
    )
    return list(result)
