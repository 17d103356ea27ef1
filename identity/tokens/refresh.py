"""All SQL about refresh tokens: issue, rotate once, revoke by family (with the access
tokens issued alongside)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase

from identity.tokens import revocations
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
        .where(*_live(token_hash, client_id, now))
        .values(rotated_at=now)
        .returning(RefreshToken)
    )
    return result.scalar_one_or_none()


async def live_refresh_token(
    session: AsyncSession, token_hash: str, client_id: str, now: datetime
) -> RefreshToken | None:
    """The token ``rotate_refresh_token`` would rotate now, left as it is (introspection)."""
    return await session.scalar(
        select(RefreshToken)
        .where(*_live(token_hash, client_id, now))
        .execution_options(populate_existing=True)
    )


def _live(token_hash: str, client_id: str, now: datetime) -> tuple[ColumnElement[bool], ...]:
    """The token ``token_hash`` of ``client_id``, neither replaced, revoked nor expired."""
    return (
        RefreshToken.token_hash == token_hash,
        RefreshToken.client_id == client_id,
        RefreshToken.rotated_at.is_(None),
        RefreshToken.revoked_at.is_(None),
        RefreshToken.expires_at > now,
    )


async def hand_over(
    session: AsyncSession,
    user_id: uuid.UUID,
    from_session: uuid.UUID,
    to_session: uuid.UUID,
    sid: uuid.UUID,
) -> None:
    """The refresh tokens issued through browser session ``from_session`` count from now on
    as issued through ``to_session``, whose ``sid`` is ``sid``, and which ends them when it
    ends.

    ``to_session`` keeps ``from_session``'s sid, so tokens holding one keep it. Those without
    one come from a session begun before sessions had a sid (migration 0010), which
    ``to_session`` has replaced with a fresh one: their ID tokens name it from now on.

    A rotation under way inserts the next token with the old session: ``_until_settled``
    moves that one too.
    """
    await _until_settled(
        session,
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.session_id == from_session)
        .values(session_id=to_session, sid=func.coalesce(RefreshToken.sid, sid))
        .returning(RefreshToken.id),
    )


async def _until_settled(session: AsyncSession, statement: UpdateBase) -> list[Row[Any]]:
    """The rows ``statement`` (an UPDATE ... RETURNING of refresh tokens) changes, run again
    until it changes none.

    A rotation holds the row it rotates and inserts the next token (same family, code,
    session and user) in its own transaction. One UPDATE waits for that row, but on
    PostgreSQL (READ COMMITTED) it then revisits only the rows its statement began with:
    the token inserted meanwhile is not among them and would be left out. On SQLite, one
    writer at a time, the second run finds nothing.
    """
    statement = statement.execution_options(synchronize_session=False)
    changed: list[Row[Any]] = []
    while rows := (await session.execute(statement)).all():
        changed += rows
    return changed


async def find_refresh_token(
    session: AsyncSession, token_hash: str, now: datetime
) -> RefreshToken | None:
    """The token, in whatever state, until it expires: after that it is as unknown as once
    housekeeping has deleted it, whenever that run comes."""
    return await session.scalar(
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.expires_at > now)
        .execution_options(populate_existing=True)
    )


async def revoke_matching(
    session: AsyncSession, now: datetime, *conditions: ColumnElement[bool]
) -> None:
    """Revoke every live refresh token matching ``conditions``, those that rotations
    running right now are issuing included. Every revocation goes through here; the access
    tokens issued with them are denied by ``revocations.deny_recorded``, run after this.

    The UPDATE is repeated until it finds nothing live (``_until_settled``). A rotation
    starts only from a live token, which the last UPDATE would have found and waited for;
    so once one finds none, no rotation of these tokens is under way, and later ones find
    their token revoked.
    """
    await _until_settled(
        session,
        update(RefreshToken)
        .where(*conditions, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
        .returning(RefreshToken.id),
    )


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    await _revoke_grant(session, now, RefreshToken.family_id == family_id)


async def revoke_issued_from_code(session: AsyncSession, code_hash: str, now: datetime) -> None:
    await _revoke_grant(session, now, RefreshToken.code_hash == code_hash)


async def _revoke_grant(
    session: AsyncSession, now: datetime, condition: ColumnElement[bool]
) -> None:
    """A leaked or revoked grant stops working as a whole (RFC 9700 §4.5 and §4.14.2,
    RFC 7009 §2.1): its refresh tokens, and the access tokens issued with them, which would
    otherwise stay live until they expire."""
    await revoke_matching(session, now, condition)
    await revocations.deny_recorded(session, now, condition)
