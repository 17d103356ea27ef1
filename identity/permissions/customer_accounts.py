"""Customer accounts: reading them, the accounts a user belongs to, creating and renaming."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.db.paging import Page
from identity.display_names import display_name
from identity.errors import NotFound
from identity.permissions import repository
from identity.permissions.catalogue import Catalogue, installed, invalid_field, or_installed
from identity.permissions.effective import effective_of
from identity.permissions.members import add_member, check_can_own
from identity.permissions.models import Account

MAX_ACCOUNT_NAME = 200


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> Account:
    account = await repository.get_account(session, account_id)
    if account is None:
        raise NotFound("No such account.")
    return account


@dataclass(frozen=True, slots=True)
class AccountChoice:
    """One account a user belongs to, as an account picker lists it."""

    account: Account
    owner: bool
    permissions: frozenset[str]


async def accounts_of(
    session: AsyncSession,
    user_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue | None = None,
    page: Page | None = None,
) -> list[AccountChoice]:
    """The accounts a user belongs to, by name, with their effective permissions in each;
    all of them without a ``page``."""
    rows = await repository.accounts_of_user(session, user_id, page)
    effective = await effective_of(session, [m for _, m in rows], now, or_installed(catalogue))
    return [AccountChoice(a, m.is_owner, effective[m.id]) for a, m in rows]


async def accounts_listed_for(session: AsyncSession, user_id: uuid.UUID) -> list[Account]:
    """The accounts a user belongs to, by name, without the permissions ``accounts_of``
    works out: the security page lists them to leave."""
    return [account for account, _ in await repository.accounts_of_user(session, user_id)]


async def account_ids_of(session: AsyncSession, user_id: uuid.UUID) -> set[uuid.UUID]:
    """The accounts a user belongs to, by id alone: all that choosing one at sign-in needs,
    read on every authorization without the permissions ``accounts_of`` works out."""
    return await repository.account_ids_of_user(session, user_id)


async def create_account(
    session: AsyncSession, actor: Actor, *, name: str, owner_user_id: uuid.UUID, now: datetime
) -> Account:
    name = display_name(name, MAX_ACCOUNT_NAME)
    owner = await repository.get_user(session, owner_user_id)
    if owner is None:
        raise invalid_field("owner_user_id", "No such user.")
    check_can_own(owner)
    account = Account(name=name, created_at=now)
    await repository.insert_account(session, account)
    await record_as(
        session,
        actor,
        "account.created",
        account_id=account.id,
        target=("account", account.id),
        new={"name": name},
    )
    await add_member(
        session,
        actor,
        account.id,
        owner_user_id,
        is_owner=True,
        catalogue=Catalogue(installed()),
        now=now,
    )
    return account


async def rename_account(
    session: AsyncSession, actor: Actor, account_id: uuid.UUID, name: str
) -> Account:
    name = display_name(name, MAX_ACCOUNT_NAME)
    # The name replaced is audited: two renames at once both read the first name otherwise.
    await repository.lock_account(session, account_id)
    account = await get_account(session, account_id)
    old, account.name = account.name, name
    if old == name:
        return account  # saved as it is: no change to record
    await session.flush()
    await record_as(
        session,
        actor,
        "account.renamed",
        account_id=account_id,
        target=("account", account_id),
        old={"name": old},
        new={"name": name},
    )
    return account
