"""An account's own roles and staff's role templates: reading, creating, editing, deleting."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.db.paging import Page
from identity.display_names import display_name
from identity.errors import Conflict, NotFound
from identity.permissions import repository, role_holders
from identity.permissions.catalogue import MAX_ROLE_NAME, Catalogue, invalid_field, or_installed
from identity.permissions.grants import Delegation
from identity.permissions.models import Role

MAX_ROLE_DESCRIPTION = 2000


@dataclass(frozen=True, slots=True)
class RoleView:
    role: Role
    permissions: list[str]


async def _role_views(session: AsyncSession, roles: Sequence[Role]) -> list[RoleView]:
    permissions = await repository.role_permissions(session, [r.id for r in roles])
    return [RoleView(role, permissions[role.id]) for role in roles]


async def list_roles(
    session: AsyncSession, account_id: uuid.UUID | None, page: Page | None = None
) -> list[RoleView]:
    """Templates (``account_id`` None), or an account's own roles."""
    return await _role_views(session, await repository.list_roles(session, account_id, page))


async def get_role(
    session: AsyncSession, account_id: uuid.UUID | None, role_id: uuid.UUID, *, lock: bool = False
) -> RoleView:
    """The role, only if it belongs where asked: another account's role is "not found".
    ``lock``: for a change of the role, one change at a time, after pending grants of it."""
    find = repository.lock_role if lock else repository.get_role
    role = await find(session, role_id)
    if role is None or role.account_id != account_id:
        raise NotFound("No such role.")
    return (await _role_views(session, [role]))[0]


async def _check_role_fields(
    session: AsyncSession,
    catalogue: Catalogue,
    account_id: uuid.UUID | None,
    name: str,
    added: Iterable[str],
    role_id: uuid.UUID | None,
) -> str:
    """The role's name as stored; ``added``: the permissions it did not hold, which must be
    in the catalogue (one it holds may have left policies/permissions.toml since, and
    editing the rest must not fail on it, as for a member's grants)."""
    name = display_name(name, MAX_ROLE_NAME)
    if await repository.role_name_taken(session, account_id, name, role_id):
        raise invalid_field("name", "A role with this name exists already.", Conflict)
    unknown = await catalogue.unknown(session, added)
    if unknown:
        raise invalid_field("permissions", "Unknown permissions: " + ", ".join(unknown) + ".")
    return name


def _role_description(raw: str) -> str:
    """Shown to members and staff beside the role's name: held to the same rules."""
    return display_name(
        raw, MAX_ROLE_DESCRIPTION, required=False, field="description", what="description"
    )


async def create_role(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID | None,
    *,
    name: str,
    name_es: str = "",
    description: str = "",
    permissions: Sequence[str],
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
) -> RoleView:
    await repository.lock_role_names(session, account_id)
    name = await _check_role_fields(session, catalogue, account_id, name, permissions, None)
    if delegation is not None:
        # Whoever is granted the role later holds these with no end of the role's own.
        delegation.check(permissions, None)
    role = Role(
        account_id=account_id,
        name=name,
        name_es=display_name(name_es, MAX_ROLE_NAME, required=False, field="name_es"),
        description=_role_description(description),
        created_at=now,
    )
    try:
        await repository.insert_role(session, role)
    except repository.Duplicate:
        raise Conflict("A role with this name exists already.") from None
    await repository.replace_role_permissions(session, role.id, dict.fromkeys(permissions))
    await record_as(
        session,
        actor,
        "role.created",
        account_id=account_id,
        target=("role", role.id),
        new=_role_record(role, permissions),
    )
    return (await _role_views(session, [role]))[0]


def _role_record(role: Role, permissions: Sequence[str]) -> dict[str, Any]:
    """A role as the audit log holds it: everything members read of it, so a change of any
    part shows in the old and new values."""
    return {
        "name": role.name,
        "name_es": role.name_es,
        "description": role.description,
        "permissions": sorted(set(permissions)),
    }


def _not_from_file(role: Role, catalogue: Catalogue) -> None:
    # Only while policies/roles.toml holds it: one taken out of the file stays for its
    # holders, and is then staff's to edit or delete like any template they made.
    if role.key in catalogue.policies.roles:
        raise Conflict(
            "This template is defined in policies/roles.toml; change it there.",
        )


async def update_role(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID | None,
    role_id: uuid.UUID,
    *,
    name: str | None = None,
    name_es: str | None = None,
    description: str | None = None,
    permissions: Sequence[str] | None = None,
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
) -> RoleView:
    # The names' lock before the role's: the order a grant with an owner change takes them in.
    await repository.lock_role_names(session, account_id)
    view = await get_role(session, account_id, role_id, lock=True)
    role = view.role
    _not_from_file(role, catalogue)
    new_name = await _check_role_fields(
        session,
        catalogue,
        account_id,
        role.name if name is None else name,
        set(permissions or ()) - set(view.permissions),
        role.id,
    )
    if delegation is not None and permissions is not None:
        # Added to a role, a permission reaches everyone holding it, at once and for good.
        delegation.check(set(permissions) - set(view.permissions), None)
    old = _role_record(role, view.permissions)
    role.name = new_name
    if name_es is not None:
        role.name_es = display_name(name_es, MAX_ROLE_NAME, required=False, field="name_es")
    if description is not None:
        role.description = _role_description(description)
    await session.flush()
    if permissions is not None:
        await role_holders.replace_permissions(session, role.id, permissions, now)
    updated = (await _role_views(session, [role]))[0]
    new = _role_record(role, updated.permissions)
    if new != old:  # a role saved as it is changed nothing to record
        await record_as(
            session,
            actor,
            "role.updated",
            account_id=account_id,
            target=("role", role.id),
            old=old,
            new=new,
        )
    return updated


async def delete_role(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID | None,
    role_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> None:
    view = await get_role(session, account_id, role_id, lock=True)
    _not_from_file(view.role, or_installed(catalogue))
    # Read before deleting: the role's grants go with it.
    holders = await repository.role_holders(session, role_id, now)
    await repository.delete_role(session, role_id)
    await record_as(
        session,
        actor,
        "role.deleted",
        account_id=account_id,
        target=("role", role_id),
        old=_role_record(view.role, view.permissions),
    )
    await role_holders.tell_holders(session, holders, narrowed=True, now=now)
