"""All SQL about OAuth clients."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    """The client, or None when unknown or disabled."""
    client = await session.get(OAuthClient, client_id)
    return None if client is None or client.disabled else client


async def add_client(session: AsyncSession, client: OAuthClient) -> None:
    session.add(client)
    await session.flush()
