"""All SQL about authorization codes: issued by /authorize, redeemed once by /token."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, bindparam, case, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.core_insert import insert_of, insert_row
from identity.tokens.models import AuthorizationCode

_INSERT = insert_of(AuthorizationCode)

# How long past its expiry a redeemed code coming back still revokes what it issued (at
# least as long as that access token lives); housekeeping keeps it as long, no longer.
REPLAY_REVOKES_FOR = timedelta(days=1)


def replay_revokes(now: datetime) -> ColumnElement[bool]:
    """Whether a redeemed code presented again at ``now`` revokes what it issued."""
    return or_(
        AuthorizationCode.expires_at > now - REPLAY_REVOKES_FOR,
        AuthorizationCode.access_expires_at > now,
    )


async def insert_code(session: AsyncSession, code: AuthorizationCode) -> None:
    """Store a new code (see ``identity.db.core_insert``)."""
    await insert_row(session, _INSERT, code)


async def get_consumed_code(
    session: AsyncSession, code_hash: str, now: datetime
) -> AuthorizationCode | None:
    """The code when it was already redeemed and a replay revokes what it issued, read past
    any cached copy; past that window it is as unknown as once housekeeping deleted it."""
    code = await session.scalar(
        select(AuthorizationCode)
        .where(
            AuthorizationCode.code_hash == code_hash,
            AuthorizationCode.consumed_at.is_not(None),
            replay_revokes(now),
        )
        .execution_options(populate_existing=True)
    )
    return code


async def is_unredeemed(session: AsyncSession, code_hash: str, now: datetime) -> bool:
    """Whether the code is live and not redeemed yet: its app may still present it."""
    found = await session.scalar(
        select(AuthorizationCode.code_hash).where(
            AuthorizationCode.code_hash == code_hash,
            AuthorizationCode.consumed_at.is_(None),
            AuthorizationCode.expires_at > now,
        )
    )
    return found is not None


async def redeem_code(
    session: AsyncSession,
    code_hash: str,
    now: datetime,
    access_jti: str,
    access_expires_at: datetime,
) -> AuthorizationCode | None:
    """Mark a live code used and return it; None when it is unknown, expired or already used.

    The conditional UPDATE is the lock: of parallel redemptions exactly one matches. An
    expired code is left untouched, so ``get_consumed_code`` then tells a replay apart.
    ``access_jti`` and ``access_expires_at`` name the access token the redemption will
    issue, so that a replay can revoke it until it expires; if the redemption fails after
    all, its transaction rolls this back too.
    """
    result = await session.execute(
        _REDEEM,
        {"hash": code_hash, "now": now, "jti": access_jti, "access_expires": access_expires_at},
    )
    return result.scalar_one_or_none()


# Built once: run by every code redemption.
_REDEEM = (
    update(AuthorizationCode)
    .where(
        AuthorizationCode.code_hash == bindparam("hash"),
        AuthorizationCode.consumed_at.is_(None),
        AuthorizationCode.expires_at > bindparam("now"),
    )
    .values(
        consumed_at=bindparam("now"),
        access_jti=bindparam("jti"),
        access_expires_at=bindparam("access_expires"),
    )
    .returning(AuthorizationCode)
)


async def hand_over_redeemed(
    session: AsyncSession, user_id: uuid.UUID, from_session: uuid.UUID, to_session: uuid.UUID
) -> None:
    """The codes redeemed through browser session ``from_session`` count from now on as
    redeemed through ``to_session``, whose end then denies the access tokens they issued
    (a client without the refresh grant has no other record of them). Codes not redeemed
    stay with the session that ended, which refuses them."""
    await session.execute(
        update(AuthorizationCode)
        .where(
            AuthorizationCode.user_id == user_id,
            AuthorizationCode.session_id == from_session,
            AuthorizationCode.consumed_at.is_not(None),
        )
        .values(session_id=to_session)
        .execution_options(synchronize_session=False)
    )


async def end_unredeemed(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    *,
    account_id: uuid.UUID | None = None,
) -> None:
    """Expire the user's codes not yet redeemed, from every session, the one a password change
    keeps included: a copy of that session's cookie may have fetched one. ``account_id``: only
    those for that account (the user left it). A redemption under way holds its code's row,
    so this waits for it to commit; run it before revoking refresh tokens, which then see the
    one the redemption issued.

    Codes expired by ``now`` are written too (their expiry kept): a redemption judges expiry
    by its own ``now``, read as its request came in, which may be earlier. Passed over, such
    a code was redeemed without waiting for this transaction, by a redemption that read the
    membership or session before this one committed, and its token escaped the deny list."""
    where = [AuthorizationCode.user_id == user_id, AuthorizationCode.consumed_at.is_(None)]
    if account_id is not None:
        where.append(AuthorizationCode.account_id == account_id)
    ends = case((AuthorizationCode.expires_at > now, now), else_=AuthorizationCode.expires_at)
    await session.execute(update(AuthorizationCode).where(*where).values(expires_at=ends))
