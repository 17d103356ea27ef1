"""Invitations: an email with a single-use link that makes its reader a member of an account.

The link's token carries 256 bits and only its digest is stored. Accepting claims the
invitation with one conditional update, so of concurrent accepts exactly one creates the
membership; the others find it already used.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.emails import deliverable_email, mailable_email, normalise_email
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.accounts.service import NewUser, create_user, prepare_user
from identity.audit.service import Actor, record_as
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import Database
from identity.db.paging import Page
from identity.errors import Conflict, Forbidden, InvalidInput, NotFound
from identity.i18n import DEFAULT_LOCALE, SUPPORTED_LOCALES
from identity.mail import messages, outbox
from identity.mail.messages import Recipient
from identity.permissions import repository
from identity.permissions.access import (
    InviteRights,
    Relation,
    check_may_invite,
    client_sender_rights,
    could_still_invite,
    hold_member_rights,
    invite_rights,
    inviter_rights,
)
from identity.permissions.catalogue import Catalogue, installed, invalid_field
from identity.permissions.grants import Delegation, Grant, RoleGrant, lapsed
from identity.permissions.members import add_member, check_grants
from identity.permissions.models import Account, Invitation, Membership
from identity.recovery.repository import email_now
from identity.settings import Settings
from identity.store.rate_limit import Limit, RateLimiter

INVITATION_TTL = timedelta(days=7)
# How recent a pending invitation the same person asks for again, the same, is taken for
# their form posted twice (a double click) rather than a second invitation.
JUST_SENT = timedelta(seconds=10)
# Where the hosted accept page lives; the link carries the token as ``?token=``.
ACCEPT_PATH = "/invitations/accept"
# An account invites a team, not a mailing list; one address is not pestered with resends.
PER_ACCOUNT = Limit("invitations-account", max=50, window=3600)
# Counted per account and address: counted per address alone, one customer inviting and
# cancelling a stranger's address used up its day, and no other customer could invite that
# person. The address's own cap, across accounts, still bounds the mail it gets.
PER_ACCOUNT_EMAIL = Limit("invitations-account-email", max=5, window=86400)
PER_EMAIL = Limit("invitations-email", max=10, window=86400)


@dataclass(frozen=True, slots=True)
class InvitationRequest:
    email: str
    all_permissions: bool = False
    permissions: Sequence[Grant] = ()
    roles: Sequence[RoleGrant] = ()
    locale: str | None = None


@dataclass(frozen=True, slots=True)
class PendingInvitation:
    """What an accept page shows before the person decides."""

    invitation: Invitation
    account: Account


def _grants(request: InvitationRequest) -> dict[str, list[dict[str, str | None]]]:
    return {
        "permissions": [
            {"name": g.name, "expires_at": g.expires_at.isoformat() if g.expires_at else None}
            for g in request.permissions
        ],
        "roles": [
            {
                "role_id": str(g.role_id),
                "expires_at": g.expires_at.isoformat() if g.expires_at else None,
            }
            for g in request.roles
        ],
    }


def _record(invitation: Invitation) -> dict[str, object]:
    return {
        "email": invitation.email,
        "all_permissions": invitation.all_permissions,
        "grants": invitation.grants,
        "expires_at": invitation.expires_at.isoformat(),
    }


def accept_link(issuer: str, token: str) -> str:
    return f"{issuer}{ACCEPT_PATH}?{urlencode({'token': token})}"


async def send_invitation_email(
    session: AsyncSession,
    invitation: Invitation,
    token: str,
    *,
    account_name: str,
    inviter_name: str | None,
    settings: Settings,
    now: datetime,
) -> None:
    """Queue the email in the caller's transaction (sent only if it commits)."""
    message = messages.invitation(
        Recipient(invitation.email, invitation.locale or DEFAULT_LOCALE),
        settings.product_name,
        accept_link(settings.issuer, token),
        inviter=inviter_name,
        account=account_name,
        expires=invitation.expires_at,
    )
    await outbox.enqueue(session, message, now)


async def _invitee(session: AsyncSession, raw: str) -> tuple[str, User | None]:
    """The address to invite, as stored, and its user if it has one. A user's address stored
    before ``deliverable_email``'s rules still signs in, so it is invited as it is; but the
    link goes only by email, so mail must be able to reach it, and one it cannot is refused
    in the words a new address would be (which tell no one that it has a user)."""
    try:
        email = normalise_email(raw)
        user = await repository.user_by_email(session, email)
        return (mailable_email(email) if user else deliverable_email(email)), user
    except InvalidInput as exc:
        raise invalid_field("email", exc.detail) from None


def _check_invitee(user: User | None, *, by_staff: bool) -> None:
    """A disabled user cannot sign in to accept. Staff, who see who is disabled anyway, are
    refused a link that could not be used (``Conflict``); anyone else is not told, as sign-in
    tells no one: a customer must not learn that another's user was disabled. Their
    invitation goes out as to anyone, and works once staff enable the user."""
    if by_staff and user is not None and user.disabled:
        raise invalid_field(
            "email",
            "This user is disabled and could not accept an invitation; enable them first.",
            Conflict,
        )


async def _limit(limiter: RateLimiter, limit: Limit, subject: str) -> None:
    await limiter.spend(limit, subject, "Too many invitations; try again later.", limit=limit.name)


async def _address_limits(limiter: RateLimiter, account_id: uuid.UUID, email: str) -> None:
    """One more email to ``email`` from this account: the account's own count of that address
    first, so that an account at its limit spends nothing of the address's shared one."""
    await _limit(limiter, PER_ACCOUNT_EMAIL, f"{account_id}:{email}")
    await _limit(limiter, PER_EMAIL, email)


async def _inviter_name(session: AsyncSession, actor: Actor) -> str | None:
    """The person sending, as the email names them; ``None`` for a client acting alone."""
    inviter = await repository.get_user(session, actor.user_id) if actor.user_id else None
    return (inviter.name or inviter.email) if inviter else None


async def invite(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    request: InvitationRequest,
    *,
    catalogue: Catalogue,
    limiter: RateLimiter,
    settings: Settings,
    now: datetime,
    delegation: Delegation | None = None,
    by_staff: bool = False,
) -> Invitation:
    """Invite ``request.email``; the email with the link is queued in this transaction. A
    manager (``delegation``) invites with no more than they hold themselves. Staff
    (``by_staff``) are refused an invitation to a disabled user (see ``_check_invitee``)."""
    email, existing = await _invitee(session, request.email)
    if request.locale is not None and request.locale not in SUPPORTED_LOCALES:
        raise invalid_field("locale", "The language must be one of " + ", ".join(SUPPORTED_LOCALES))
    # One pending invitation per address and account: invitations to the account wait for
    # each other here, or two sent at once would both find none pending.
    await repository.lock_account(session, account_id)
    account = await repository.get_account(session, account_id)
    if account is None:
        raise NotFound("No such account.")
    await check_grants(
        session, catalogue, account_id, request.permissions, request.roles, now, delegation
    )
    if existing and await repository.get_membership(session, account_id, existing.id):
        raise invalid_field("email", "This person is already a member of the account.", Conflict)
    _check_invitee(existing, by_staff=by_staff)
    await _replace_dead_invitations(session, actor, account_id, email, request, now)
    await _limit(limiter, PER_ACCOUNT, str(account_id))
    await _address_limits(limiter, account_id, email)
    token = random_token()
    invitation = Invitation(
        account_id=account_id,
        email=email,
        token_hash=digest(token),
        invited_by=actor.user_id,
        # A client's own token: the invitation lasts while the client may still act as staff.
        invited_by_client=actor.client_id if actor.user_id is None and by_staff else None,
        all_permissions=request.all_permissions,
        grants=_grants(request),
        locale=request.locale,
        created_at=now,
        expires_at=now + INVITATION_TTL,
    )
    await repository.insert_invitation(session, invitation)
    await send_invitation_email(
        session,
        invitation,
        token,
        account_name=account.name,
        inviter_name=await _inviter_name(session, actor),
        settings=settings,
        now=now,
    )
    await record_as(
        session,
        actor,
        "invitation.created",
        account_id=account_id,
        target=("invitation", invitation.id),
        new=_record(invitation),
    )
    return invitation


class AlreadyInvited(Conflict):
    """The address has a live pending invitation: resend it instead. ``just_sent``: it is
    the very one asked for, sent by the same person moments ago (their form posted twice)."""

    def __init__(self, *, just_sent: bool) -> None:
        message = "This email has a pending invitation already; resend it instead."
        super().__init__(message, errors=[{"field": "email", "message": message}])
        self.just_sent = just_sent


def _same_as_asked(
    invitation: Invitation, actor: Actor, request: InvitationRequest, now: datetime
) -> bool:
    return (
        actor.user_id is not None
        and invitation.invited_by == actor.user_id
        and now - invitation.created_at <= JUST_SENT
        and invitation.all_permissions == request.all_permissions
        and invitation.grants == _grants(request)
        and invitation.locale == request.locale
    )


async def _replace_dead_invitations(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    email: str,
    request: InvitationRequest,
    now: datetime,
) -> None:
    """Make way for a new invitation to ``email``: refused while a live one is pending
    (resend it instead); one its sender could no longer send opens as "cancelled" and cannot
    be resent, so it is cancelled here (as by ``actor``) rather than block the address until
    someone thinks of cancelling it by hand."""
    for invitation in await repository.pending_invitations(session, account_id, now, email):
        if await _sender_could_still_send(session, invitation, now):
            raise AlreadyInvited(just_sent=_same_as_asked(invitation, actor, request, now))
        await _cancelled(session, actor, invitation, now)


async def pending(
    session: AsyncSession, account_id: uuid.UUID, now: datetime, page: Page | None = None
) -> Sequence[Invitation]:
    return await repository.pending_invitations(session, account_id, now, page=page)


async def pending_one(
    session: AsyncSession, account_id: uuid.UUID, invitation_id: uuid.UUID, now: datetime
) -> Invitation:
    """One of ``pending``: an invitation accepted, cancelled or expired is not found, as it
    is not in the list."""
    invitation = await _get(session, account_id, invitation_id)
    if invitation.accepted_at or invitation.cancelled_at or invitation.expires_at <= now:
        raise NotFound("No such invitation.")
    return invitation


async def _get(
    session: AsyncSession, account_id: uuid.UUID, invitation_id: uuid.UUID
) -> Invitation:
    invitation = await repository.get_invitation(session, account_id, invitation_id)
    if invitation is None:
        raise NotFound("No such invitation.")
    return invitation


SENDER_GONE = (
    "Whoever sent this invitation can no longer give what it gives, so it cannot be accepted;"
    " cancel it and send a new one."
)
# The Users page says this refusal in the page's language, not as an invitation closed.
SENDER_GONE_REASON = "sender_gone"
BEYOND_RESENDER_REASON = "beyond_resender"


async def resend(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    invitation_id: uuid.UUID,
    *,
    relation: Relation,
    limiter: RateLimiter,
    settings: Settings,
    now: datetime,
) -> Invitation:
    """A fresh link and a fresh expiry; the previous link stops working. The resender
    (``actor``, ``relation`` to the account) must be able to send it themselves: a resend
    keeps it alive another week, so a manager could otherwise prolong an owner's "all
    permissions" invitation the owner let lapse."""
    invitation = await _get(session, account_id, invitation_id)
    if not await _sender_could_still_send(session, invitation, now):
        # Its link would open on "cancelled": nothing to send.
        raise Conflict(SENDER_GONE, reason=SENDER_GONE_REASON)
    permissions, roles = await _granted(session, invitation, now)
    try:
        await check_may_invite(
            session,
            relation,
            actor.user_id,
            account_id,
            all_permissions=invitation.all_permissions,
            permissions=permissions,
            roles=roles,
            now=now,
        )
    except Forbidden as exc:
        raise Forbidden(
            f"You can resend only an invitation you could send yourself. {exc.detail}",
            reason=BEYOND_RESENDER_REASON,
        ) from None
    if relation is Relation.STAFF:
        _check_invitee(await repository.user_by_email(session, invitation.email), by_staff=True)
    await _address_limits(limiter, account_id, invitation.email)
    token = random_token()
    expires_at = now + INVITATION_TTL
    if not await repository.renew_invitation_token(
        session, invitation.id, digest(token), expires_at, now
    ):
        raise Conflict("The invitation was accepted, cancelled or has expired; send a new one.")
    invitation.expires_at = expires_at
    account = await repository.get_account(session, account_id)
    assert account is not None  # the invitation's foreign key
    await send_invitation_email(
        session,
        invitation,
        token,
        account_name=account.name,
        inviter_name=await _inviter_name(session, actor),
        settings=settings,
        now=now,
    )
    await record_as(
        session,
        actor,
        "invitation.resent",
        account_id=account_id,
        target=("invitation", invitation.id),
        new={"expires_at": expires_at.isoformat()},
    )
    return invitation


async def cancel(
    session: AsyncSession,
    actor: Actor,
    account_id: uuid.UUID,
    invitation_id: uuid.UUID,
    now: datetime,
) -> None:
    """Cancel a pending invitation. One accepted, cancelled or expired is not found, as
    ``pending_one`` (the read) answers: nothing is left to cancel, and nothing is recorded."""
    invitation = await pending_one(session, account_id, invitation_id, now)
    if not await _cancelled(session, actor, invitation, now):  # ended since it was read
        raise NotFound("No such invitation.")


async def cancelled_already(
    session: AsyncSession, account_id: uuid.UUID, invitation_id: uuid.UUID
) -> bool:
    """Whether the invitation was cancelled (for a cancel posted twice, which finds it so)."""
    invitation = await repository.get_invitation(session, account_id, invitation_id)
    return invitation is not None and invitation.cancelled_at is not None


async def _cancelled(
    session: AsyncSession, actor: Actor, invitation: Invitation, now: datetime
) -> bool:
    """Cancel a pending invitation and record it; False when it was accepted, cancelled or
    expired meanwhile."""
    if not await repository.cancel_invitation(session, invitation.id, now):
        return False
    await record_as(
        session,
        actor,
        "invitation.cancelled",
        account_id=invitation.account_id,
        target=("invitation", invitation.id),
        old=_record(invitation),
    )
    return True


async def end_for_left_address(
    session: AsyncSession, actor: Actor, email: str, now: datetime
) -> None:
    """Cancel the pending invitations to ``email``, which its user has just left for another
    sign-in address, each recorded as cancelled by ``actor`` (who moved the user).

    While the address was the user's, its link asked whoever opened it to sign in as that
    user. Left behind, it would let whoever reads the old mailbox (perhaps the reason for
    the move) join as a new person with what was meant for the user, as a reset link
    mailed there would take their account: both end with the move. The inviter sends a new
    invitation if they still want one.
    """
    for invitation in await repository.pending_invitations_to(session, email, now):
        await _cancelled(session, actor, invitation, now)


# --- accepting -----------------------------------------------------------------------------


INVALID_LINK = "This invitation link is not valid. Ask for a new invitation."
CANCELLED = "This invitation was cancelled. Ask for a new invitation."


def _usable(invitation: Invitation | None, now: datetime) -> Invitation:
    """The invitation if it can be accepted; else an error whose ``reason`` (``invalid``,
    ``accepted``, ``cancelled``, ``expired``) lets a page explain it in its language."""
    if invitation is None:
        raise NotFound(INVALID_LINK, reason="invalid")
    if invitation.accepted_at is not None:
        raise Conflict("This invitation has been accepted already.", reason="accepted")
    if invitation.cancelled_at is not None:
        raise Conflict(CANCELLED, reason="cancelled")
    if invitation.expires_at <= now:
        raise Conflict("This invitation has expired. Ask for a new invitation.", reason="expired")
    return invitation


async def _open(
    session: AsyncSession, token: str, now: datetime, *, accepting: bool = False
) -> Invitation:
    """The invitation a link names if it can be accepted: ``_usable``, and its sender could
    still send it; else it counts as cancelled.

    ``accepting``: the sender's rights are held until the membership commits, taken as a
    change by the sender would take them (``hold_member_rights``): read unlocked, a removal
    of the sender's `users` could commit between the check and the membership, which was
    then made on rights the sender no longer had."""
    invitation = _usable(await repository.invitation_by_token(session, digest(token)), now)
    if accepting and invitation.invited_by is not None:
        # Whether the sender is still enabled is read by the check below.
        await hold_member_rights(session, invitation.account_id, invitation.invited_by)
    if not await _sender_could_still_send(session, invitation, now):
        raise Conflict(CANCELLED, reason="cancelled")
    return invitation


async def _sender_could_still_send(
    session: AsyncSession, invitation: Invitation, now: datetime
) -> bool:
    """``could_still_invite`` for the invitation's sender: its user, else the client that
    sent it with its own token (staff, who may send anything, while it still is)."""
    if invitation.invited_by is None:
        return await client_sender_rights(session, invitation.invited_by_client) is not None
    permissions, roles = await _granted(session, invitation, now)
    return await could_still_invite(
        session,
        invitation.invited_by,
        invitation.account_id,
        all_permissions=invitation.all_permissions,
        permissions=permissions,
        roles=roles,
        now=now,
        catalogue=Catalogue(installed()),
    )


async def invitation_for_token(
    session: AsyncSession, token: str, now: datetime | None = None
) -> PendingInvitation:
    """The invitation a link names, if it can still be accepted (for the accept page)."""
    invitation = await _open(session, token, now or utcnow())
    account = await repository.get_account(session, invitation.account_id)
    assert account is not None  # the invitation's foreign key
    return PendingInvitation(invitation, account)


async def _claim(session: AsyncSession, invitation: Invitation, now: datetime) -> None:
    if not await repository.claim_invitation(session, invitation.id, invitation.token_hash, now):
        # Another accept won the race, or since it was read the invitation was resent,
        # cancelled or expired: read again after the claim's write, it tells which.
        _usable(await repository.invitation_by_token(session, invitation.token_hash), now)
        raise Conflict("This invitation has been accepted already.", reason="accepted")


Granted = tuple[list[Grant], list[RoleGrant]]


async def _granted(session: AsyncSession, invitation: Invitation, now: datetime) -> Granted:
    """The permissions and roles the invitation still gives: those whose expiry has passed,
    a permission taken out of the catalogue and a role deleted since it was sent are left
    out (not an error for the invitee, nor held against its sender)."""
    return (await _granted_by_each(session, [invitation], now))[invitation.id]


async def _granted_by_each(
    session: AsyncSession, sent: Sequence[Invitation], now: datetime
) -> dict[uuid.UUID, Granted]:
    """``_granted`` for each invitation, in two statements whatever their number."""

    def until(grant: dict[str, Any]) -> datetime | None:
        return datetime.fromisoformat(grant["expires_at"]) if grant["expires_at"] else None

    asked = {
        invitation.id: (
            [Grant(g["name"], until(g)) for g in invitation.grants.get("permissions", [])],
            [
                RoleGrant(uuid.UUID(g["role_id"]), until(g))
                for g in invitation.grants.get("roles", [])
            ],
        )
        for invitation in sent
    }
    names = {g.name for permissions, _ in asked.values() for g in permissions}
    role_ids = {g.role_id for _, roles in asked.values() for g in roles}
    known = await Catalogue(installed()).among(session, sorted(names))
    alive = {role.id for role in await repository.roles_by_id(session, sorted(role_ids))}
    return {
        invitation_id: (
            [g for g in permissions if g.name in known and not lapsed(g.expires_at, now)],
            [g for g in roles if g.role_id in alive and not lapsed(g.expires_at, now)],
        )
        for invitation_id, (permissions, roles) in asked.items()
    }


def _sender(invitation: Invitation) -> tuple[uuid.UUID | None, str | None]:
    return invitation.invited_by, invitation.invited_by_client


async def _sender_rights(
    session: AsyncSession, invitation: Invitation, now: datetime, catalogue: Catalogue
) -> InviteRights | None:
    """What the invitation's sender may send now: its user's rights, else those of the
    client that sent it with its own token."""
    if invitation.invited_by is None:
        return await client_sender_rights(session, invitation.invited_by_client)
    return await inviter_rights(
        session, invitation.invited_by, invitation.account_id, now, catalogue
    )


async def resendable(
    session: AsyncSession,
    relation: Relation,
    user_id: uuid.UUID | None,
    account_id: uuid.UUID,
    sent: Sequence[Invitation],
    now: datetime,
) -> set[uuid.UUID]:
    """Those of ``sent`` (the account's pending invitations) that ``resend`` would send
    again for this resender rather than refuse: their sender could still send them and so
    could the resender. For a page that lists them all: its statements grow with the
    number of different senders, not of invitations."""
    try:
        mine = await invite_rights(session, relation, user_id, account_id, now)
    except Forbidden:
        return set()
    granted = await _granted_by_each(session, sent, now)
    role_ids = sorted({g.role_id for _, roles in granted.values() for g in roles})
    held_by_role = await repository.role_permissions(session, role_ids) if role_ids else {}
    catalogue = Catalogue(installed())
    senders: dict[tuple[uuid.UUID | None, str | None], InviteRights | None] = {}
    for invitation in sent:
        if _sender(invitation) not in senders:
            senders[_sender(invitation)] = await _sender_rights(session, invitation, now, catalogue)

    def within(rights: InviteRights | None, invitation: Invitation) -> bool:
        permissions, roles = granted[invitation.id]
        return rights is not None and rights.allows(
            all_permissions=invitation.all_permissions,
            permissions=permissions,
            roles=roles,
            held_by_role=held_by_role,
        )

    return {
        invitation.id
        for invitation in sent
        if within(mine, invitation) and within(senders[_sender(invitation)], invitation)
    }


async def _enrol(
    session: AsyncSession, invitation: Invitation, user: User, actor: Actor, now: datetime
) -> Membership:
    """The membership the (claimed) invitation describes, with the grants still valid."""
    permissions, roles = await _granted(session, invitation, now)
    membership = await add_member(
        session,
        actor,
        invitation.account_id,
        user.id,
        all_permissions=invitation.all_permissions,
        permissions=permissions,
        roles=roles,
        catalogue=Catalogue(installed()),
        now=now,
    )
    await record_as(
        session,
        actor,
        "invitation.accepted",
        account_id=invitation.account_id,
        target=("invitation", invitation.id),
        new={"user_id": str(user.id)},
    )
    return membership


async def accept_invitation_as_existing_user(
    session: AsyncSession,
    token: str,
    user: User,
    *,
    now: datetime | None = None,
    ip: str | None = None,
    request_id: str | None = None,
) -> Membership:
    """``user`` (signed in) joins; the invitation must be addressed to their email. One who
    joined the account another way meanwhile is told so (``Conflict``, reason ``member``):
    the membership refused deep inside would look like no answer at all."""
    now = now or utcnow()
    invitation = await _open(session, token, now, accepting=True)
    # The user's row before the invitation's, as a change of their email takes them (it
    # cancels the invitations to the address left): claimed first, the membership's foreign
    # key then waited for a change holding the row, which waited for the claim. Share-locked,
    # the address is compared as committed, and a change starting later waits.
    email = await email_now(session, user.id)
    if email is None or normalise_email(email) != invitation.email:
        raise Forbidden(
            f"This invitation was sent to {invitation.email}, but you are signed in as "
            f"{email or user.email}. Sign in with the invited address to accept it."
        )
    if await repository.get_membership(session, invitation.account_id, user.id) is not None:
        raise Conflict("You are a member of this account already.", reason="member")
    await _claim(session, invitation, now)
    return await _enrol(session, invitation, user, Actor(user.id, None, ip, request_id), now)


@dataclass(frozen=True, slots=True)
class SignUp:
    """An invitee's new user, checked and hashed by ``prepare_sign_up`` for
    ``accept_invitation_as_new_user`` to store."""

    token: str
    user: NewUser


async def prepare_sign_up(
    db: Database,
    passwords: Passwords,
    token: str,
    *,
    name: str,
    password: str,
    now: datetime | None = None,
) -> SignUp:
    """Check a sign-up from an invitation link and hash its password, in no transaction:
    the invitation (its email is what the policy compares the password with) is read in a
    short one of its own, and nothing is claimed yet, so a refused password leaves it usable.

    Raises what ``invitation_for_token`` raises, ``InvalidInput`` (name) or
    ``PolicyViolation`` (password, with ``reasons``).
    """
    async with db.transaction() as session:
        invitation = await _open(session, token, now or utcnow())
    new_user = await prepare_user(passwords, email=invitation.email, password=password, name=name)
    return SignUp(token, new_user)


async def accept_invitation_as_new_user(
    session: AsyncSession,
    sign_up: SignUp,
    *,
    now: datetime | None = None,
    ip: str | None = None,
    request_id: str | None = None,
    locale: str | None = None,
) -> tuple[User, Membership]:
    """The user ``prepare_sign_up`` made, stored, and the membership, in the caller's
    transaction. The invitation is claimed here, so of racing sign-ups one succeeds; the
    others get ``Conflict``, as does an email that has a user already (they accept signed
    in instead). The user's language is the one they signed up in (``locale``), else the
    invitation's: their ID tokens' ``locale`` and the emails we send them later use it."""
    now = now or utcnow()
    invitation = await _open(session, sign_up.token, now, accepting=True)
    await _claim(session, invitation, now)
    if await repository.user_by_email(session, invitation.email) is not None:
        raise Conflict("An account with this email exists already; sign in to accept.")
    user = await create_user(session, sign_up.user, locale=locale or invitation.locale)
    membership = await _enrol(session, invitation, user, Actor(user.id, None, ip, request_id), now)
    return user, membership
