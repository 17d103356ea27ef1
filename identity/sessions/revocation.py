"""Sign a user out everywhere: every browser session and every refresh token, in one place.

After a password reset (and anything else that means "whoever held a session may not be
the owner"), nothing issued before may go on working. Access tokens are short-lived JWTs
and expire on their own; sessions, unredeemed authorization codes and refresh tokens are
revoked here.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.sessions.models import BrowserSession
from identity.tokens.codes import end_unredeemed
from identity.tokens.models import RefreshToken
from identity.tokens.refresh import revoke_matching
from identity.webhooks.events import SESSIONS_REVOKED, about_user, emit


async def revoke_all_for_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    keep_session_id: uuid.UUID | None = None,
) -> None:
    """Revoke every session, code not yet redeemed and refresh token of the user;
    ``keep_session_id`` spares the browser session of a user who changed their own password
    while signed in."""
    await end_unredeemed(session, user_id, now)
    sessions = update(BrowserSession).where(
        BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        sessions = sessions.where(BrowserSession.id != keep_session_id)
    await session.execute(sessions.values(revoked_at=now))
    await revoke_matching(session, now, RefreshToken.user_id == user_id)
    await emit(session, SESSIONS_REVOKED, about_user(user_id))


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, keep_session_id: uuid.UUID, now: datetime
) -> int:
    """Sign out the user's other browsers, every code not yet redeemed (this browser's too: a
    copy of its cookie may have fetched one) and every refresh token not issued through this
    one; returns how many sessions ended.

    The refresh tokens are found by user, not through the sessions that ended: an app signed
    in through a browser session that has since expired holds tokens that outlive it, and
    housekeeping deletes expired sessions.
    """
    await end_unredeemed(session, user_id, now)
    ended = (
        (
            await session.execute(
                update(BrowserSession)
                .where(
                    BrowserSession.user_id == user_id,
                    BrowserSession.revoked_at.is_(None),
                    BrowserSession.id != keep_session_id,
                )
                .values(revoked_at=now)
                .returning(BrowserSession.id)
            )
        )
        .scalars()
        .all()
    )
    await revoke_matching(
        session,
        now,
        RefreshToken.user_id == user_id,
        or_(RefreshToken.session_id.is_(None), RefreshToken.session_id != keep_session_id),
    )
    # As after a password change that spares the browser: consumers keeping sessions of
    # their own end them, and the user's remaining session is theirs to keep checking.
    await emit(session, SESSIONS_REVOKED, about_user(user_id))
    return len(ended)
