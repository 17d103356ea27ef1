"""All SQL about OAuth clients."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    """The client, or None when unknown or disabled."""
    client = await session.get(OAuthClient, client_id)
    return None if client is None or client.disabled else client


async def find_client(
    session: AsyncSession, client_id: str, *, for_update: bool = False
) -> OAuthClient | None:
    """The client, disabled or not. ``for_update`` locks it until the transaction ends, so
    two changes to one client apply one after the other, each to what the other left.

    The lock is PostgreSQL's FOR NO KEY UPDATE, which lets rows referring to the client be
    inserted meanwhile: a code redemption inserting a refresh token would otherwise wait
    for the change, and deadlock with a delete that waits for the redemption's code.
    """
    query = select(OAuthClient).where(OAuthClient.client_id == client_id)
    if for_update:
        query = query.with_for_update(key_share=True)
    return await session.scalar(query.execution_options(populate_existing=True))


async def list_clients(session: AsyncSession, offset: int, limit: int) -> Sequence[OAuthClient]:
    result = await session.scalars(
        select(OAuthClient)
        .order_by(OAuthClient.created_at, OAuthClient.client_id)
        .offset(offset)
        .limit(limit)
    )
    return result.all()


async def add_client(session: AsyncSession, client: OAuthClient) -> None:
    session.add(client)
    await session.flush()


async def delete_client(session: AsyncSession, client_id: str) -> None:
    """Its codes, refresh tokens and consents go with it (ON DELETE CASCADE)."""
    await session.execute(delete(OAuthClient).where(OAuthClient.client_id == client_id))
