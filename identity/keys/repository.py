"""All SQL about signing keys."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.keys.models import SigningKey


async def active_keys(session: AsyncSession) -> Sequence[SigningKey]:
    """Keys not retired, newest first: the first one signs, all are published."""
    result = await session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
    )
    return result.all()


async def add(session: AsyncSession, key: SigningKey) -> None:
    session.add(key)
    await session.flush()
