"""All SQL about OAuth clients."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, false, select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient
from identity.db.paging import Page, paged
from identity.db.row_locks import lock_statement


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


async def hold_enabled(session: AsyncSession, client_id: str) -> bool:
    """Whether the client is registered and enabled, read as the first statement of a grant
    that spends a code or refresh token and held until the transaction ends, so a disable or
    delete is either seen here or sees what this grant issued, to deny it.

    PostgreSQL: FOR SHARE waits for a change under way (it holds FOR NO KEY UPDATE), and a
    later change waits for this grant. Taken before the code or token, as the changes take
    the client before them. SQLite: a write matching no row first takes its one write lock,
    which a change needs too, and the read then sees every change committed.
    """
    if session.get_bind().dialect.name != "postgresql":
        await session.execute(_WRITE_LOCK)
    return await session.scalar(_DISABLED, {"client_id": client_id}) is False


# Built once: asked by every grant that spends a code or refresh token.
_WRITE_LOCK = lock_statement(OAuthClient.name, false())
_DISABLED = (
    select(OAuthClient.disabled)
    .where(OAuthClient.client_id == bindparam("client_id"))
    .with_for_update(read=True)
)


async def list_clients(session: AsyncSession, page: Page) -> Sequence[OAuthClient]:
    statement = select(OAuthClient).order_by(OAuthClient.created_at, OAuthClient.client_id)
    return (await session.scalars(paged(statement, page))).all()


async def add_client(session: AsyncSession, client: OAuthClient) -> None:
    session.add(client)
    await session.flush()


async def delete_client(session: AsyncSession, client_id: str) -> None:
    """Its codes, refresh tokens and consents go with it (ON DELETE CASCADE)."""
    await session.execute(delete(OAuthClient).where(OAuthClient.client_id == client_id))
