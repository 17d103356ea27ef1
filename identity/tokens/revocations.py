"""All SQL about revoked access tokens: a deny list by ``jti``, each entry kept until the
token it names would have expired anyway.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from identity.tokens.models import RevokedAccessToken


async def revoke_access_token(
    session: AsyncSession, jti: str, expires_at: datetime, now: datetime
) -> None:
    """Deny ``jti`` until ``expires_at``; revoking twice is harmless. Prunes expired entries."""
    await prune(session, now)
    if expires_at <= now:
        return
    # Parallel revocations of one token (replays of one code) must not collide on the key.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(RevokedAccessToken)
        .values(jti=jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )


async def is_revoked(session: AsyncSession, jti: str) -> bool:
    found = await session.scalar(
        select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == jti)
    )
    return found is not None


async def prune(session: AsyncSession, now: datetime) -> None:
    """Forget entries whose tokens have expired: nobody can present those any more."""
    await session.execute(delete(RevokedAccessToken).where(RevokedAccessToken.expires_at <= now))
