"""Browser sessions: establish at sign-in, look up per request, end at logout.

The cookie holds a random token; the database keeps only its SHA-256, so a leaked table
cannot be replayed as cookies. Every sign-in makes a new token and revokes the one the
browser brought (session fixation: a token planted before sign-in is worthless after it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from identity.crypto import digest, random_token
from identity.sessions import repository
from identity.sessions.models import BrowserSession


@dataclass(frozen=True, slots=True)
class Established:
    token: str
    session: BrowserSession


async def establish(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amr: list[str],
    now: datetime,
    ttl: int,
    previous_token: str | None,
    ip: str | None,
    user_agent: str | None,
) -> Established:
    if previous_token:
        await repository.revoke(session, digest(previous_token), now)
    token = random_token()
    browser_session = BrowserSession(
        id=uuid.uuid4(),
        token_hash=digest(token),
        user_id=user_id,
        amr=amr,
        auth_time=now,
        created_at=now,
        last_seen_at=now,
        expires_at=now + timedelta(seconds=ttl),
        ip=ip[:45] if ip else None,
        user_agent=user_agent[:300] if user_agent else None,
        revoked_at=None,
    )
    await repository.add(session, browser_session)
    return Established(token, browser_session)


async def new_token(session: AsyncSession, session_id: uuid.UUID) -> str | None:
    """A fresh token for a live session, the one it had no longer valid: after a password
    change, whoever copied this browser's cookie is signed out too. None if it has ended."""
    token = random_token()
    return token if await repository.replace_token(session, session_id, digest(token)) else None


async def current(session: AsyncSession, token: str | None, now: datetime) -> BrowserSession | None:
    if not token:
        return None
    return await repository.find_live(session, digest(token), now)


async def end(session: AsyncSession, token: str | None, now: datetime) -> uuid.UUID | None:
    """End the browser's session; returns the id of the session ended, if there was one."""
    if not token:
        return None
    return await repository.revoke(session, digest(token), now)
