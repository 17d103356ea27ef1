"""All SQL of housekeeping: which rows can no longer change any answer, and their deletion in
batches.

Each rule says when a row of one table is dead, and why nothing needs it after that. Users,
accounts, memberships, roles, clients, signing keys, consents, authenticator secrets and the
audit log have no rule: they are deleted by people, or never. A grant's deletion is audited
(``audit``), so the rule hands back what its entry needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Column,
    ColumnElement,
    Row,
    and_,
    delete,
    exists,
    inspect,
    not_,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import PasswordResetToken
from identity.db.base import Base
from identity.mail.models import OutgoingEmail
from identity.mfa.models import RecoveryCode
from identity.permissions.models import (
    Invitation,
    Membership,
    MembershipPermission,
    MembershipRole,
)
from identity.sessions.models import BrowserSession
from identity.tokens import codes
from identity.tokens.models import AuthorizationCode, RefreshToken, RevokedAccessToken
from identity.webhooks.models import WebhookDelivery, WebhookEvent

# How long a deny-list entry outlives its token: see ``_revoked_access_tokens``.
CLOCK_SKEW = timedelta(minutes=1)
# How long an invitation or a grant is kept once it has ended: see ``_invitations`` and
# ``_permission_grants``.
ENDED_KEPT = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """The moments one run compares rows with."""

    now: datetime
    # Deny-list entries whose tokens expired before this are deleted.
    revoked_access_tokens: datetime
    # Mail and webhook deliveries finished before this are deleted.
    finished_work: datetime
    # Invitations and grants that ended before this are deleted.
    ended: datetime

    @classmethod
    def at(cls, now: datetime, *, sent_retention: timedelta) -> Cutoffs:
        return cls(
            now=now,
            revoked_access_tokens=now - CLOCK_SKEW,
            finished_work=now - sent_retention,
            ended=now - ENDED_KEPT,
        )


def _sessions(at: Cutoffs) -> ColumnElement[bool]:
    # A session is only ever looked for live (sessions.repository: find_live, live_for_user,
    # and revoke, which passes over a revoked one). Codes and refresh tokens hold its id as a
    # plain value, not a foreign key, and signing out elsewhere finds refresh tokens by user,
    # not through session rows (sessions.revocation). An expired or revoked session answers
    # exactly as a missing one does.
    return or_(BrowserSession.expires_at <= at.now, BrowserSession.revoked_at.is_not(None))


def _codes(at: Cutoffs) -> ColumnElement[bool]:
    # Past its expiry a code is never redeemed (tokens.codes.redeem_code). One that was
    # redeemed is still read when it comes back (get_consumed_code): a replay means it leaked,
    # and revokes what the redemption issued (RFC 6749 §4.1.2), the access token by its jti
    # until that token expires and the refresh tokens descended from it. A leaked code is
    # replayed within moments of its issue (it lives 60 seconds); it is kept as long as a
    # replay revokes (codes.replay_revokes: a day past its expiry, and never less than the
    # access token it issued lives, by the expiry recorded at redemption, as
    # IDENTITY_ACCESS_TOKEN_TTL may have been lowered since), and that reader ignores it
    # afterwards, so when this run comes changes no answer. Keeping it for as long as its
    # refresh family lives would mean asking, on every run, about every code whose family
    # is still in use (families rotate for ever); node-oidc-provider forgets a code at
    # expiry.
    return and_(
        AuthorizationCode.expires_at <= at.now,
        or_(AuthorizationCode.consumed_at.is_(None), not_(codes.replay_revokes(at.now))),
    )


def _refresh_tokens(at: Cutoffs) -> ColumnElement[bool]:
    # Every reader ignores an expired token (rotation, and refresh.find_refresh_token for
    # reuse detection, introspection and revocation), so until it expires a
    # row is kept whatever its state: a rotated token that comes back revokes its family
    # (RFC 9700 §4.14.2), and a revoked one stays refused as revoked. After its expiry a
    # reused token is refused as unknown; its family, which it can no longer extend, lives on.
    return RefreshToken.expires_at <= at.now


def _revoked_access_tokens(at: Cutoffs) -> ColumnElement[bool]:
    # An expired access token fails verification before the deny list is asked. Deleting an
    # entry early would bring its token back to life, so it outlives the token by a minute:
    # another process whose clock is a little behind still takes the token for unexpired.
    return RevokedAccessToken.expires_at <= at.revoked_access_tokens


def _reset_tokens(at: Cutoffs) -> ColumnElement[bool]:
    # A used or expired reset token is refused exactly as an unknown one
    # (recovery.service.reset_token_owner, recovery.repository.consume_token). No index:
    # the rate limits on asking keep the live ones few, and a run deletes the rest.
    return or_(PasswordResetToken.used_at.is_not(None), PasswordResetToken.expires_at <= at.now)


def _emails(at: Cutoffs) -> ColumnElement[bool]:
    # Once sent or given up, a message is never read by the sender again; it stays for the
    # retention so that an operator can see what went out, then goes, since reset and
    # confirmation bodies hold working links. A message still being tried has neither stamp
    # and is never deleted, however old. No index: the retention bounds the table.
    return or_(
        OutgoingEmail.sent_at <= at.finished_work, OutgoingEmail.failed_at <= at.finished_work
    )


def _deliveries(at: Cutoffs) -> ColumnElement[bool]:
    # As mail: delivered or given up, then kept for the retention; one still being tried stays.
    return or_(
        WebhookDelivery.delivered_at <= at.finished_work,
        WebhookDelivery.failed_at <= at.finished_work,
    )


def _events(at: Cutoffs) -> ColumnElement[bool]:
    # An event is read only through its deliveries (webhooks.repository.lease), which are all
    # made in the transaction that records it: once none remains, nothing can read it. Deleting
    # it earlier would take its deliveries with it (ON DELETE CASCADE).
    return and_(
        WebhookEvent.occurred_at <= at.finished_work,
        ~exists().where(WebhookDelivery.event_id == WebhookEvent.id),
    )


def _invitations(at: Cutoffs) -> ColumnElement[bool]:
    # An invitation ends when it is accepted, cancelled or expires, whichever comes first.
    # From then on no listing shows it (permissions.repository.pending_invitations) and its
    # link is never accepted, but the link still says why it stopped working (accepted,
    # cancelled, expired: 410) where a deleted one answers as an unknown link does (404, "not
    # valid, ask for a new invitation"), and a resend of an expired one by id is 409 ("invite
    # again"), not 404. So it is kept 30 days, long after anyone follows an emailed link or
    # resends; the audit log keeps the history. No index: rate limits and this retention
    # bound the table.
    return or_(
        Invitation.accepted_at <= at.ended,
        Invitation.cancelled_at <= at.ended,
        Invitation.expires_at <= at.ended,
    )


def _recovery_codes(at: Cutoffs) -> ColumnElement[bool]:
    # Only an unused code is accepted (mfa.repository.spend_recovery_code) or counted among
    # those left (unused_recovery_codes): a used code typed again is refused, and counted as
    # a failed attempt, exactly as a code never issued is. Nothing else reads a used one.
    return RecoveryCode.used_at.is_not(None)


def _permission_grants(at: Cutoffs) -> ColumnElement[bool]:
    # An expired grant gives nothing: decisions, the permissions of tokens and of the account
    # picker, and a role's holders count unexpired grants only (permissions.repository:
    # live_permissions, role_holders). The management API still lists it, marked expired, so
    # that an owner sees what lapsed and grants it again; it is kept 30 days for that, as an
    # ended invitation is. Then the member is shown without it, and revoking it is answered
    # as for a grant never made (404). The audit log keeps the history.
    return MembershipPermission.expires_at <= at.ended


def _role_grants(at: Cutoffs) -> ColumnElement[bool]:
    # As a permission granted directly: the same readers, the same 30 days.
    return MembershipRole.expires_at <= at.ended


@dataclass(frozen=True, slots=True)
class Rule:
    model: type[Base]
    dead: Callable[[Cutoffs], ColumnElement[bool]]
    # A rule whose deletions are audited hands back each deleted row whole.
    audited: bool = False

    @property
    def table(self) -> str:
        return self.model.__tablename__

    @property
    def returned(self) -> Sequence[Column[object]]:
        mapper = inspect(self.model)
        return list(mapper.columns if self.audited else mapper.primary_key)


# In this order: an event's deliveries go before the event.
RULES = (
    Rule(BrowserSession, _sessions),
    Rule(AuthorizationCode, _codes),
    Rule(RefreshToken, _refresh_tokens),
    Rule(RevokedAccessToken, _revoked_access_tokens),
    Rule(PasswordResetToken, _reset_tokens),
    Rule(Invitation, _invitations),
    Rule(RecoveryCode, _recovery_codes),
    Rule(MembershipPermission, _permission_grants, audited=True),
    Rule(MembershipRole, _role_grants, audited=True),
    Rule(OutgoingEmail, _emails),
    Rule(WebhookDelivery, _deliveries),
    Rule(WebhookEvent, _events),
)


async def delete_batch(
    session: AsyncSession, rule: Rule, at: Cutoffs, limit: int
) -> Sequence[Row[tuple[object, ...]]]:
    """Delete up to ``limit`` dead rows of the rule's table; returns those that went (their
    primary key, or the whole row for an audited rule).

    On PostgreSQL the rows are chosen FOR UPDATE SKIP LOCKED: a process running at the same
    time takes other rows instead of waiting for these, and a row that a request has just
    changed is judged again as it is now (a code redeemed a moment ago is no longer unused).
    SQLite has one writer at a time and no row locks; SQLAlchemy leaves the clause out there.
    """
    # Rows are named by their primary key, of one column or of several.
    key = inspect(rule.model).primary_key
    chosen = select(*key).where(rule.dead(at)).limit(limit).with_for_update(skip_locked=True)
    result = await session.execute(
        delete(rule.model)
        .where(tuple_(*key).in_(chosen))
        .returning(*rule.returned)
        .execution_options(synchronize_session=False)  # the session holds none of these rows
    )
    return result.all()


async def members(
    session: AsyncSession, membership_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[uuid.UUID, uuid.UUID]]:
    """Each membership's account and user. A grant row being deleted keeps its membership
    until this transaction ends: deleting a membership deletes its grants (ON DELETE
    CASCADE), which waits for their locks."""
    rows = await session.execute(
        select(Membership.id, Membership.account_id, Membership.user_id).where(
            Membership.id.in_(set(membership_ids))
        )
    )
    return {row.id: (row.account_id, row.user_id) for row in rows}
