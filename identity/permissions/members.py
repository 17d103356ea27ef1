"""Business verbs for an account's members: listing, adding, grants and roles given to them,
ownership and removal.

Every change is recorded in the audit log in the caller's transaction. Owner changes lock
the account first, so an account never ends with no owner, even under concurrent requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.audit.repository import EventFilter
from identity.audit.service import Actor, list_events, record_as
from identity.db.paging import Page
from identity.errors import Conflict, Forbidden, NotFound
from identity.permissions import repository
from identity.permissions.catalogue import Catalogue, invalid_field
from identity.permissions.directory import user
from identity.permissions.effective import effective_of, held_until
from identity.permissions.grants import (
    GRANT_LISTS,
    LATEST_EXPIRY,
    ONE_PERMISSION,
    ONE_ROLE,
    Delegation,
    Grant,
    GrantFields,
    RoleGrant,
    lapsed,
)
from identity.permissions.models import Membership, MembershipPermission, MembershipRole, Role
from identity.webhooks.events import MEMBER_REMOVED, PERMISSIONS_CHANGED, about_member, emit


@dataclass(frozen=True, slots=True)
class MemberView:
    membership: Membership
    user: User
    permissions: Sequence[MembershipPermission]
    roles: Sequence[tuple[MembershipRole, Role]]
    effective: frozenset[str]


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def membership_of(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID, *, lock: bool = False
) -> Membership:
    """``lock``: for a change of the member's grants or ownership, one such change at a
    time, reading the row as stored under the lock."""
    find = repository.lock_membership if lock else repository.get_membership
    membership = await find(session, account_id, user_id)
    if membership is None:
        raise NotFound("This user is not a member of the account.")
    return membership


async def delegation_of(
    session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> Delegation:
    membership = await membership_of(session, account_id, user_id)
    if membership.all_permissions:
        return Delegation({}, everything=True)
    return Delegation(await held_until(session, membership.id, now))


async def _views(
    session: AsyncSession,
    rows: Sequence[tuple[Membership, User]],
    now: datetime,
    catalogue: Catalogue,
) -> list[MemberView]:
    ids = [membership.id for membership, _ in rows]
    permissions: dict[uuid.UUID, list[MembershipPermission]] = {i: [] for i in ids}
    for grant in await repository.permission_grants(session, ids):
        permissions[grant.membership_id].append(grant)
    roles: dict[uuid.UUID, list[tuple[MembershipRole, Role]]] = {i: [] for i in ids}
    for role_grant, role in await repository.role_grants(session, ids):
        roles[role_grant.membership_id].append((role_grant, role))
    effective = await effective_of(session, [m for m, _ in rows], now, catalogue)
    return [
        MemberView(m, user, permissions[m.id], roles[m.id], effective[m.id]) for m, user in rows
    ]


async def list_members(
    session: AsyncSession,
    account_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue,
    page: Page | None = None,
) -> list[MemberView]:
    rows = await repository.members(session, account_id, page)
    return await _views(session, rows, now, catalogue)


async def member(
    session: AsyncSession,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue,
) -> MemberView:
    membership = await membership_of(session, account_id, user_id)
    user = await repository.get_user(session, user_id)
    assert user is not None  # the membership's foreign key
    return (await _views(session, [(membership, user)], now, catalogue))[0]


# --- grants --------------------------------------------------------------------------------


def _grants_record(
    all_permissions: bool, permissions: Sequence[Grant], roles: Sequence[RoleGrant]
) -> dict[str, Any]:
    return {
        "all_permissions": all_permissions,
        "permissions": [{"name": g.name, "expires_at": _when(g.expires_at)} for g in permissions],
        "roles": [{"role_id": str(g.role_id), "expires_at": _when(g.expires_at)} for g in roles],
    }


async def _current_grants(
    session: AsyncSession, membership: Membership
) -> tuple[list[Grant], list[RoleGrant]]:
    permissions = [
        Grant(g.permission, g.expires_at)
        for g in await repository.permission_grants(session, [membership.id])
    ]
    roles = [
        RoleGrant(g.role_id, g.expires_at)
        for g, _ in await repository.role_grants(session, [membership.id])
    ]
    return permissions, roles


async def check_grants(
    session: AsyncSession,
    catalogue: Catalogue,
    account_id: uuid.UUID,
    permissions: Sequence[Grant],
    roles: Sequence[RoleGrant],
    now: datetime,
    delegation: Delegation | None = None,
    fields: GrantFields = GRANT_LISTS,
) -> None:
    """Known permissions, roles usable in this account, expiries in the future, and for a
    manager (``delegation``) nothing beyond what they hold themselves."""
    unknown = await catalogue.unknown(session, [g.name for g in permissions])
    if unknown:
        raise invalid_field(fields.permission, "Unknown permissions: " + ", ".join(unknown) + ".")
    found = {r.id: r for r in await repository.roles_by_id(session, [g.role_id for g in roles])}
    for grant in roles:
        role = found.get(grant.role_id)
        if role is None or role.account_id not in (None, account_id):
            raise invalid_field(fields.role, f"Unknown role {grant.role_id}.")
    expiries = ((fields.permission_expiry, permissions), (fields.role_expiry, roles))
    for field, grants in expiries:
        if any(lapsed(g.expires_at, now) for g in grants):
            raise invalid_field(field, "An expiry date must be in the future.")
        if any(g.expires_at is not None and g.expires_at >= LATEST_EXPIRY for g in grants):
            raise invalid_field(field, "An expiry date must be before the year 9999.")
    if delegation is not None:
        await check_delegation(session, delegation, permissions, roles)


async def check_delegation(
    session: AsyncSession,
    delegation: Delegation,
    permissions: Sequence[Grant],
    roles: Sequence[RoleGrant],
) -> None:
    """``Forbidden`` unless the manager holds every permission given, and each role's, for
    at least as long as it is given."""
    held_by_role = await repository.role_permissions(session, [g.role_id for g in roles])
    delegation.check_grants(permissions, roles, held_by_role)


async def _apply_grants(
    session: AsyncSession,
    membership: Membership,
    permissions: Sequence[Grant],
    roles: Sequence[RoleGrant],
) -> None:
    for grant in permissions:
        await repository.put_permission_grant(session, membership.id, grant.name, grant.expires_at)
    for role_grant in roles:
        await repository.put_role_grant(
            session, membership.id, role_grant.role_id, role_grant.expires_at
        )


# With its reason, as an invitation's acceptance says it: one accepted as staff add the
# invitee is refused here, and the accept page tells the invitee they are a member already.
ALREADY_MEMBER = "This user is already a member of the account."


async def add_member(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    all_permissions: bool = False,
    permissions: Sequence[Grant] = (),
    roles: Sequence[RoleGrant] = (),
    is_owner: bool = False,
    catalogue: Catalogue,
    now: datetime,
) -> Membership:
    """A new membership with its grants; ``Conflict`` when the user is a member already."""
    # The roles are checked, then granted. On SQLite a role deleted in between met the
    # grant's foreign key, so the write lock comes first: the no-op write on the membership,
    # not there yet, takes it (on PostgreSQL it locks nothing: the roles are share-locked).
    if await repository.lock_membership(session, account_id, user_id) is not None:
        raise Conflict(ALREADY_MEMBER, reason="member")
    await check_grants(session, catalogue, account_id, permissions, roles, now)
    added = await repository.get_user(session, user_id)
    if added is None:
        raise invalid_field("user_id", "No such user.")
    if is_owner:
        check_can_own(added)
    membership = Membership(
        account_id=account_id,
        user_id=user_id,
        is_owner=is_owner,
        all_permissions=all_permissions,
        created_at=now,
    )
    try:
        await repository.insert_membership(session, membership)
    except repository.Duplicate:
        raise Conflict(ALREADY_MEMBER, reason="member") from None
    await _apply_grants(session, membership, permissions, roles)
    await record_as(
        session,
        actor,
        "member.added",
        account_id=account_id,
        target=("user", user_id),
        new={"owner": is_owner} | _grants_record(all_permissions, permissions, roles),
    )
    return membership


async def set_grants(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    all_permissions: bool | None = None,
    permissions: Sequence[Grant] | None = None,
    roles: Sequence[RoleGrant] | None = None,
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
    judge: Callable[[Membership], None] | None = None,
) -> None:
    """Replace what is given (None leaves that part alone), as the Users page edits a member.
    ``judge`` raises if the caller may not make this change (a manager edits plain members,
    and keeps "all permissions" from those without it): it sees the member as stored under
    the lock, so a promotion or a change of the flag committed since the caller's own checks
    counts."""
    membership = await membership_of(session, account_id, user_id, lock=True)
    if judge is not None:
        judge(membership)
    old_permissions, old_roles = await _current_grants(session, membership)
    new_permissions = old_permissions if permissions is None else list(permissions)
    new_roles = old_roles if roles is None else list(roles)
    new_all = membership.all_permissions if all_permissions is None else all_permissions
    # Only what is new or changed is checked: a grant kept as it is may have lapsed, or its
    # permission left the catalogue, and editing the rest must not fail on it.
    held = {*old_permissions, *old_roles}
    # Every role the member is to hold is share-locked before their grant rows are touched
    # (``repository.roles_by_id``). A kept role deleted meanwhile took its grant with it and
    # is left out; a new one is refused by ``check_grants`` below.
    present = {r.id for r in await repository.roles_by_id(session, [g.role_id for g in new_roles])}
    new_roles = [g for g in new_roles if g.role_id in present or g not in held]
    await check_grants(
        session,
        catalogue,
        account_id,
        [g for g in new_permissions if g not in held],
        [g for g in new_roles if g not in held],
        now,
        delegation,
    )
    if (new_all, set(new_permissions), set(new_roles)) == (
        membership.all_permissions,
        set(old_permissions),
        set(old_roles),
    ):
        return  # sent back as they are (a form saved unchanged): no change to record or tell
    old = _grants_record(membership.all_permissions, old_permissions, old_roles)
    await repository.clear_grants(session, membership.id)
    membership.all_permissions = new_all
    await _apply_grants(session, membership, new_permissions, new_roles)
    new = _grants_record(new_all, new_permissions, new_roles)
    await record_as(
        session,
        actor,
        "member.grants_changed",
        account_id=account_id,
        target=("user", user_id),
        old=old,
        new=new,
    )
    await _revoke_if_narrowed(session, membership, old, new, now)
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def _revoke_if_narrowed(
    session: AsyncSession,
    membership: Membership,
    old: dict[str, Any],
    new: dict[str, Any],
    now: datetime,
) -> None:
    # Anything taken away: refresh tokens for the account go, so new tokens show it at once.
    def granted(record: dict[str, Any]) -> set[Any]:
        return {("p", g["name"]) for g in record["permissions"]} | {
            ("r", g["role_id"]) for g in record["roles"]
        }

    narrowed = (old["all_permissions"] and not new["all_permissions"]) or bool(
        granted(old) - granted(new)
    )
    if narrowed:
        await repository.revoke_refresh_tokens(
            session, membership.user_id, membership.account_id, now
        )


async def grant_one(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    grant: Grant | RoleGrant,
    *,
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
) -> None:
    """Grant one permission ("tickets for 14 days") or role; granting again replaces the
    expiry. One held so already is no change: kept, as ``set_grants`` keeps it, whatever
    the manager's ``delegation``, which judges only what changes."""
    permissions = [g for g in (grant,) if isinstance(g, Grant)]
    roles = [g for g in (grant,) if isinstance(g, RoleGrant)]
    membership = await membership_of(session, account_id, user_id, lock=True)
    held_permissions, held_roles = await _current_grants(session, membership)
    held = grant in held_permissions or grant in held_roles
    judged = None if held else delegation
    fields = ONE_PERMISSION if permissions else ONE_ROLE
    await check_grants(session, catalogue, account_id, permissions, roles, now, judged, fields)
    if held:
        return  # no change to record or tell
    await _apply_grants(session, membership, permissions, roles)
    # The grant as the lists of ``member.grants_changed`` show it.
    listed = _grants_record(False, permissions, roles)
    await record_as(
        session,
        actor,
        "member.permission_granted" if permissions else "member.role_granted",
        account_id=account_id,
        target=("user", user_id),
        new=(listed["permissions"] + listed["roles"])[0],
    )
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def revoke_one(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    held: str | uuid.UUID,
    now: datetime,
) -> None:
    """Take a permission granted directly (by name) or a role (by id) from a member."""
    membership = await membership_of(session, account_id, user_id, lock=True)
    if isinstance(held, uuid.UUID):
        found = await repository.delete_role_grant(session, membership.id, held)
        action, old, missing = "member.role_revoked", {"role_id": str(held)}, NO_SUCH_ROLE
    else:
        found = await repository.delete_permission_grant(session, membership.id, held)
        action, old, missing = "member.permission_revoked", {"name": held}, NO_SUCH_PERMISSION
    if not found:
        raise NotFound(missing)
    await record_as(
        session, actor, action, account_id=account_id, target=("user", user_id), old=old
    )
    await repository.revoke_refresh_tokens(session, user_id, account_id, now)
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


NO_SUCH_PERMISSION = "The member has no such permission granted directly."
NO_SUCH_ROLE = "The member does not hold this role."


# --- owners and removal --------------------------------------------------------------------


LAST_OWNER = (
    "An account must keep at least one owner who can sign in; make another member owner first."
)
# The problem's reason, which the Users page turns into its own sentence.
LAST_OWNER_REASON = "last_owner"
DISABLED_OWNER = "A disabled user cannot sign in, so cannot own an account; enable them first."


def check_can_own(user: User) -> None:
    """An owner must be able to act for the account: a disabled user cannot sign in, and an
    account whose owners all are disabled has nobody left to manage it."""
    if user.disabled:
        raise Conflict(DISABLED_OWNER)


async def _keeping_an_owner(session: AsyncSession, membership: Membership) -> None:
    """``Conflict`` unless the account keeps an owner who can sign in once ``membership``
    stops being one. Only enabled owners count: a disabled one cannot act, and the last
    enabled owner leaving beside them left the account with no owner to manage it. Any
    owner, disabled too, stays while no enabled one would be left: staff make another
    member owner first, so the account is never without an owner at all. The caller holds
    the account's lock."""
    if not membership.is_owner:
        return
    others = await repository.other_enabled_owners(
        session, membership.account_id, membership.user_id
    )
    if others == 0:
        raise Conflict(LAST_OWNER, reason=LAST_OWNER_REASON)


async def remove_member(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    now: datetime,
    *,
    judge: Callable[[Membership], None] | None = None,
) -> None:
    """``judge`` raises if the caller may not remove this member (a manager removes plain
    members only): it sees the member as stored under the account's lock, so a promotion
    committed since the caller's own checks counts."""
    await repository.lock_account(session, account_id)
    # Read again under the lock: the caller may hold the row as read before it.
    membership = await membership_of(session, account_id, user_id, lock=True)
    if judge is not None:
        judge(membership)
    await _keeping_an_owner(session, membership)
    old_permissions, old_roles = await _current_grants(session, membership)
    await repository.delete_membership(session, membership.id)
    await repository.end_member_tokens(session, user_id, account_id, now)
    await record_as(
        session,
        actor,
        "member.removed",
        account_id=account_id,
        target=("user", user_id),
        old={"owner": membership.is_owner}
        | _grants_record(membership.all_permissions, old_permissions, old_roles),
    )
    await emit(session, MEMBER_REMOVED, about_member(account_id, user_id))


async def left_on_their_own(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    """Whether the user's last removal from the account was their own doing (they left),
    by the audit log: proof they were a member, which a user never in it cannot give."""
    where = EventFilter(account_id=account_id, action="member.removed", target_id=str(user_id))
    last = await list_events(session, where, limit=1)
    return bool(last) and last[0].actor_user_id == user_id


async def set_owner(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    owner: bool,
    now: datetime,
) -> None:
    """Make a member an owner, or an owner a plain member (never the last one)."""
    await repository.lock_account(session, account_id)
    # Read again under the lock: the caller may hold the row as read before it.
    membership = await membership_of(session, account_id, user_id, lock=True)
    if membership.is_owner == owner:
        return
    if owner:
        check_can_own(await user(session, user_id))
    else:
        await _keeping_an_owner(session, membership)
    membership.is_owner = owner
    await session.flush()
    await record_as(
        session,
        actor,
        "member.owner_changed",
        account_id=account_id,
        target=("user", user_id),
        old={"owner": not owner},
        new={"owner": owner},
    )
    if not owner:
        await repository.revoke_refresh_tokens(session, user_id, account_id, now)
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def hand_over_ownership(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    from_user_id: uuid.UUID,
    to_user_id: uuid.UUID,
    now: datetime,
) -> None:
    """``to_user_id`` (a member) becomes owner and ``from_user_id`` stops being one. The
    heir is named in the body (``to_user_id``): one who is no other member is refused naming
    that field, not answered 404, which reads as the account in the path not existing."""
    if from_user_id == to_user_id:
        raise invalid_field("to_user_id", "Hand ownership to another member.")
    # The caller's ownership was checked before the account's lock: another owner may have
    # demoted or removed them since, and a former owner has no ownership left to give.
    await repository.lock_account(session, account_id)
    giver = await repository.lock_membership(session, account_id, from_user_id)
    if giver is None or not giver.is_owner:
        raise Forbidden("Only an owner can hand over their ownership.")
    if await repository.get_membership(session, account_id, to_user_id) is None:
        raise invalid_field("to_user_id", "This user is not a member of the account.")
    await set_owner(session, actor, account_id, to_user_id, True, now)
    await set_owner(session, actor, account_id, from_user_id, False, now)
