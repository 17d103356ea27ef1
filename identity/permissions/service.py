"""Business verbs for customer accounts: members, owners, grants, roles, decisions.

Every change is recorded in the audit log in the caller's transaction. Owner changes lock
the account first, so an account never ends with no owner, even under concurrent requests.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.emails import searched_forms
from identity.accounts.models import User
from identity.audit.repository import EventFilter
from identity.audit.service import Actor, list_events, record_as
from identity.db.paging import Page
from identity.display_names import display_name
from identity.errors import Conflict, Forbidden, NotFound
from identity.permissions import repository, role_holders
from identity.permissions.catalogue import (
    MAX_PERMISSION_DESCRIPTION,
    MAX_PERMISSION_LABEL,
    MAX_ROLE_NAME,
    Catalogue,
    installed,
    invalid_field,
)
from identity.permissions.models import (
    Account,
    Membership,
    MembershipPermission,
    MembershipRole,
    Permission,
    Role,
)
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES
from identity.webhooks.events import MEMBER_REMOVED, PERMISSIONS_CHANGED, about_member, emit

MAX_ACCOUNT_NAME = 200
MAX_ROLE_DESCRIPTION = 2000
# Any later expiry, in the time zone it was given in, may have no UTC equivalent to store
# (9999-12-31T23:00-05:00 is in the year 10000); none is meant as a real date anyway.
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """A permission granted directly, until ``expires_at`` (None: until revoked)."""

    name: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RoleGrant:
    role_id: uuid.UUID
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class GrantFields:
    """The request fields a refused grant is reported under: the lists of a member, an
    invitation or a new membership by default; a single grant's own body fields below."""

    permission: str = "permissions"
    role: str = "roles"
    permission_expiry: str = "permissions"
    role_expiry: str = "roles"


ONE_PERMISSION = GrantFields(permission="name", permission_expiry="expires_at")
ONE_ROLE = GrantFields(role="role_id", role_expiry="expires_at")


BEYOND_DELEGATION = "beyond_delegation"


@dataclass(frozen=True, slots=True)
class Delegation:
    """What a manager may hand out: only permissions they hold, each for no longer than
    they hold it (``until``; None: with no end). Otherwise a manager could give themselves,
    or a second address of their own, every permission one by one, or keep ``users`` past
    the expiry an owner set on it. Owners and staff hand out anything (no Delegation).
    ``everything``: an "all permissions" member holds every permission, with no end, so
    may hand out any one of them (but not "all permissions" itself: ``check_manager_edit``)."""

    until: Mapping[str, datetime | None]
    everything: bool = False

    def covers(self, name: str, expires_at: datetime | None) -> bool:
        if self.everything:
            return True
        if name not in self.until:
            return False
        limit = self.until[name]
        return limit is None or (expires_at is not None and expires_at <= limit)

    def check(self, names: Iterable[str], expires_at: datetime | None) -> None:
        """``Forbidden`` naming the permissions not covered for that long."""
        beyond = sorted({name for name in names if not self.covers(name, expires_at)})
        if beyond:
            raise Forbidden(
                "A manager can grant only permissions they hold, for no longer than they "
                "hold them: " + ", ".join(beyond) + ".",
                reason=BEYOND_DELEGATION,
            )

    def check_grants(
        self,
        permissions: Sequence[Grant],
        roles: Sequence[RoleGrant],
        held_by_role: Mapping[uuid.UUID, Sequence[str]],
    ) -> None:
        """``check`` for each permission given, and for each role's (``held_by_role``), for
        as long as it is given."""
        for grant in permissions:
            self.check([grant.name], grant.expires_at)
        for role_grant in roles:
            self.check(held_by_role[role_grant.role_id], role_grant.expires_at)


async def delegation_of(
    session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> Delegation:
    membership = await membership_of(session, account_id, user_id)
    if membership.all_permissions:
        return Delegation({}, everything=True)
    return Delegation(await _held_until(session, membership.id, now))


async def _held_until(
    session: AsyncSession, membership_id: uuid.UUID, now: datetime
) -> dict[str, datetime | None]:
    """Each permission a (partial) member holds now, with when it stops: a permission held
    several ways lasts as long as its longest grant (None: no end)."""
    until: dict[str, datetime | None] = {}
    for name, expires_at in await repository.held_until(session, membership_id, now):
        held = until.get(name, expires_at)
        until[name] = None if held is None or expires_at is None else max(held, expires_at)
    return until


def lapsed(expires_at: datetime | None, now: datetime) -> bool:
    """A grant with this expiry gives nothing any more (it is kept, and listed, a while)."""
    return expires_at is not None and expires_at <= now


@dataclass(frozen=True, slots=True)
class MemberView:
    membership: Membership
    user: User
    permissions: Sequence[MembershipPermission]
    roles: Sequence[tuple[MembershipRole, Role]]
    effective: frozenset[str]


@dataclass(frozen=True, slots=True)
class RoleView:
    role: Role
    permissions: list[str]


def _default(catalogue: Catalogue | None) -> Catalogue:
    return catalogue if catalogue is not None else Catalogue(installed())


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# --- reading -------------------------------------------------------------------------------


async def _effective(
    session: AsyncSession, memberships: Sequence[Membership], now: datetime, catalogue: Catalogue
) -> dict[uuid.UUID, frozenset[str]]:
    full = [m.id for m in memberships if m.is_owner or m.all_permissions]
    everything = await catalogue.names(session) if full else frozenset()
    found: dict[uuid.UUID, set[str]] = {m.id: set() for m in memberships}
    partial = [m.id for m in memberships if m.id not in full]
    granted = await repository.live_permissions(session, partial, now)
    # A grant outlives its name's removal from policies/permissions.toml, and gives nothing.
    existing = await catalogue.among(session, {permission for _, permission in granted})
    for membership_id, permission in granted:
        if permission in existing:
            found[membership_id].add(permission)
    return {
        membership_id: everything if membership_id in full else frozenset(names)
        for membership_id, names in found.items()
    }


async def effective_permissions(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> frozenset[str]:
    """Direct grants and roles that have not expired; everything for owners and "all"."""
    membership = await repository.get_membership(session, account_id, user_id)
    if membership is None:
        return frozenset()
    effective = await _effective(session, [membership], now, _default(catalogue))
    return effective[membership.id]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """An access token's account claims, and ``until``: when the first grant they come from
    ends (None: none ends), past which the token must not speak for them."""

    claims: dict[str, Any]
    until: datetime | None


async def token_claims_lasting(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    *,
    held_past: datetime,
    catalogue: Catalogue | None = None,
) -> TokenClaims:
    """The account claims of an access token: ``account_id``, ``permissions``,
    ``account_owner``; only permissions held beyond ``held_past`` (one ending before is left
    out rather than cutting the token's life short to it).

    Raises ``Forbidden`` when the user is not a member of the account.
    """
    membership = await repository.get_membership(session, account_id, user_id)
    if membership is None:
        raise Forbidden("The user is not a member of this account.")
    held: dict[str, datetime | None]
    catalogue = _default(catalogue)
    if membership.is_owner or membership.all_permissions:
        held = dict.fromkeys(await catalogue.names(session))
    else:
        granted = await _held_until(session, membership.id, now)
        # As ``_effective``: a grant of a name no longer in the catalogue gives nothing.
        existing = await catalogue.among(session, granted)
        held = {
            name: until
            for name, until in granted.items()
            if name in existing and (until is None or until > held_past)
        }
    ends = [until for until in held.values() if until is not None]
    claims = {
        "account_id": str(account_id),
        "permissions": sorted(held),
        "account_owner": membership.is_owner,
    }
    return TokenClaims(claims, min(ends, default=None))


async def still_granted(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    issued: Sequence[str],
    issued_owner: bool,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> dict[str, Any] | None:
    """The account claims an access token issued earlier stands for now (introspection):
    None once the user has left the account; else the token's permissions the member still
    holds, and ``account_owner`` only while they still own it. Never more than the token
    says: what was granted since belongs in a new token, not in this one. (A token issued
    before a removal is denied by it, so adding the member back does not revive it.)"""
    try:
        current = await token_claims_lasting(
            session, user_id, account_id, now, held_past=now, catalogue=catalogue
        )
    except Forbidden:
        return None
    held = set(current.claims["permissions"])
    return {
        "account_id": str(account_id),
        "permissions": [name for name in issued if name in held],
        "account_owner": issued_owner and current.claims["account_owner"],
    }


async def check_batch(
    session: AsyncSession,
    checks: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
    catalogue: Catalogue | None = None,
) -> list[bool]:
    """Allow or deny each (user_id, account_id, permission), in order, in three queries.
    A disabled user is denied everything, as their tokens and sign-ins are."""
    catalogue = _default(catalogue)
    memberships = await repository.live_memberships_for(
        session, {(user_id, account_id) for user_id, account_id, _ in checks}
    )
    by_pair = {(m.user_id, m.account_id): m for m in memberships}
    partial = [m.id for m in memberships if not (m.is_owner or m.all_permissions)]
    held = set(await repository.live_permissions(session, partial, now))
    # Only what exists is held, by owners and by a grant alike (a grant outlives its name's
    # removal from policies/permissions.toml).
    asked = {permission for _, _, permission in checks}
    existing = await catalogue.among(session, asked) if memberships else set()
    decisions = []
    for user_id, account_id, permission in checks:
        membership = by_pair.get((user_id, account_id))
        if membership is None:
            decisions.append(False)
        elif membership.is_owner or membership.all_permissions:
            decisions.append(permission in existing)
        else:
            decisions.append(permission in existing and (membership.id, permission) in held)
    return decisions


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
    effective = await _effective(session, [m for _, m in rows], now, _default(catalogue))
    return [AccountChoice(a, m.is_owner, effective[m.id]) for a, m in rows]


async def account_ids_of(session: AsyncSession, user_id: uuid.UUID) -> set[uuid.UUID]:
    """The accounts a user belongs to, by id alone: all that choosing one at sign-in needs,
    read on every authorization without the permissions ``accounts_of`` works out."""
    return await repository.account_ids_of_user(session, user_id)


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
    effective = await _effective(session, [m for m, _ in rows], now, catalogue)
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
    fields: GrantFields = GrantFields(),
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
        raise Conflict("This user is already a member of the account.")
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
        raise Conflict("This user is already a member of the account.") from None
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


async def grant_permission(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    grant: Grant,
    *,
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
) -> None:
    """Grant one permission ("tickets for 14 days"); granting again replaces the expiry."""
    membership = await membership_of(session, account_id, user_id, lock=True)
    await check_grants(session, catalogue, account_id, [grant], [], now, delegation, ONE_PERMISSION)
    if grant in (await _current_grants(session, membership))[0]:
        return  # held so already: no change to record or tell
    await repository.put_permission_grant(session, membership.id, grant.name, grant.expires_at)
    await record_as(
        session,
        actor,
        "member.permission_granted",
        account_id=account_id,
        target=("user", user_id),
        new={"name": grant.name, "expires_at": _when(grant.expires_at)},
    )
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def revoke_permission(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    name: str,
    now: datetime,
) -> None:
    membership = await membership_of(session, account_id, user_id, lock=True)
    if not await repository.delete_permission_grant(session, membership.id, name):
        raise NotFound("The member has no such permission granted directly.")
    await record_as(
        session,
        actor,
        "member.permission_revoked",
        account_id=account_id,
        target=("user", user_id),
        old={"name": name},
    )
    await repository.revoke_refresh_tokens(session, user_id, account_id, now)
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def grant_role(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    grant: RoleGrant,
    *,
    catalogue: Catalogue,
    now: datetime,
    delegation: Delegation | None = None,
) -> None:
    membership = await membership_of(session, account_id, user_id, lock=True)
    await check_grants(session, catalogue, account_id, [], [grant], now, delegation, ONE_ROLE)
    if grant in (await _current_grants(session, membership))[1]:
        return  # held so already: no change to record or tell
    await repository.put_role_grant(session, membership.id, grant.role_id, grant.expires_at)
    await record_as(
        session,
        actor,
        "member.role_granted",
        account_id=account_id,
        target=("user", user_id),
        new={"role_id": str(grant.role_id), "expires_at": _when(grant.expires_at)},
    )
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


async def revoke_role(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    role_id: uuid.UUID,
    now: datetime,
) -> None:
    membership = await membership_of(session, account_id, user_id, lock=True)
    if not await repository.delete_role_grant(session, membership.id, role_id):
        raise NotFound("The member does not hold this role.")
    await record_as(
        session,
        actor,
        "member.role_revoked",
        account_id=account_id,
        target=("user", user_id),
        old={"role_id": str(role_id)},
    )
    await repository.revoke_refresh_tokens(session, user_id, account_id, now)
    await emit(session, PERMISSIONS_CHANGED, about_member(account_id, user_id))


# --- owners and removal --------------------------------------------------------------------


LAST_OWNER = (
    "An account must keep at least one owner who can sign in; make another member owner first."
)
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
        raise Conflict(LAST_OWNER)


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
    """``to_user_id`` (a member) becomes owner and ``from_user_id`` stops being one."""
    if from_user_id == to_user_id:
        raise invalid_field("user_id", "Hand ownership to another member.")
    # The caller's ownership was checked before the account's lock: another owner may have
    # demoted or removed them since, and a former owner has no ownership left to give.
    await repository.lock_account(session, account_id)
    giver = await repository.lock_membership(session, account_id, from_user_id)
    if giver is None or not giver.is_owner:
        raise Forbidden("Only an owner can hand over their ownership.")
    await set_owner(session, actor, account_id, to_user_id, True, now)
    await set_owner(session, actor, account_id, from_user_id, False, now)


# --- roles ---------------------------------------------------------------------------------


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
    _not_from_file(view.role, _default(catalogue))
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


# --- registered permissions ------------------------------------------------------------------


# An owner's access token lists the whole catalogue, and services refuse a token longer than
# the resource kit's limit (8 KB) as malformed: past that, every owner would be locked out of
# every service at their next token. Half the limit for the list leaves the rest of the token
# (a signature, the other claims, base64's third more) room below it.
MAX_CATALOGUE = DEFAULT_MAX_TOKEN_BYTES // 2
CATALOGUE_FULL = (
    "The permission catalogue is full: an owner's access token lists every permission, and"
    f" their names may take at most {MAX_CATALOGUE} bytes so that services still accept it."
)


def _listed_size(names: Iterable[str]) -> int:
    """The bytes of the ``permissions`` claim listing ``names``."""
    return len(json.dumps(sorted(names), separators=(",", ":")).encode())


async def register_permission(
    session: AsyncSession,
    actor: Actor,
    permission: Permission,
    catalogue: Catalogue,
) -> Permission:
    """Add a consuming service's permission (``billing:refunds``) with its labels."""
    # The Users page shows each label beside a checkbox and the description as its tooltip:
    # both are held to the rules of names, so a label of spaces is none.
    for language in ("en", "es"):
        for text, limit, required in (
            ("label", MAX_PERMISSION_LABEL, True),
            ("description", MAX_PERMISSION_DESCRIPTION, False),
        ):
            column = f"{text}_{language}"
            checked = display_name(
                getattr(permission, column) or "",  # a description left out is empty
                limit,
                required=required,
                field=f"{text}.{language}",
                what=text,
            )
            setattr(permission, column, checked)
    if permission.name in catalogue.policies.builtin_names:
        raise Conflict("This permission exists already.")
    await repository.lock_catalogue(session)
    names = await catalogue.names(session)
    if permission.name not in names and _listed_size({*names, permission.name}) > MAX_CATALOGUE:
        raise Conflict(CATALOGUE_FULL)
    try:
        await repository.insert_permission(session, permission)
    except repository.Duplicate:
        raise Conflict("This permission exists already.") from None
    await record_as(
        session,
        actor,
        "permission.registered",
        account_id=None,
        target=("permission", permission.name),
        new={"label": {"en": permission.label_en, "es": permission.label_es}},
    )
    return permission


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
