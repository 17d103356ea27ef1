"""All SQL about signing keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import false, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.row_locks import lock_rows
from identity.keys.models import SigningKey


async def active_keys(session: AsyncSession) -> Sequence[SigningKey]:
    """Keys not retired, newest first: all are published (service.signer picks the one
    that signs)."""
    result = await session.scalars(
        select(SigningKey)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.created_at.desc(), SigningKey.kid)
    )
    return result.all()


# The key of the PostgreSQL advisory lock below; any constant no other lock uses.
FIRST_KEY_LOCK = 0x6B657973  # "keys"


async def hold_first_key(session: AsyncSession) -> None:
    """Until the transaction ends, be the only one looking for a first key to make.

    Processes started together on an empty database each found no key and each made one;
    with their clocks apart, one signed with the key another would publish only at its
    next reread. There is no row yet to lock: PostgreSQL waits on an advisory lock, SQLite
    on its single write lock, which any write takes, even one that matches no row.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(FIRST_KEY_LOCK)))
    else:
        await lock_rows(session, SigningKey.retired_at, false())


async def add(session: AsyncSession, key: SigningKey) -> None:
    session.add(key)
    await session.flush()


async def hold_active(session: AsyncSession) -> None:
    """Lock every active key until the caller's transaction ends (PostgreSQL), in one order.

    Retiring one key and then counting those left is safe only if nobody retires another
    in between: two retirements of the last two keys, each counting the other's key as
    still there, left none. The second retirement now waits here and then counts after
    the first. SQLite, one writer at a time, needs no lock.
    """
    await session.execute(
        select(SigningKey.kid)
        .where(SigningKey.retired_at.is_(None))
        .order_by(SigningKey.kid)
        .with_for_update()
    )


async def retire(session: AsyncSession, kid: str, now: datetime) -> bool:
    """Take ``kid`` out of service; False when no active key has that kid."""
    result = await session.execute(
        update(SigningKey)
        .where(SigningKey.kid == kid, SigningKey.retired_at.is_(None))
        .values(retired_at=now)
        .returning(SigningKey.kid)
    )
    return result.scalar_one_or_none() is not None
