"""All SQL about everything issued to one client at once: stopping its access tokens when it
is disabled, and ending its codes and refresh tokens before it is deleted."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.tokens import revocations
from identity.tokens.models import AuthorizationCode, RefreshToken
from identity.tokens.refresh import revoke_matching


async def deny_access_tokens(session: AsyncSession, client_id: str, now: datetime) -> None:
    """Put the client's unexpired access tokens on the deny list: those a code redemption or
    a refresh token recorded. client_credentials tokens are recorded nowhere, as that grant
    writes nothing: the client's ``own_tokens_not_before`` refuses them (``update_client``).
    """
    await revocations.deny_recorded(
        session,
        now,
        RefreshToken.client_id == client_id,
        AuthorizationCode.client_id == client_id,
    )


async def end_grants(session: AsyncSession, client_id: str, now: datetime) -> None:
    """Before the client's row is deleted (its codes, refresh tokens and consents go with it,
    ON DELETE CASCADE): wait out what is being issued, then deny its access tokens.

    A code redemption or refresh rotation under way holds its code or token row and then
    inserts a refresh token, which needs the client row; a cascade that held the client row
    and waited for that code or token would deadlock with it on PostgreSQL. So the codes
    are locked first (waiting for redemptions), then every refresh token revoked, with
    ``revoke_matching`` waiting for rotations and finding the tokens they add; once both are
    done nothing of the client is in flight, and its recorded access tokens are known.
    """
    await session.execute(
        select(AuthorizationCode.code_hash)
        .where(AuthorizationCode.client_id == client_id)
        .with_for_update()
    )
    await revoke_matching(session, now, RefreshToken.client_id == client_id)
    await deny_access_tokens(session, client_id, now)
