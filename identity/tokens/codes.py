"""All SQL about authorization codes: issued by /authorize, redeemed once by /token."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.tokens.models import AuthorizationCode


async def insert_code(session: AsyncSession, code: AuthorizationCode) -> None:
    session.add(code)
    await session.flush()


async def consume_code(
    session: AsyncSession, code_hash: str, now: datetime
) -> AuthorizationCode | None:
    """Mark the code used and return it; None if unknown, expired or already used.

    A single conditional UPDATE is the lock: of parallel redemptions exactly one matches
    ``consumed_at IS NULL``, on SQLite and PostgreSQL alike.
    """
    result = await session.execute(
        update(AuthorizationCode)
        .where(AuthorizationCode.code_hash == code_hash, AuthorizationCode.consumed_at.is_(None))
        .values(consumed_at=now)
        .returning(AuthorizationCode)
    )
    code = result.scalar_one_or_none()
    if code is None or code.expires_at <= now:
        return None
    return code


async def was_consumed(session: AsyncSession, code_hash: str) -> bool:
    """True when the code exists and was already redeemed: a replay, which revokes its tokens."""
    code = await session.get(AuthorizationCode, code_hash)
    return code is not None and code.consumed_at is not None
