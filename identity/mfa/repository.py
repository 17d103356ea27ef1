"""All SQL of second factors: TOTP secrets and recovery codes."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import bindparam, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.row_locks import lock_rows
from identity.mfa.models import RecoveryCode, TotpSecret


async def get_secret(session: AsyncSession, user_id: uuid.UUID) -> TotpSecret | None:
    return await session.scalar(select(TotpSecret).where(TotpSecret.user_id == user_id))


# Built once: asked on every sign-in.
_CONFIRMED = select(TotpSecret.confirmed_at).where(TotpSecret.user_id == bindparam("user_id"))


async def is_confirmed(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Whether the user has a secret that a first code has confirmed."""
    return await session.scalar(_CONFIRMED, {"user_id": user_id}) is not None


async def hold_secret(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Hold the user's secret row until the transaction ends, as the first statement of a
    change to a confirmed factor's codes (replacing them, turning the factor off).

    Such changes then run one at a time and each sees what the one before it committed: two
    replacements at once leave one set of ten, not twenty. And each takes the secret before
    any code, the order that removing the factor follows too: turning off with a recovery
    code (which holds that code's row) beside a replacement (which deletes every code)
    would otherwise deadlock, each holding what the other waits for.
    """
    await lock_rows(session, TotpSecret.created_at, TotpSecret.user_id == user_id)


async def save_pending(
    session: AsyncSession, user_id: uuid.UUID, secret_encrypted: str, now: datetime
) -> bool:
    """A new unconfirmed secret, replacing an earlier unconfirmed one (a restarted
    enrolment); a confirmed secret is never replaced: False then.

    One upsert, not a delete and an insert: two set-ups started at once (a double click)
    both deleted nothing and the second insert broke the primary key. Now the later one
    waits for the earlier and replaces its secret, and the last one shown is the one kept.
    """
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(TotpSecret).values(
        user_id=user_id, secret_encrypted=secret_encrypted, created_at=now
    )
    stored = await session.scalar(
        insert.on_conflict_do_update(
            index_elements=[TotpSecret.user_id],
            set_={"secret_encrypted": secret_encrypted, "created_at": now},
            where=TotpSecret.confirmed_at.is_(None),
        ).returning(TotpSecret.user_id)
    )
    return stored is not None


async def confirm(
    session: AsyncSession, user_id: uuid.UUID, secret_encrypted: str, step: int, now: datetime
) -> bool:
    """Confirm the pending secret ``secret_encrypted``, spending the step of the code that
    confirmed it. False when a restarted set-up has replaced it since its code was checked:
    the replacement's secret is proved by no code, and the app holds the other one."""
    result = await session.execute(
        update(TotpSecret)
        .where(
            TotpSecret.user_id == user_id,
            TotpSecret.confirmed_at.is_(None),
            TotpSecret.secret_encrypted == secret_encrypted,
        )
        .values(confirmed_at=now, last_used_step=step)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def spend_step(session: AsyncSession, user_id: uuid.UUID, step: int) -> bool:
    """Accept the code of ``step`` once: True only if no code of this step or a later one
    was accepted before. The condition is in the UPDATE, so of two racing uses one wins."""
    result = await session.execute(
        update(TotpSecret)
        .where(
            TotpSecret.user_id == user_id,
            TotpSecret.confirmed_at.is_not(None),
            or_(TotpSecret.last_used_step.is_(None), TotpSecret.last_used_step < step),
        )
        .values(last_used_step=step)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def replace_recovery_codes(
    session: AsyncSession, user_id: uuid.UUID, code_hashes: Iterable[str], now: datetime
) -> None:
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    session.add_all(
        RecoveryCode(user_id=user_id, code_hash=code_hash, created_at=now)
        for code_hash in code_hashes
    )
    await session.flush()


async def spend_recovery_code(
    session: AsyncSession, user_id: uuid.UUID, code_hash: str, now: datetime
) -> bool:
    """Use a recovery code once; of two racing uses one wins."""
    result = await session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user_id,
            RecoveryCode.code_hash == code_hash,
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=now)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def unused_recovery_codes(session: AsyncSession, user_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
    )
    return count or 0


async def remove(session: AsyncSession, user_id: uuid.UUID) -> bool:
    """Remove the second factor and its recovery codes; True if one was confirmed."""
    result = await session.execute(
        delete(TotpSecret).where(TotpSecret.user_id == user_id).returning(TotpSecret.confirmed_at)
    )
    confirmed_at = result.scalar_one_or_none()
    await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
    return confirmed_at is not None
