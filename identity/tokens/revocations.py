"""All SQL about revoked access tokens: a deny list by ``jti``, each entry kept until the
token it names would have expired anyway (then housekeeping deletes it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.engine import Database
from identity.tokens.models import RevokedAccessToken


async def deny_issued(
    session: AsyncSession, issued: Iterable[tuple[str, datetime]], now: datetime
) -> None:
    """Deny the access tokens ``issued`` as (jti, expiry recorded at issue), each until it
    expires. Not until issue time plus IDENTITY_ACCESS_TOKEN_TTL: lowered since, that would
    let housekeeping delete the entry while its token still lives."""
    for jti, expires_at in issued:
        await revoke_access_token(session, jti, expires_at, now)


async def revoke_access_token(
    session: AsyncSession, jti: str, expires_at: datetime, now: datetime
) -> None:
    """Deny ``jti`` until ``expires_at``; revoking twice is harmless."""
    if expires_at <= now:
        return
    # Parallel revocations of one token (replays of one code) must not collide on the key.
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(RevokedAccessToken)
        .values(jti=jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )


# Built once: asked on every introspection, where building the expression each time cost
# about as much as running it.
_IS_REVOKED = select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == bindparam("jti"))


async def is_revoked(reader: AsyncSession | Database, jti: str) -> bool:
    """Inside a unit of work (a session), or as a lone read (``Database.scalar``), which is
    how introspection asks: it needs nothing else from the database.
    """
    return await reader.scalar(_IS_REVOKED, {"jti": jti}) is not None
