"""All SQL about refresh tokens: issue, rotate once, revoke by family."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.tokens.models import RefreshToken


async def insert_refresh_token(session: AsyncSession, token: RefreshToken) -> None:
    session.add(token)
    await session.flush()


async def rotate_refresh_token(
    session: AsyncSession, token_hash: str, client_id: str, now: datetime
) -> RefreshToken | None:
    """Mark the token rotated and return it, if it is live and belongs to ``client_id``.

    The conditional UPDATE is the lock: of parallel uses of one token exactly one wins.
    """
    result = await session.execute(
        update(RefreshToken)
        .where(
            RefreshToken.token_hash == token_hash,
            RefreshToken.client_id == client_id,
            RefreshToken.rotated_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(rotated_at=now)
        .returning(RefreshToken)
    )
    return result.scalar_one_or_none()


async def find_refresh_token(session: AsyncSession, token_hash: str) -> RefreshToken | None:
    return await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_hash)
        .execution_options(populate_existing=True)
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def revoke_issued_from_code(session: AsyncSession, code_hash: str, now: datetime) -> None:
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.code_hash == code_hash, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
