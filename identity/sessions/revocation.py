"""Sign a user out: browser sessions, and what apps were issued through them, in one place.

After a password reset (and anything else that means "whoever held a session may not be
the owner"), nothing issued before may go on working: sessions, unredeemed authorization
codes and refresh tokens are revoked here, and the access tokens issued through them are
put on the deny list, as Keycloak's introspection calls a token of an ended session
inactive. They are JWTs, so only introspection and userinfo see that before they expire.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.sessions.models import BrowserSession
from identity.tokens import revocations
from identity.tokens.codes import end_unredeemed
from identity.tokens.models import AuthorizationCode, RefreshToken
from identity.tokens.refresh import revoke_matching
from identity.webhooks.events import SESSIONS_REVOKED, about_user, emit


async def end_tokens(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    through: uuid.UUID | None = None,
    not_through: uuid.UUID | None = None,
) -> None:
    """Revoke the user's refresh tokens and deny the access tokens issued with them and by
    their redeemed codes: all, or only those issued through browser session ``through``, or
    all but those issued through ``not_through``. Two statements however many tokens there
    are (``revoke_matching`` repeats its own only while rotations under way add tokens).
    """

    def issued(model: type[RefreshToken] | type[AuthorizationCode]) -> ColumnElement[bool]:
        # By user first: user_id is indexed in both tables, session_id is not.
        conditions = [model.user_id == user_id]
        if through is not None:
            conditions.append(model.session_id == through)
        if not_through is not None:
            conditions.append(or_(model.session_id.is_(None), model.session_id != not_through))
        return and_(*conditions)

    await revoke_matching(session, now, issued(RefreshToken))
    await revocations.deny_recorded(session, now, issued(RefreshToken), issued(AuthorizationCode))


async def revoke_all_for_user(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    keep_session_id: uuid.UUID | None = None,
) -> None:
    """Revoke every session, code not yet redeemed, refresh token and recorded access token
    of the user; ``keep_session_id`` spares the browser session of a user who changed their
    own password while signed in (not its tokens: the new password ends every app's)."""
    await end_unredeemed(session, user_id, now)
    sessions = update(BrowserSession).where(
        BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None)
    )
    if keep_session_id is not None:
        sessions = sessions.where(BrowserSession.id != keep_session_id)
    await session.execute(sessions.values(revoked_at=now))
    await end_tokens(session, user_id, now)
    await emit(session, SESSIONS_REVOKED, about_user(user_id))


async def revoke_other_sessions(
    session: AsyncSession, user_id: uuid.UUID, keep_session_id: uuid.UUID, now: datetime
) -> int:
    """Sign out the user's other browsers, every code not yet redeemed (this browser's too: a
    copy of its cookie may have fetched one) and every refresh and access token not issued
    through this one; returns how many sessions ended.

    The caller holds the user and the kept session, found live (``lock_user_signed_in``):
    of two browsers pressing "sign out everywhere else" at once, the later one, signed out
    by the earlier, must not sign it out in turn and leave nobody signed in.

    The tokens are found by user, not through the sessions that ended: an app signed
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
    await end_tokens(session, user_id, now, not_through=keep_session_id)
    # As after a password change that spares the browser: consumers keeping sessions of
    # their own end them, and the user's remaining session is theirs to keep checking.
    await emit(session, SESSIONS_REVOKED, about_user(user_id))
    return len(ended)
