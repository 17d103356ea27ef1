"""All SQL of account recovery: reset tokens and the sign-in email change."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import PasswordCredential, PasswordResetToken, User
from identity.sessions.models import BrowserSession


class EmailTaken(Exception):
    """Another user holds the address (the unique index said so)."""


async def insert_token(session: AsyncSession, token: PasswordResetToken) -> None:
    session.add(token)
    await session.flush()


async def consume_token(
    session: AsyncSession, token_hash: str, now: datetime
) -> PasswordResetToken | None:
    """Mark the token used if it is unused and unexpired, and return it; None otherwise.

    The conditions sit in the UPDATE itself, so of racing callers exactly one gets a row:
    the others wait for its row lock and then find ``used_at`` set.
    """
    result = await session.execute(
        update(PasswordResetToken)
        .where(
            PasswordResetToken.token_hash == token_hash,
            PasswordResetToken.used_at.is_(None),
            PasswordResetToken.expires_at > now,
        )
        .values(used_at=now)
        .returning(PasswordResetToken)
    )
    return result.scalar_one_or_none()


async def find_token(session: AsyncSession, token_hash: str) -> PasswordResetToken | None:
    return await session.scalar(
        select(PasswordResetToken).where(PasswordResetToken.token_hash == token_hash)
    )


async def user_with_credential(
    session: AsyncSession, user_id: uuid.UUID
) -> tuple[User, PasswordCredential | None] | None:
    row = (
        await session.execute(
            select(User, PasswordCredential)
            .outerjoin(PasswordCredential, PasswordCredential.user_id == User.id)
            .where(User.id == user_id)
            # As stored now: the session may hold the user as read before a lock was taken.
            .execution_options(populate_existing=True)
        )
    ).first()
    return (row[0], row[1]) if row else None


class AskingAs(NamedTuple):
    email: str
    email_change_epoch: int
    # The language the user chose, if any.
    locale: str | None


async def asking_as(
    session: AsyncSession, user_id: uuid.UUID, browser_id: uuid.UUID, now: datetime
) -> AskingAs | None:
    """The user's sign-in email, ``email_change_epoch`` and language, read in one statement
    with the asking browser session found live and the user enabled; None otherwise.

    One statement, one snapshot: a disable that committed before it is seen (its user
    disabled, its sessions ended), and one that commits after it raises the count read here.
    """
    row = (
        await session.execute(
            select(User.email, User.email_change_epoch, User.locale)
            .join(BrowserSession, BrowserSession.user_id == User.id)
            .where(
                User.id == user_id,
                User.disabled.is_(False),
                BrowserSession.id == browser_id,
                BrowserSession.revoked_at.is_(None),
                BrowserSession.expires_at > now,
            )
        )
    ).first()
    return AskingAs(row.email, row.email_change_epoch, row.locale) if row else None


async def email_now(session: AsyncSession, user_id: uuid.UUID) -> str | None:
    """The user's sign-in email as last committed. On PostgreSQL the row is share-locked
    until the caller's transaction ends: a change in progress is waited for, and one that
    starts later waits for the caller (SQLite, one writer at a time, needs no lock)."""
    return await session.scalar(
        select(User.email).where(User.id == user_id).with_for_update(read=True)
    )


async def change_email(session: AsyncSession, user: User, new_email: str, now: datetime) -> None:
    """Make ``new_email`` the sign-in address: its owner proved it by a link, or staff vouch.

    The reset links mailed before, to the old address, end with it (marked used): whoever
    reads that mailbox, perhaps the reason for the change, must not take the account back
    with one. Links issued after this in the same transaction are not touched. So do the
    email change links asked for before (``User.email_change_epoch``), even once the user is
    moved back to the address they were asked from.
    """
    try:
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(
                email=new_email,
                email_verified=True,
                email_change_epoch=User.email_change_epoch + 1,
            )
            .execution_options(synchronize_session=False)
        )
    except IntegrityError:
        # The caller's transaction is now unusable: it must end (rolled back) with this error.
        raise EmailTaken from None
    user.email, user.email_verified = new_email, True
    await end_reset_tokens(session, user.id, now)


async def end_reset_tokens(session: AsyncSession, user_id: uuid.UUID, now: datetime) -> None:
    """Mark the user's unused reset tokens used: their links stop working for good."""
    await session.execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user_id, PasswordResetToken.used_at.is_(None))
        .values(used_at=now)
    )
