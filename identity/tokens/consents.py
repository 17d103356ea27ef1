"""All SQL about consents: which scopes a user has granted a client."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.row_locks import lock_rows
from identity.tokens.models import Consent


async def granted_scopes(session: AsyncSession, user_id: uuid.UUID, client_id: str) -> set[str]:
    scope = await session.scalar(
        select(Consent.scope).where(Consent.user_id == user_id, Consent.client_id == client_id)
    )
    return set(scope.split()) if scope else set()


async def remember(
    session: AsyncSession,
    user_id: uuid.UUID,
    client_id: str,
    scopes: Iterable[str],
    now: datetime,
) -> None:
    """Add ``scopes`` to what the user has granted the client (earlier grants stay)."""
    where = (Consent.user_id == user_id, Consent.client_id == client_id)
    query = select(Consent).where(*where)
    # The union is read, then written: two consents at once (two tabs) each stored theirs
    # over the other's. A SELECT ... FOR UPDATE holds nothing on SQLite before the
    # transaction's first write; the no-op write holds the row, or SQLite's write lock.
    await lock_rows(session, Consent.scope, *where)
    consent = await session.scalar(query)
    if consent is None:
        try:
            # A savepoint: if a parallel consent inserted the row first, update that one.
            async with session.begin_nested():
                session.add(
                    Consent(
                        user_id=user_id,
                        client_id=client_id,
                        scope=" ".join(sorted(set(scopes))),
                        created_at=now,
                        updated_at=now,
                    )
                )
            return
        except IntegrityError:
            consent = await session.scalar(query.with_for_update())
            if consent is None:
                raise
    consent.scope = " ".join(sorted(set(consent.scope.split()) | set(scopes)))
    consent.updated_at = now
    await session.flush()
