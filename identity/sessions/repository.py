"""All SQL about browser sessions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.accounts.repository import lock_user
from identity.db.core_insert import insert_of, insert_row
from identity.db.row_locks import lock_rows
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


async def seen(
    session: AsyncSession, session_id: uuid.UUID, now: datetime, expires_at: datetime
) -> None:
    """Record a use of a session at ``now``, and the expiry it moves it to: unless it was
    ended meanwhile, or a later use was recorded first (uses are recorded after the
    request, so two may arrive out of order)."""
    await session.execute(
        update(BrowserSession)
        .where(
            BrowserSession.id == session_id,
            BrowserSession.revoked_at.is_(None),
            BrowserSession.last_seen_at < now,
        )
        .values(last_seen_at=now, expires_at=expires_at)
        .execution_options(synchronize_session=False)
    )


class SignedIn(NamedTuple):
    user: User
    sid: uuid.UUID | None


async def hold_signed_in(
    session: AsyncSession, session_id: uuid.UUID | None, user_id: uuid.UUID
) -> SignedIn | None:
    """The user of a sign-in and its session's ``sid``, while the session exists unrevoked
    and the user enabled; None otherwise. One statement, as a code redemption reads both.

    On PostgreSQL the session's row is share-locked until the caller's transaction ends: a
    sign-out in progress is waited for and then seen, and one that starts later waits for
    the caller, whose refresh tokens it then finds and revokes (identity.sessions.revocation).
    The user's row is only read, as ``identity.tokens.subjects.active_user`` reads it.
    SQLite's one writer at a time needs no lock."""
    if session_id is None:
        return None
    row = (
        await session.execute(_SIGNED_IN, {"session_id": session_id, "user_id": user_id})
    ).one_or_none()
    return None if row is None else SignedIn(row[0], row[1])


# Built once: read by every code redemption.
_SIGNED_IN = (
    select(User, BrowserSession.sid)
    .join(BrowserSession, BrowserSession.user_id == User.id)
    .where(
        BrowserSession.id == bindparam("session_id"),
        BrowserSession.revoked_at.is_(None),
        User.id == bindparam("user_id"),
        User.disabled.is_(False),
    )
    .with_for_update(read=True, of=BrowserSession)
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


async def lock_user_signed_in(
    session: AsyncSession, user_id: uuid.UUID, session_id: uuid.UUID
) -> bool:
    """Take the user's row (``lock_user``), then browser session ``session_id``'s while it is
    live, until the transaction ends; whether it is live.

    For a change a browser asks for in its user's name: it runs before or after any other
    that signs the user's browsers out, never across it, and is not made once one has signed
    this browser out (the other browser may be the owner's, ending a thief's session). The
    user's row always first: two browsers pressing "sign out everywhere else" at once each
    held their own session's row and waited for the other's, a deadlock on PostgreSQL. The
    session's row then stays live to the end: a cookie-held sign-out of this browser (another
    tab's /logout), which takes no user row, waits for the change.
    """
    await lock_user(session, user_id)
    live = BrowserSession.id == session_id, BrowserSession.revoked_at.is_(None)
    return await lock_rows(session, BrowserSession.token_hash, *live) == 1


async def replace_token(session: AsyncSession, session_id: uuid.UUID, token_hash: str) -> None:
    await session.execute(
        update(BrowserSession).where(BrowserSession.id == session_id).values(token_hash=token_hash)
    )


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
