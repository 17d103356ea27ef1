"""Staff's look-ups across the installation: a user by id, users by address, every account."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.emails import searched_forms
from identity.accounts.models import User
from identity.db.paging import Page
from identity.errors import NotFound
from identity.permissions import repository
from identity.permissions.models import Account


async def user(session: AsyncSession, user_id: uuid.UUID) -> User:
    found = await repository.get_user(session, user_id)
    if found is None:
        raise NotFound("No such user.")
    return found


async def list_users(
    session: AsyncSession, email_contains: str | None, page: Page
) -> Sequence[User]:
    # The part looked for is put as addresses are stored (normalise_email): LIKE ignores case
    # on SQLite but not on PostgreSQL, and a domain is stored in IDNA.
    forms = searched_forms(email_contains) if email_contains else []
    return await repository.list_users(session, forms, page)


async def list_accounts(session: AsyncSession, page: Page) -> Sequence[Account]:
    return await repository.list_accounts(session, page)
