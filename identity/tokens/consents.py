"""All SQL about consents: which scopes a user has granted a client, and for which of their
customer accounts."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable
from datetime import datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.row_locks import lock_rows
from identity.tokens.models import Consent, ConsentAccount


def _of(user_id: uuid.UUID, client_id: str) -> tuple[ColumnElement[bool], ...]:
    return (Consent.user_id == user_id, Consent.client_id == client_id)


async def covers(
    session: AsyncSession,
    user_id: uuid.UUID,
    client_id: str,
    scopes: Collection[str],
    account_id: uuid.UUID | None,
) -> bool:
    """Whether the user has granted the client ``scopes``, and ``account_id`` too when the
    tokens are for an account (they carry its permissions). Tokens without an account need
    no account consent."""
    query = select(Consent.scope).where(*_of(user_id, client_id))
    if account_id is not None:
        query = query.join(
            ConsentAccount,
            (ConsentAccount.consent_id == Consent.id) & (ConsentAccount.account_id == account_id),
        )
    scope = await session.scalar(query)
    if scope is None and account_id is not None:
        return False
    return set(scopes) <= set((scope or "").split())


async def remember(
    session: AsyncSession,
    user_id: uuid.UUID,
    client_id: str,
    scopes: Iterable[str],
    now: datetime,
    *,
    account_id: uuid.UUID | None,
) -> None:
    """Add ``scopes`` and ``account_id`` (None: tokens without an account) to what the user
    has granted the client (earlier grants stay)."""
    adding = set(scopes)
    # The union is read, then written: two consents at once (two tabs) each stored theirs
    # over the other's. A SELECT ... FOR UPDATE holds nothing on SQLite before the
    # transaction's first write; the no-op write holds the row, or SQLite's write lock.
    # The accounts are read and added under the same lock.
    await lock_rows(session, Consent.scope, *_of(user_id, client_id))
    consent = await session.scalar(select(Consent).where(*_of(user_id, client_id)))
    if consent is None:
        consent = await _inserted(session, user_id, client_id, adding, now)
    consent.scope = " ".join(sorted(set(consent.scope.split()) | adding))
    consent.updated_at = now
    await session.flush()
    if account_id is not None:
        await _add_account(session, consent.id, account_id)


async def _inserted(
    session: AsyncSession, user_id: uuid.UUID, client_id: str, scopes: set[str], now: datetime
) -> Consent:
    """The consent row, new with ``scopes``; or the one a parallel consent inserted first,
    locked."""
    consent = Consent(
        user_id=user_id,
        client_id=client_id,
        scope=" ".join(sorted(scopes)),
        created_at=now,
        updated_at=now,
    )
    try:
        # A savepoint: if a parallel consent inserted the row first, update that one.
        async with session.begin_nested():
            session.add(consent)
        return consent
    except IntegrityError:
        raced = await session.scalar(
            select(Consent).where(*_of(user_id, client_id)).with_for_update()
        )
        if raced is None:
            raise
        return raced


async def _add_account(session: AsyncSession, consent_id: uuid.UUID, account_id: uuid.UUID) -> None:
    known = await session.scalar(
        select(ConsentAccount.account_id).where(
            ConsentAccount.consent_id == consent_id, ConsentAccount.account_id == account_id
        )
    )
    if known is None:
        session.add(ConsentAccount(consent_id=consent_id, account_id=account_id))
        await session.flush()
