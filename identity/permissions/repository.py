"""All SQL for accounts, memberships, grants, roles, registered permissions and invitations."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    ColumnElement,
    and_,
    bindparam,
    delete,
    false,
    func,
    or_,
    select,
    tuple_,
    union_all,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.db.engine import is_lock_unavailable
from identity.db.paging import Page, paged
from identity.db.row_locks import lock_rows
from identity.display_names import same_name
from identity.permissions.models import (
    Account,
    Invitation,
    Membership,
    MembershipPermission,
    MembershipRole,
    Permission,
    Role,
    RolePermission,
)
from identity.tokens.codes import end_unredeemed
from identity.tokens.models import AuthorizationCode, RefreshToken
from identity.tokens.refresh import revoke_matching
from identity.tokens.revocations import deny_recorded


class Duplicate(Exception):
    """A unique constraint refused the row (perhaps after a race); the transaction must end."""


async def _flush_new(session: AsyncSession, row: object) -> None:
    session.add(row)
    try:
        await session.flush()
    except IntegrityError:
        raise Duplicate from None


def _live(expires_at: ColumnElement[datetime | None], now: datetime) -> ColumnElement[bool]:
    # Expired grants stop counting at read time, not when housekeeping deletes them (a month
    # later: identity.housekeeping.repository).
    return or_(expires_at.is_(None), expires_at > now)


# --- accounts --------------------------------------------------------------------------


async def insert_account(session: AsyncSession, account: Account) -> None:
    session.add(account)
    await session.flush()


async def get_account(session: AsyncSession, account_id: uuid.UUID) -> Account | None:
    return await session.scalar(select(Account).where(Account.id == account_id))


async def list_accounts(session: AsyncSession, page: Page) -> Sequence[Account]:
    statement = select(Account).order_by(Account.created_at, Account.id)
    return (await session.scalars(paged(statement, page))).all()


async def accounts_of_user(
    session: AsyncSession, user_id: uuid.UUID, page: Page | None = None
) -> Sequence[tuple[Account, Membership]]:
    statement = (
        select(Account, Membership)
        .join(Membership, Membership.account_id == Account.id)
        .where(Membership.user_id == user_id)
        .order_by(Account.name, Account.id)  # one membership per account: a total order
    )
    result = await session.execute(paged(statement, page))
    return [(row[0], row[1]) for row in result]


# Built once: asked on every sign-in.
_ACCOUNT_IDS = select(Membership.account_id).where(Membership.user_id == bindparam("user_id"))


async def account_ids_of_user(session: AsyncSession, user_id: uuid.UUID) -> set[uuid.UUID]:
    return set(await session.scalars(_ACCOUNT_IDS, {"user_id": user_id}))


async def lock_account(session: AsyncSession, account_id: uuid.UUID) -> None:
    """Serialise owner changes of one account until the transaction ends.

    A no-op write: on PostgreSQL it takes the row's lock (later statements of a waiting
    transaction then see the winner's commit), on SQLite it takes the database's write
    lock before anything is read, so two "remove the other owner" requests cannot both
    count two owners.
    """
    await lock_rows(session, Account.name, Account.id == account_id)


# --- users -----------------------------------------------------------------------------


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await session.scalar(select(User).where(User.id == user_id))


async def user_by_email(session: AsyncSession, email: str) -> User | None:
    return await session.scalar(select(User).where(User.email == email))


async def list_users(
    session: AsyncSession, email_parts: Sequence[str], page: Page
) -> Sequence[User]:
    """Users in email order; with ``email_parts``, those whose email holds any of them."""
    statement = paged(select(User).order_by(User.email), page)
    if email_parts:
        statement = statement.where(
            or_(*(User.email.contains(part, autoescape=True) for part in email_parts))
        )
    return (await session.scalars(statement)).all()


# --- memberships -----------------------------------------------------------------------


async def get_membership(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID
) -> Membership | None:
    return await session.scalar(
        select(Membership).where(Membership.account_id == account_id, Membership.user_id == user_id)
    )


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """The columns a decision needs, without the cost of loading ORM objects."""

    id: uuid.UUID
    user_id: uuid.UUID
    account_id: uuid.UUID
    is_owner: bool
    all_permissions: bool


# In the order of MembershipRow's fields.
_ROW_COLUMNS = (
    Membership.id,
    Membership.user_id,
    Membership.account_id,
    Membership.is_owner,
    Membership.all_permissions,
)


async def live_memberships_for(
    session: AsyncSession, pairs: Iterable[tuple[uuid.UUID, uuid.UUID]]
) -> list[MembershipRow]:
    """The memberships among (user_id, account_id) ``pairs`` of users not disabled, in one
    query: a disabled user keeps their memberships, but they allow nothing."""
    wanted = list(pairs)
    if not wanted:
        return []
    result = await session.execute(
        select(*_ROW_COLUMNS)
        .join(User, User.id == Membership.user_id)
        .where(
            tuple_(Membership.user_id, Membership.account_id).in_(wanted),
            User.disabled.is_(False),
        )
    )
    return [MembershipRow(*row) for row in result]


async def role_holders(
    session: AsyncSession, role_id: uuid.UUID, now: datetime
) -> list[MembershipRow]:
    """The memberships, in any account, holding the role unexpired, in one query."""
    result = await session.execute(
        select(*_ROW_COLUMNS)
        .join(MembershipRole, MembershipRole.membership_id == Membership.id)
        .where(MembershipRole.role_id == role_id, _live(MembershipRole.expires_at, now))
        # One order for every caller: concurrent revocations then lock tokens in one order.
        .order_by(Membership.account_id, Membership.user_id)
    )
    return [MembershipRow(*row) for row in result]


async def members(
    session: AsyncSession, account_id: uuid.UUID, page: Page | None = None
) -> Sequence[tuple[Membership, User]]:
    # Emails are unique: the order is total.
    statement = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account_id)
        .order_by(User.email)
    )
    result = await session.execute(paged(statement, page))
    return [(row[0], row[1]) for row in result]


async def insert_membership(session: AsyncSession, membership: Membership) -> None:
    """Raises ``Duplicate`` when the user already belongs to the account."""
    await _flush_new(session, membership)


async def lock_membership(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID
) -> Membership | None:
    """The membership, fresh, with its row locked until the transaction ends (None if gone).

    Edits of one member's grants delete and re-insert rows: two at once would insert the
    same grant twice, and each would record "old" grants the other was replacing. The lock
    is a no-op write, as ``lock_account``'s: on PostgreSQL the row's lock (a waiting edit
    then reads the winner's grants), on SQLite the database's write lock, taken before the
    grants are read. ``populate_existing``: the session may hold the row as read before.
    """
    where = (Membership.account_id == account_id, Membership.user_id == user_id)
    await lock_rows(session, Membership.all_permissions, *where)
    return await session.scalar(
        select(Membership).where(*where).execution_options(populate_existing=True)
    )


async def delete_membership(session: AsyncSession, membership_id: uuid.UUID) -> None:
    await session.execute(delete(Membership).where(Membership.id == membership_id))


async def other_enabled_owners(
    session: AsyncSession, account_id: uuid.UUID, user_id: uuid.UUID
) -> int:
    """How many owners of the account besides ``user_id`` are not disabled: those who would
    be left able to sign in and act for it."""
    count = await session.scalar(
        select(func.count())
        .select_from(Membership)
        .join(User, User.id == Membership.user_id)
        .where(
            Membership.account_id == account_id,
            Membership.is_owner.is_(True),
            Membership.user_id != user_id,
            User.disabled.is_(False),
        )
    )
    return int(count or 0)


# --- grants ----------------------------------------------------------------------------


async def permission_grants(
    session: AsyncSession, membership_ids: Sequence[uuid.UUID]
) -> Sequence[MembershipPermission]:
    """Every direct grant, expired ones too (the API shows them with their expiry) until
    housekeeping deletes them."""
    result = await session.scalars(
        select(MembershipPermission)
        .where(MembershipPermission.membership_id.in_(membership_ids))
        .order_by(MembershipPermission.permission)
    )
    return result.all()


async def role_grants(
    session: AsyncSession, membership_ids: Sequence[uuid.UUID]
) -> Sequence[tuple[MembershipRole, Role]]:
    result = await session.execute(
        select(MembershipRole, Role)
        .join(Role, Role.id == MembershipRole.role_id)
        .where(MembershipRole.membership_id.in_(membership_ids))
        .order_by(Role.name)
    )
    return [(row[0], row[1]) for row in result]


async def live_permissions(
    session: AsyncSession, membership_ids: Sequence[uuid.UUID], now: datetime
) -> Sequence[tuple[uuid.UUID, str]]:
    """(membership id, permission) from unexpired direct grants and unexpired roles, at once."""
    if not membership_ids:
        return []
    direct = select(MembershipPermission.membership_id, MembershipPermission.permission).where(
        MembershipPermission.membership_id.in_(membership_ids),
        _live(MembershipPermission.expires_at, now),
    )
    via_roles = (
        select(MembershipRole.membership_id, RolePermission.permission)
        .join(RolePermission, RolePermission.role_id == MembershipRole.role_id)
        .where(
            MembershipRole.membership_id.in_(membership_ids),
            _live(MembershipRole.expires_at, now),
        )
    )
    result = await session.execute(union_all(direct, via_roles))
    return [(row[0], row[1]) for row in result]


async def held_until(
    session: AsyncSession, membership_id: uuid.UUID, now: datetime
) -> Sequence[tuple[str, datetime | None]]:
    """(permission, until when) of one membership's unexpired direct grants and roles; a
    permission held several ways appears once for each."""
    direct = select(MembershipPermission.permission, MembershipPermission.expires_at).where(
        MembershipPermission.membership_id == membership_id,
        _live(MembershipPermission.expires_at, now),
    )
    via_roles = (
        select(RolePermission.permission, MembershipRole.expires_at)
        .join(MembershipRole, RolePermission.role_id == MembershipRole.role_id)
        .where(
            MembershipRole.membership_id == membership_id,
            _live(MembershipRole.expires_at, now),
        )
    )
    result = await session.execute(union_all(direct, via_roles))
    return [(row[0], row[1]) for row in result]


async def put_permission_grant(
    session: AsyncSession, membership_id: uuid.UUID, permission: str, expires_at: datetime | None
) -> None:
    """Grant, or replace the expiry of an existing grant."""
    await delete_permission_grant(session, membership_id, permission)
    session.add(
        MembershipPermission(
            membership_id=membership_id, permission=permission, expires_at=expires_at
        )
    )
    await session.flush()


async def delete_permission_grant(
    session: AsyncSession, membership_id: uuid.UUID, permission: str
) -> bool:
    result = await session.execute(
        delete(MembershipPermission).where(
            MembershipPermission.membership_id == membership_id,
            MembershipPermission.permission == permission,
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def put_role_grant(
    session: AsyncSession, membership_id: uuid.UUID, role_id: uuid.UUID, expires_at: datetime | None
) -> None:
    await delete_role_grant(session, membership_id, role_id)
    session.add(MembershipRole(membership_id=membership_id, role_id=role_id, expires_at=expires_at))
    await session.flush()


async def delete_role_grant(
    session: AsyncSession, membership_id: uuid.UUID, role_id: uuid.UUID
) -> bool:
    result = await session.execute(
        delete(MembershipRole).where(
            MembershipRole.membership_id == membership_id, MembershipRole.role_id == role_id
        )
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def clear_grants(session: AsyncSession, membership_id: uuid.UUID) -> None:
    await session.execute(
        delete(MembershipPermission).where(MembershipPermission.membership_id == membership_id)
    )
    await session.execute(
        delete(MembershipRole).where(MembershipRole.membership_id == membership_id)
    )


async def revoke_refresh_tokens(
    session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> None:
    """A member lost rights in an account: refresh tokens naming it stop working at once."""
    await revoke_matching(
        session, now, RefreshToken.user_id == user_id, RefreshToken.account_id == account_id
    )


async def end_member_tokens(
    session: AsyncSession, user_id: uuid.UUID, account_id: uuid.UUID, now: datetime
) -> None:
    """A member left the account: their codes not yet redeemed and refresh tokens for it stop
    working, and the access tokens recorded as issued for it are denied. Introspection
    already answers those inactive while the user is no member; denied, they stay so if the
    member is added back (``iat`` against the new membership's start would compare two
    machines' clocks), and a code of the membership that ended cannot start a new family
    then either."""
    await end_unredeemed(session, user_id, now, account_id=account_id)
    await revoke_refresh_tokens(session, user_id, account_id, now)
    await deny_recorded(
        session,
        now,
        and_(RefreshToken.user_id == user_id, RefreshToken.account_id == account_id),
        and_(AuthorizationCode.user_id == user_id, AuthorizationCode.account_id == account_id),
    )


# --- roles -----------------------------------------------------------------------------


async def get_role(session: AsyncSession, role_id: uuid.UUID) -> Role | None:
    return await session.scalar(select(Role).where(Role.id == role_id))


async def roles_by_id(session: AsyncSession, role_ids: Sequence[uuid.UUID]) -> Sequence[Role]:
    """The roles among ``role_ids``, about to be granted: share-locked (PostgreSQL) until the
    transaction ends, so a role is not deleted or changed under a grant of it. A delete waits
    for the grant (and then sees its holder), or the grant waits and finds the role gone;
    without the lock the grant's insert met the deleted role's foreign key, or deadlocked
    with the delete's cascade. In id order, so two grants lock in one order."""
    statement = (
        select(Role).where(Role.id.in_(role_ids)).order_by(Role.id).with_for_update(read=True)
    )
    return (await session.scalars(statement)).all()


async def hold_roles_of(session: AsyncSession, membership_id: uuid.UUID) -> None:
    """Share-lock (PostgreSQL) the roles the membership holds until the transaction ends, as
    ``roles_by_id`` does those about to be granted: a change or deletion of one in progress
    (``lock_role``) is waited for, and its permissions are then read as it left them; one
    starting later waits for the caller. SQLite's one writer needs no row locks."""
    held = select(MembershipRole.role_id).where(MembershipRole.membership_id == membership_id)
    await session.execute(
        select(Role.id).where(Role.id.in_(held)).order_by(Role.id).with_for_update(read=True)
    )


async def lock_role(session: AsyncSession, role_id: uuid.UUID) -> Role | None:
    """The role, fresh, locked until the transaction ends, before it is changed or deleted.

    Two edits of one role replace its permission rows (delete, insert): at once they
    inserted the same rows twice. Its holders, whose tokens a change ends, must be read
    after every grant of the role in progress has committed. A no-op write, as
    ``lock_account``: it waits for grants holding the role share-locked (``roles_by_id``),
    and for changes judged by rights that come through it (``hold_roles_of``).
    """
    await lock_rows(session, Role.name, Role.id == role_id)
    return await session.scalar(
        select(Role).where(Role.id == role_id).execution_options(populate_existing=True)
    )


async def lock_several_roles(session: AsyncSession, role_ids: Sequence[uuid.UUID]) -> None:
    """Lock the roles as ``lock_role`` does, until the transaction ends, never waiting for
    one while holding another (PostgreSQL; SQLite's one writer needs no row locks).

    Members' changes share-lock roles in two batches, each in id order: those the acting
    member holds (``hold_roles_of``), then those granted (``roles_by_id``). Whatever order
    several roles were locked in, a member holding one of them and granting one this
    transaction had locked already would close a cycle, which PostgreSQL breaks by aborting
    one side. So all are taken at once without waiting (NOWAIT); when one is busy, those
    taken are let go (the savepoint), each is waited for alone and let go, and all are tried
    again. Roles are locked so only by the roles.toml copy, at a process's start.
    """
    if not role_ids or session.get_bind().dialect.name != "postgresql":
        return
    locked = select(Role.id).where(Role.id.in_(role_ids)).order_by(Role.id)
    while True:
        try:
            async with session.begin_nested():
                await session.execute(locked.with_for_update(key_share=True, nowait=True))
            return
        except DBAPIError as error:
            if not is_lock_unavailable(error):
                raise
        for role_id in sorted(role_ids):
            async with session.begin_nested() as alone:
                await session.execute(
                    select(Role.id).where(Role.id == role_id).with_for_update(key_share=True)
                )
                await alone.rollback()


async def list_roles(
    session: AsyncSession, account_id: uuid.UUID | None, page: Page | None = None
) -> Sequence[Role]:
    """Templates when ``account_id`` is None, else that account's own roles."""
    owner = Role.account_id.is_(None) if account_id is None else Role.account_id == account_id
    statement = select(Role).where(owner).order_by(Role.name, Role.id)
    return (await session.scalars(paged(statement, page))).all()


async def role_name_taken(
    session: AsyncSession, account_id: uuid.UUID | None, name: str, other_than: uuid.UUID | None
) -> bool:
    # The unique constraint cannot see duplicates among templates (NULL account_id), so ask.
    # Compared here, not with SQL's lower(): SQLite's folds ASCII letters only ("Équipe" stayed
    # "Équipe", so even the same name passed), and same_name also equates "Straße" and
    # "STRASSE", and names that differ only by what nobody sees on the Users page. An account
    # has a handful of roles, the templates a few more.
    owner = Role.account_id.is_(None) if account_id is None else Role.account_id == account_id
    statement = select(Role.name).where(owner)
    if other_than is not None:
        statement = statement.where(Role.id != other_than)
    return any(same_name(taken, name) for taken in await session.scalars(statement))


async def insert_role(session: AsyncSession, role: Role) -> None:
    await _flush_new(session, role)


async def delete_role(session: AsyncSession, role_id: uuid.UUID) -> None:
    await session.execute(delete(Role).where(Role.id == role_id))


async def role_permissions(
    session: AsyncSession, role_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[str]]:
    result = await session.execute(
        select(RolePermission.role_id, RolePermission.permission)
        .where(RolePermission.role_id.in_(role_ids))
        .order_by(RolePermission.permission)
    )
    found: dict[uuid.UUID, list[str]] = {role_id: [] for role_id in role_ids}
    for role_id, permission in result:
        found[role_id].append(permission)
    return found


async def replace_role_permissions(
    session: AsyncSession, role_id: uuid.UUID, permissions: Iterable[str]
) -> None:
    await session.execute(delete(RolePermission).where(RolePermission.role_id == role_id))
    session.add_all(RolePermission(role_id=role_id, permission=name) for name in permissions)
    await session.flush()


# The key of the PostgreSQL advisory lock below; any constant no other lock uses.
_TEMPLATES_LOCK = 0x726F6C65  # "role"
_CATALOGUE_LOCK = 0x70657273  # "pers"


async def lock_templates(session: AsyncSession) -> None:
    """Until the transaction ends, be the only process rewriting the file templates.

    Processes that start together copy roles.toml at once, and two that replace a
    template's permissions together insert the same rows: a unique violation. SQLite needs
    no lock: the first INSERT of the copy takes its single write lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_TEMPLATES_LOCK)))


async def lock_role_names(session: AsyncSession, account_id: uuid.UUID | None) -> None:
    """Until the transaction ends, be the only one naming roles of ``account_id`` (the
    templates when None).

    Role names are unique in their account without regard to case, which ``role_name_taken``
    checks and no constraint can see (nor any duplicate among templates, whose account_id is
    null): two creations of one name at once both found it free. An account's roles wait on
    its row (``lock_account``); templates on the lock of the file templates' copy, which
    names templates too. SQLite: any write statement, even one changing no row, takes its
    single write lock before the name is looked up.
    """
    if account_id is not None:
        await lock_account(session, account_id)
    elif session.get_bind().dialect.name == "postgresql":
        await lock_templates(session)
    else:
        await lock_rows(session, Role.name, false())


async def insert_template_if_missing(session: AsyncSession, key: str, name: str) -> None:
    """The template of policies/roles.toml ``key``; racing processes create it only once."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    await session.execute(
        dialect.insert(Role)
        .values(id=uuid.uuid4(), key=key, name=name, name_es="", description="")
        .on_conflict_do_nothing(index_elements=["key"])
    )


async def file_templates(session: AsyncSession) -> Sequence[Role]:
    # In id order, as the roles.toml copy rewrites them; it has locked all it rewrites
    # before the first, without waiting while it holds any (``lock_several_roles``).
    return (
        await session.scalars(select(Role).where(Role.key.is_not(None)).order_by(Role.id))
    ).all()


# --- registered permissions -------------------------------------------------------------


async def registered_permissions(session: AsyncSession) -> Sequence[Permission]:
    return (await session.scalars(select(Permission).order_by(Permission.name))).all()


async def registered_among(session: AsyncSession, names: Iterable[str]) -> set[str]:
    wanted = list(set(names))
    if not wanted:
        return set()
    result = await session.scalars(select(Permission.name).where(Permission.name.in_(wanted)))
    return set(result.all())


async def lock_catalogue(session: AsyncSession) -> None:
    """Until the transaction ends, be the only one registering a permission: each one
    registered is measured against what the catalogue already holds (``registration``'s size
    rule), which two registrations at once would each measure without the other. SQLite: any
    write, even one matching no row, takes its single write lock first."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_CATALOGUE_LOCK)))
    else:
        await lock_rows(session, Permission.name, false())


async def registered_names(session: AsyncSession) -> set[str]:
    return set((await session.scalars(select(Permission.name))).all())


async def insert_permission(session: AsyncSession, permission: Permission) -> None:
    """Raises ``Duplicate`` when the name is registered already."""
    await _flush_new(session, permission)


# --- invitations -----------------------------------------------------------------------


async def insert_invitation(session: AsyncSession, invitation: Invitation) -> None:
    session.add(invitation)
    await session.flush()


async def get_invitation(
    session: AsyncSession, account_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation | None:
    return await session.scalar(
        select(Invitation).where(
            Invitation.id == invitation_id, Invitation.account_id == account_id
        )
    )


async def invitation_by_token(session: AsyncSession, token_hash: str) -> Invitation | None:
    return await session.scalar(
        select(Invitation)
        .where(Invitation.token_hash == token_hash)
        # As stored now: after a failed claim the session holds the row as read before it.
        .execution_options(populate_existing=True)
    )


async def pending_invitations(
    session: AsyncSession,
    account_id: uuid.UUID,
    now: datetime,
    email: str | None = None,
    page: Page | None = None,
) -> Sequence[Invitation]:
    statement = (
        select(Invitation)
        .where(
            Invitation.account_id == account_id,
            Invitation.accepted_at.is_(None),
            Invitation.cancelled_at.is_(None),
            Invitation.expires_at > now,
        )
        .order_by(Invitation.created_at, Invitation.id)
    )
    if email is not None:
        statement = statement.where(Invitation.email == email)
    return (await session.scalars(paged(statement, page))).all()


async def pending_invitations_to(
    session: AsyncSession, email: str, now: datetime
) -> Sequence[Invitation]:
    """The invitations to ``email`` that can still be accepted, to any account."""
    return (
        await session.scalars(
            select(Invitation)
            .where(
                Invitation.email == email,
                Invitation.accepted_at.is_(None),
                Invitation.cancelled_at.is_(None),
                Invitation.expires_at > now,
            )
            .order_by(Invitation.created_at)
        )
    ).all()


async def claim_invitation(
    session: AsyncSession, invitation_id: uuid.UUID, token_hash: str, now: datetime
) -> bool:
    """Mark the invitation accepted if it still can be, by the link ``token_hash`` (a resend
    replaces the link, and ends the one read before it): of racing accepts, one wins."""
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.token_hash == token_hash,
            Invitation.accepted_at.is_(None),
            Invitation.cancelled_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(accepted_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def cancel_invitation(session: AsyncSession, invitation_id: uuid.UUID, now: datetime) -> bool:
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.accepted_at.is_(None),
            Invitation.cancelled_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(cancelled_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def renew_invitation_token(
    session: AsyncSession,
    invitation_id: uuid.UUID,
    token_hash: str,
    expires_at: datetime,
    now: datetime,
) -> bool:
    """A new link for a pending invitation; the previous link stops working. An expired one
    stays expired: its address may have been invited afresh since."""
    result = await session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation_id,
            Invitation.accepted_at.is_(None),
            Invitation.cancelled_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(token_hash=token_hash, expires_at=expires_at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
