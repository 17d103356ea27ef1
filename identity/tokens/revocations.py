"""All SQL about revoked access tokens: a deny list by ``jti``, each entry kept until the
token it names would have expired anyway (then housekeeping deletes it).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, CompoundSelect, Select, bindparam, select, union_all
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.engine import Database
from identity.tokens.models import AuthorizationCode, RefreshToken, RevokedAccessToken


async def deny_recorded(
    session: AsyncSession,
    now: datetime,
    refresh_tokens: ColumnElement[bool],
    codes: ColumnElement[bool] | None = None,
) -> None:
    """Deny, in one statement however many there are, the unexpired access tokens recorded
    (``access_jti``, with the expiry they were issued with) by the refresh tokens matching
    ``refresh_tokens`` and the redeemed codes matching ``codes``: each refresh token records
    the access token issued with it, each code the one its redemption issued, which is the
    only record for a client without the refresh grant.

    Run it after ``refresh.revoke_matching`` has revoked those refresh tokens: no rotation
    of theirs is under way then, so none adds an access token this statement misses.
    """
    recorded: Select[Any] | CompoundSelect[Any] = select(
        RefreshToken.access_jti, RefreshToken.access_expires_at
    ).where(
        refresh_tokens,
        RefreshToken.access_expires_at > now,
        RefreshToken.access_jti.is_not(None),
    )
    if codes is not None:
        recorded = union_all(
            recorded,
            select(AuthorizationCode.access_jti, AuthorizationCode.access_expires_at).where(
                codes,
                AuthorizationCode.access_expires_at > now,
                AuthorizationCode.access_jti.is_not(None),
            ),
        )
    await session.execute(
        _dialect(session)
        .insert(RevokedAccessToken)
        .from_select(["jti", "expires_at"], recorded)
        # A code's token is its refresh token's too, and some may be denied already.
        .on_conflict_do_nothing(index_elements=["jti"])
    )


async def revoke_access_token(
    session: AsyncSession, jti: str, expires_at: datetime, now: datetime
) -> None:
    """Deny ``jti`` until ``expires_at``; revoking twice is harmless."""
    if expires_at <= now:
        return
    # Parallel revocations of one token (replays of one code) must not collide on the key.
    await session.execute(
        _dialect(session)
        .insert(RevokedAccessToken)
        .values(jti=jti, expires_at=expires_at)
        .on_conflict_do_nothing(index_elements=["jti"])
    )


def _dialect(session: AsyncSession) -> Any:
    """The dialect module whose ``insert`` has ON CONFLICT DO NOTHING for this database."""
    return postgresql if session.get_bind().dialect.name == "postgresql" else sqlite


# Built once: asked on every introspection, where building the expression each time cost
# about as much as running it.
_IS_REVOKED = select(RevokedAccessToken.jti).where(RevokedAccessToken.jti == bindparam("jti"))


async def is_revoked(reader: AsyncSession | Database, jti: str) -> bool:
    """Inside a unit of work (a session), or as a lone read (``Database.scalar``), which is
    how introspection asks: it needs nothing else from the database.
    """
    return await reader.scalar(_IS_REVOKED, {"jti": jti}) is not None
