"""Who may do what through the management API: the authorization matrix, as data.

Each action lists the relations to the account (or, for actions about no account, to the
service) that may perform it. Someone with no relation to an account gets "not found" for
everything in it, so ids cannot be probed to learn which accounts exist; a member lacking
a right gets "forbidden", as they know the account exists anyway.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.repository import hold_administrator, hold_user, lock_administrators
from identity.clients.repository import get_client
from identity.errors import Forbidden, NotFound
from identity.oauth.scopes import SCOPE_ADMIN
from identity.permissions import repository
from identity.permissions.catalogue import Catalogue
from identity.permissions.effective import effective_permissions
from identity.permissions.grants import Delegation, Grant, RoleGrant
from identity.permissions.members import delegation_of
from identity.permissions.models import Membership
from identity.tokens.subjects import active_user

# The permission that lets a member manage the account's users (policies/permissions.toml).
MANAGE_USERS = "users"


class Relation(StrEnum):
    STAFF = "staff"  # identity:admin token of an administrator, or of a client allowed it
    OWNER = "owner"
    MANAGER = "manager"  # a member holding the `users` permission
    MEMBER = "member"  # any other member of the account
    OTHER_USER = "other-user"  # signed in, no membership in the account
    SERVICE = "service"  # a client's own token with the identity:authz scope


class Action(StrEnum):
    ACCOUNT_CREATE = "account.create"
    ACCOUNT_LIST_ALL = "account.list-all"
    ACCOUNT_LIST_MINE = "account.list-mine"
    ACCOUNT_READ = "account.read"
    ACCOUNT_RENAME = "account.rename"
    OWNERSHIP_CHANGE = "ownership.change"
    OWNERSHIP_HAND_OVER = "ownership.hand-over"
    MEMBER_READ = "member.read"
    MEMBER_ADD = "member.add"
    MEMBER_GRANTS = "member.grants"
    MEMBER_REMOVE = "member.remove"
    MEMBER_LEAVE = "member.leave"
    INVITATION_READ = "invitation.read"
    INVITATION_WRITE = "invitation.write"
    ACCOUNT_ROLE_READ = "account-role.read"
    ACCOUNT_ROLE_WRITE = "account-role.write"
    ACCOUNT_AUDIT_READ = "account-audit.read"
    TEMPLATE_READ = "template.read"
    TEMPLATE_WRITE = "template.write"
    PERMISSION_READ = "permission.read"
    PERMISSION_REGISTER = "permission.register"
    USER_READ = "user.read"
    USER_RECOVER = "user.recover"
    USER_WRITE = "user.write"
    AUDIT_READ_ALL = "audit.read-all"
    AUTHZ_CHECK = "authz.check"
    WEBHOOK_MANAGE = "webhook.manage"
    CLIENT_MANAGE = "client.manage"


STAFF, OWNER, MANAGER, MEMBER, OTHER_USER, SERVICE = (
    Relation.STAFF,
    Relation.OWNER,
    Relation.MANAGER,
    Relation.MEMBER,
    Relation.OTHER_USER,
    Relation.SERVICE,
)

MATRIX: dict[Action, frozenset[Relation]] = {
    Action.ACCOUNT_CREATE: frozenset({STAFF}),
    Action.ACCOUNT_LIST_ALL: frozenset({STAFF}),
    Action.ACCOUNT_LIST_MINE: frozenset({STAFF, OTHER_USER}),
    Action.ACCOUNT_READ: frozenset({STAFF, OWNER, MANAGER, MEMBER}),
    Action.ACCOUNT_RENAME: frozenset({STAFF, OWNER}),
    Action.OWNERSHIP_CHANGE: frozenset({STAFF, OWNER}),
    Action.OWNERSHIP_HAND_OVER: frozenset({OWNER}),
    Action.MEMBER_READ: frozenset({STAFF, OWNER, MANAGER}),
    Action.MEMBER_ADD: frozenset({STAFF}),
    Action.MEMBER_GRANTS: frozenset({STAFF, OWNER, MANAGER}),
    Action.MEMBER_REMOVE: frozenset({STAFF, OWNER, MANAGER}),
    # Removing oneself: any member may leave, as from a GitHub organisation.
    Action.MEMBER_LEAVE: frozenset({STAFF, OWNER, MANAGER, MEMBER}),
    Action.INVITATION_READ: frozenset({STAFF, OWNER, MANAGER}),
    Action.INVITATION_WRITE: frozenset({STAFF, OWNER, MANAGER}),
    Action.ACCOUNT_ROLE_READ: frozenset({STAFF, OWNER, MANAGER}),
    Action.ACCOUNT_ROLE_WRITE: frozenset({STAFF, OWNER, MANAGER}),
    Action.ACCOUNT_AUDIT_READ: frozenset({STAFF, OWNER}),
    Action.TEMPLATE_READ: frozenset({STAFF, OTHER_USER}),
    Action.TEMPLATE_WRITE: frozenset({STAFF}),
    Action.PERMISSION_READ: frozenset({STAFF, OTHER_USER, SERVICE}),
    Action.PERMISSION_REGISTER: frozenset({STAFF}),
    Action.USER_READ: frozenset({STAFF}),
    Action.USER_RECOVER: frozenset({STAFF}),
    Action.USER_WRITE: frozenset({STAFF}),
    Action.AUDIT_READ_ALL: frozenset({STAFF}),
    Action.AUTHZ_CHECK: frozenset({STAFF, SERVICE}),
    Action.WEBHOOK_MANAGE: frozenset({STAFF}),
    Action.CLIENT_MANAGE: frozenset({STAFF}),
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, as the access token says: a user, or a client acting for itself."""

    user_id: uuid.UUID | None
    client_id: str
    is_staff: bool
    is_service: bool


# The changes to an account a member may make by the rights their membership gives them.
_MEMBER_CHANGES = frozenset(
    {
        Action.ACCOUNT_RENAME,
        Action.OWNERSHIP_CHANGE,
        Action.OWNERSHIP_HAND_OVER,
        Action.MEMBER_GRANTS,
        Action.MEMBER_REMOVE,
        Action.MEMBER_LEAVE,
        Action.INVITATION_WRITE,
        Action.ACCOUNT_ROLE_WRITE,
    }
)


# What staff do that changes nothing: judged by the flag the token was checked against.
_STAFF_READS = frozenset(
    {
        Action.ACCOUNT_LIST_ALL,
        Action.ACCOUNT_LIST_MINE,
        Action.ACCOUNT_READ,
        Action.MEMBER_READ,
        Action.INVITATION_READ,
        Action.ACCOUNT_ROLE_READ,
        Action.ACCOUNT_AUDIT_READ,
        Action.TEMPLATE_READ,
        Action.PERMISSION_READ,
        Action.USER_READ,
        Action.AUDIT_READ_ALL,
        Action.AUTHZ_CHECK,
    }
)


# The staff actions among which a demotion or a disable is.
_MAY_DEMOTE = frozenset({Action.USER_WRITE, Action.USER_RECOVER})


def allowed(action: Action, relation: Relation) -> bool:
    return relation in MATRIX[action]


def removal(caller: Caller, user_id: uuid.UUID) -> Action:
    """What taking ``user_id`` out of an account is for the matrix: leaving when the caller
    is that user (a staff token's own membership too), else removing someone."""
    return Action.MEMBER_LEAVE if caller.user_id == user_id else Action.MEMBER_REMOVE


async def _hold_acting_staff(session: AsyncSession, caller: Caller, action: Action) -> None:
    """Before an administrator's change, hold their flag until it commits. Read when the
    request began, another administrator could demote or disable them and commit while the
    change, judged by the flag read before, went on to commit after. The demotion or disable
    now waits for the change in progress, or the change waits for it and is refused.

    A demotion (``USER_WRITE``) or a disable (``USER_RECOVER``) takes the administrators'
    lock before its target's row (``_keeping_an_administrator``); the acting administrator's
    own row is held after that lock too, so two administrators demoting or disabling each
    other queue at it, and the second finds itself demoted or disabled, instead of each
    holding its own row while waiting for the other's (a deadlock on PostgreSQL)."""
    if not caller.is_staff or caller.user_id is None or action in _STAFF_READS:
        return  # a client acting for itself holds its authority from no user
    if action in _MAY_DEMOTE:
        await lock_administrators(session)
    if not await hold_administrator(session, caller.user_id):
        raise Forbidden("You may not do this.")


async def _lock_acting_member(
    session: AsyncSession, caller: Caller, action: Action, account_id: uuid.UUID | None
) -> None:
    """Before a member's rights to change the account are read, hold them until the change
    commits. Read first, an owner could take ``users`` from a manager and commit while the
    manager's edit, judged by the rights read before, went on to commit after. Every change
    of a membership's rights locks its row (``membership_of(lock=True)``), or the account's
    for owners and removals: the acting member's change now waits for one in progress and
    reads what it left, or makes that one wait. The account first, in the order removals
    and owner changes take them: two managers editing each other then never each hold the
    row the other waits for.

    Rights that come through a role change with the role, whose edit or deletion locks the
    role's row (and a template's, no account's): the member's roles are share-locked last,
    as a grant of roles does (``repository.roles_by_id``), and a role's change takes no
    account or membership lock after its own, so neither waits for the other in a cycle.

    So do they with the member's user, which staff disable by writing its row: held last
    (a disable takes no account, membership or role lock), it is read as the lock found it,
    and a member disabled since their token was checked acts for nobody."""
    if action not in _MEMBER_CHANGES or account_id is None:
        return
    if caller.is_staff or caller.user_id is None:
        return  # their rights come from no membership
    if not await hold_member_rights(session, account_id, caller.user_id):
        raise Forbidden("You may not do this.")


async def hold_member_rights(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    """Hold what the user's rights in the account come from until the transaction ends, in
    ``_lock_acting_member``'s order (account, membership, its roles, the user); whether the
    user is enabled, as held."""
    await repository.lock_account(session, account_id)
    membership = await repository.lock_membership(session, account_id, user_id)
    if membership is not None:
        await repository.hold_roles_of(session, membership.id)
    return await hold_user(session, user_id)


async def relation_to(
    session: AsyncSession,
    caller: Caller,
    account_id: uuid.UUID | None,
    now: datetime,
    catalogue: Catalogue,
) -> Relation:
    if caller.is_staff:
        return Relation.STAFF
    if caller.user_id is None:
        return Relation.SERVICE if caller.is_service else Relation.OTHER_USER
    if account_id is None:
        return Relation.OTHER_USER
    membership = await repository.get_membership(session, account_id, caller.user_id)
    if membership is None:
        return Relation.OTHER_USER
    if membership.is_owner:
        return Relation.OWNER
    held = await effective_permissions(session, caller.user_id, account_id, now, catalogue)
    return Relation.MANAGER if MANAGE_USERS in held else Relation.MEMBER


async def authorize(
    session: AsyncSession,
    caller: Caller,
    action: Action,
    now: datetime,
    catalogue: Catalogue,
    account_id: uuid.UUID | None = None,
) -> Relation:
    """The caller's relation if the matrix lets it perform ``action``; else an error."""
    await _hold_acting_staff(session, caller, action)
    await _lock_acting_member(session, caller, action, account_id)
    relation = await relation_to(session, caller, account_id, now, catalogue)
    # Staff relate to every account without a membership to read, so nothing else notices
    # one that does not exist: its lists answered empty, and an insert under it broke the
    # foreign key, which read as a duplicate (409).
    if (
        relation is Relation.STAFF
        and account_id is not None
        and await repository.get_account(session, account_id) is None
    ):
        raise NotFound("No such account.")
    if allowed(action, relation):
        return relation
    if account_id is not None and relation in (Relation.OTHER_USER, Relation.SERVICE):
        raise NotFound("No such account.")
    raise Forbidden("You may not do this.")


def check_manager_edit(
    relation: Relation, target: Membership, *, all_permissions: bool | None = None
) -> None:
    """A manager edits plain members only, and cannot hand out "all permissions": both
    would let them raise their own rights to an owner's. "All permissions" a member holds
    already may be sent back as it is, as any grant they have."""
    if relation is not Relation.MANAGER:
        return
    if target.is_owner:
        raise Forbidden("Only an owner can change another owner.")
    if all_permissions and not target.all_permissions:
        raise Forbidden("Only an owner can grant all permissions.")


async def delegation_for(
    session: AsyncSession,
    user_id: uuid.UUID | None,
    relation: Relation,
    account_id: uuid.UUID,
    now: datetime,
) -> Delegation | None:
    """What the acting user may hand out in the account: limited for a manager only (owners
    and staff hand out anything; the matrix keeps everyone else from granting at all)."""
    if relation is not Relation.MANAGER or user_id is None:
        return None
    return await delegation_of(session, user_id, account_id, now)


def check_manager_invite(relation: Relation, *, all_permissions: bool) -> None:
    """As for editing members: a manager cannot invite an owner-equivalent."""
    if relation is Relation.MANAGER and all_permissions:
        raise Forbidden("Only an owner can invite with all permissions.")


@dataclass(frozen=True, slots=True)
class InviteRights:
    """What whoever holds ``relation`` to an account may put in an invitation: anything, or
    for a manager (``delegation``) only what they hold and never "all permissions"."""

    relation: Relation
    delegation: Delegation | None

    def check(
        self,
        *,
        all_permissions: bool,
        permissions: Sequence[Grant],
        roles: Sequence[RoleGrant],
        held_by_role: Mapping[uuid.UUID, Sequence[str]],
    ) -> None:
        """``Forbidden`` unless an invitation giving this is within these rights; a role's
        permissions are looked up in ``held_by_role``."""
        check_manager_invite(self.relation, all_permissions=all_permissions)
        if self.delegation is not None:
            self.delegation.check_grants(permissions, roles, held_by_role)

    def allows(
        self,
        *,
        all_permissions: bool,
        permissions: Sequence[Grant],
        roles: Sequence[RoleGrant],
        held_by_role: Mapping[uuid.UUID, Sequence[str]],
    ) -> bool:
        """``check`` as a yes or no."""
        try:
            self.check(
                all_permissions=all_permissions,
                permissions=permissions,
                roles=roles,
                held_by_role=held_by_role,
            )
        except Forbidden:
            return False
        return True


async def invite_rights(
    session: AsyncSession,
    relation: Relation,
    user_id: uuid.UUID | None,
    account_id: uuid.UUID,
    now: datetime,
) -> InviteRights:
    """The rights of whoever holds ``relation`` to the account to send invitations;
    ``Forbidden`` when they may send none."""
    if not allowed(Action.INVITATION_WRITE, relation):
        raise Forbidden("You may not do this.")
    return InviteRights(relation, await delegation_for(session, user_id, relation, account_id, now))


async def check_may_invite(
    session: AsyncSession,
    relation: Relation,
    user_id: uuid.UUID | None,
    account_id: uuid.UUID,
    *,
    all_permissions: bool,
    permissions: Sequence[Grant],
    roles: Sequence[RoleGrant],
    now: datetime,
) -> None:
    """``Forbidden`` unless whoever holds ``relation`` to the account may send an invitation
    giving this: the rule for sending one, applied to one that exists (resent, or accepted)."""
    rights = await invite_rights(session, relation, user_id, account_id, now)
    rights.check(
        all_permissions=all_permissions,
        permissions=permissions,
        roles=roles,
        held_by_role=await _held_by_role(session, rights, roles),
    )


async def _held_by_role(
    session: AsyncSession, rights: InviteRights, roles: Sequence[RoleGrant]
) -> Mapping[uuid.UUID, Sequence[str]]:
    """The roles' permissions, looked up only where they matter (a manager's rights)."""
    if rights.delegation is None:
        return {}
    return await repository.role_permissions(session, [g.role_id for g in roles])


async def inviter_rights(
    session: AsyncSession,
    inviter_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue,
) -> InviteRights | None:
    """The rights the user who sent an invitation has now; None when they can send none (a
    user disabled or deleted, a member removed or demoted)."""
    inviter = await active_user(session, inviter_id)
    if inviter is None:
        return None
    # An administrator could have sent it with their staff token whatever their membership.
    caller = Caller(inviter.id, "", is_staff=inviter.is_admin, is_service=False)
    relation = await relation_to(session, caller, account_id, now, catalogue)
    try:
        return await invite_rights(session, relation, inviter.id, account_id, now)
    except Forbidden:
        return None


async def client_sender_rights(session: AsyncSession, client_id: str | None) -> InviteRights | None:
    """The rights a client that sent an invitation with its own token has now: staff's while
    its own tokens would be staff's (identity.web.api.auth: enabled, still acting for itself,
    still allowed identity:admin), else none. ``client_id`` None: sent before the client was
    recorded, honoured as it was then."""
    staff = InviteRights(Relation.STAFF, None)
    if client_id is None:
        return staff
    client = await get_client(session, client_id)
    may_act_as_staff = (
        client is not None
        and "client_credentials" in client.grant_types
        and SCOPE_ADMIN in client.scope.split()
    )
    return staff if may_act_as_staff else None


async def could_still_invite(
    session: AsyncSession,
    inviter_id: uuid.UUID,
    account_id: uuid.UUID,
    *,
    all_permissions: bool,
    permissions: Sequence[Grant],
    roles: Sequence[RoleGrant],
    now: datetime,
    catalogue: Catalogue,
) -> bool:
    """Whether the user who sent an invitation could send it now. An invitation hands out
    its sender's authority when it is accepted, so it lasts only as long as that authority:
    a manager removed, demoted or disabled, or who no longer holds what they invited with,
    cannot come back through a link sent before."""
    rights = await inviter_rights(session, inviter_id, account_id, now, catalogue)
    return rights is not None and rights.allows(
        all_permissions=all_permissions,
        permissions=permissions,
        roles=roles,
        held_by_role=await _held_by_role(session, rights, roles),
    )
