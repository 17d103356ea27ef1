"""Sign a user out everywhere: every browser session and every refresh token, in one place.

After a password reset (and anything else that means "whoever held a session may not be
the owner"), nothing issued before may go on working. Access tokens are short-lived JWTs
and expire on their own; refresh tokens and sessions are revoked here.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.sessions.models import BrowserSession
from identity.tokens.models import RefreshToken


async def revoke_all_for_user(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(BrowserSession)
        .where(BrowserSession.user_id == user_id, BrowserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
