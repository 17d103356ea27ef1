"""Password reset by emailed link, and staff-assisted recovery.

Asking for a reset answers the same, in content and in time, for every address. The answer
waits only for work that is the same for every address (three rate-limit counters); the work
that depends on whether the address has an account (look-up, token, email) is handed to
``runtime.background`` and runs after the answer has left. Equalising the two paths in the
request instead (same writes for unknown addresses) would still leave the database's timing
of a hit and a miss visible, and would write rows for every address anybody types.

Reset tokens carry 256 random bits; only their SHA-256 is stored. A token is valid until its
own expiry, once, and only while the password is the one it was issued for (the token holds
that password's ``changed_at``, matched exactly): any password change, by any path, ends
every token issued before it. Not by comparing the change's time with the token's: a change
stamped by a server whose clock is behind the issuing one's would seem older than the token.
A change of the sign-in email ends them too, since they were mailed to the old address. A
newer token never extends an older one, and does not end it either: mail can arrive out of
order and people click the link in whichever message they open (Keycloak's reset links, too,
each live to their own expiry); the first one used ends the others through the password
change.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository as accounts
from identity.accounts.emails import deliverable_email, normalise_email
from identity.accounts.models import PasswordResetToken, User
from identity.accounts.passwords import Passwords
from identity.accounts.service import email_taken, hash_password
from identity.audit.service import Actor, record_as, required_reason
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.engine import Database
from identity.errors import DomainError, InvalidInput, NotFound
from identity.i18n import DEFAULT_LOCALE
from identity.mail import messages, outbox
from identity.mail.messages import Recipient
from identity.permissions.catalogue import invalid_field
from identity.permissions.invitations import end_for_left_address
from identity.recovery import repository
from identity.recovery.spent_links import just_spent, mark_spent
from identity.sessions.revocation import revoke_all_for_user
from identity.settings import Rate, Settings
from identity.store.base import Store
from identity.store.rate_limit import Limit
from identity.webhooks.events import PASSWORD_RESET, about_user, emit

if TYPE_CHECKING:
    from identity.runtime import Runtime

log = logging.getLogger(__name__)

# The hosted page a reset link opens; it reads ``token`` from the query.
RESET_PAGE_PATH = "/reset-password"
TOKEN_BYTES = 32
# The first password's link: as long as an invitation's.
WELCOME_LINK_TTL = timedelta(days=7)
# Links just spent, with when (see spent_links).
_SPENT_KIND = "password-reset"


class InvalidResetToken(DomainError):
    """Unknown, tampered, expired, used, or issued before the password or the sign-in email
    last changed: one answer for all, since the person can do the same about each (ask for
    a new link)."""

    code = "invalid-reset-token"
    status = 400


class PasswordMismatch(DomainError):
    code = "password-mismatch"
    status = 422


@dataclass(frozen=True, slots=True)
class ResetLimits:
    per_email: Limit
    per_ip: Limit
    overall: Limit

    @classmethod
    def from_settings(cls, settings: Settings) -> ResetLimits:
        def limit(name: str, rate: Rate) -> Limit:
            return Limit(name, rate.count, rate.window)

        return cls(
            limit("reset-email", settings.reset_limit_per_email),
            limit("reset-ip", settings.reset_limit_per_ip),
            limit("reset-all", settings.reset_limit_global),
        )


def reset_link(issuer: str, token: str) -> str:
    return f"{issuer}{RESET_PAGE_PATH}?token={quote(token)}"


async def request_reset(runtime: Runtime, raw_email: str, *, ip: str, locale: str) -> None:
    """Ask for a reset link to be mailed to ``raw_email`` if it belongs to an active user.

    Returns the same way for every address. Raises ``InvalidInput`` for text that is not an
    email address (that says nothing about accounts) and ``RateLimited`` when this client or
    everybody together asked too often. The per-address limit is silent: refusing loudly
    would tell a prober that someone else has been asking for that address, and the owner
    already has links in their inbox.
    """
    email = normalise_email(raw_email)
    limits = ResetLimits.from_settings(runtime.settings)
    # Per client first, so that one client over its limit does not use up everybody's.
    for limit, subject in ((limits.per_ip, ip), (limits.overall, "all")):
        await runtime.limiter.spend(limit, subject, "Too many requests; try again later.")
    if not (await runtime.limiter.hit(limits.per_email, email)).allowed:
        return
    runtime.background.start(_deliver_reset(runtime, email, locale), name="password-reset")


class _AddressChanged(Exception):
    """The sign-in email changed while a reset link for the old one was being made."""


async def _deliver_reset(runtime: Runtime, email: str, locale: str) -> None:
    try:
        async with runtime.db.transaction() as session:
            found = await accounts.user_with_password(session, email)
            if found is None or found[0].disabled:
                return
            user = found[0]
            await send_reset_link(session, runtime.settings, user, locale, utcnow())
            # A change of email committed since the look-up ended every link before it, and
            # this one would reach the old address all the same. Asked after the insert, the
            # email is the one a change committed before, and a later change, waiting for
            # this transaction, ends this link with the others.
            if await repository.email_now(session, user.id) != email:
                raise _AddressChanged
    except _AddressChanged:
        return
    runtime.mail.wake()


async def _issue_link(
    session: AsyncSession, settings: Settings, user: User, expires_at: datetime, now: datetime
) -> str:
    """A new reset token of ``user``'s, for the password they have now, stored, as the link
    that carries it."""
    token = random_token(TOKEN_BYTES)
    password = await accounts.stored_password(session, user.id)
    await repository.insert_token(
        session,
        PasswordResetToken(
            user_id=user.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=expires_at,
            password_set_at=password.set_at if password else None,
        ),
    )
    return reset_link(settings.issuer, token)


async def send_reset_link(
    session: AsyncSession, settings: Settings, user: User, locale: str, now: datetime
) -> None:
    """Issue a token and queue the email holding its link, in the caller's transaction."""
    ttl = settings.reset_token_ttl
    link = await _issue_link(session, settings, user, now + timedelta(seconds=ttl), now)
    to = Recipient(user.email, user.locale or locale)
    await outbox.enqueue(
        session, messages.password_reset(to, settings.product_name, link, ttl), now
    )


async def send_welcome_link(
    session: AsyncSession, settings: Settings, user: User, now: datetime
) -> None:
    """Queue, in the caller's transaction, the email that lets a user staff created without a
    password choose one: a reset link with its own text, living as long as an invitation's
    (the person may not read it the same hour), and ending as every reset link does."""
    expires_at = now + WELCOME_LINK_TTL
    link = await _issue_link(session, settings, user, expires_at, now)
    to = Recipient(user.email, user.locale or DEFAULT_LOCALE)
    await outbox.enqueue(
        session, messages.welcome(to, settings.product_name, link, expires_at), now
    )


@dataclass(frozen=True, slots=True)
class _Owner:
    user: User
    # No password yet (a user staff created, holding the welcome link): the one chosen now is
    # the first, and no notice says a password was changed.
    first_password: bool


async def _owner_if_usable(session: AsyncSession, token: PasswordResetToken) -> _Owner | None:
    """The token's user, unless disabled or their password is not the one the token was
    issued for (a first one chosen since, for a token issued when there was none)."""
    found = await repository.user_with_credential(session, token.user_id)
    if found is None:
        return None
    user, credential = found
    set_at = credential.changed_at if credential is not None else None
    if user.disabled or set_at != token.password_set_at:
        return None
    return _Owner(user, credential is None)


async def reset_token_owner(session: AsyncSession, token: str, now: datetime) -> User | None:
    """The user whose password ``token`` would reset now, or None: the reset page shows its
    form (with a suggestion that avoids the user's details) or says the link is spent."""
    row = await repository.find_token(session, digest(token))
    if row is None or row.used_at is not None or row.expires_at <= now:
        return None
    owner = await _owner_if_usable(session, row)
    return owner.user if owner else None


async def complete_reset(
    db: Database,
    store: Store,
    passwords: Passwords,
    token: str,
    new_password: str,
    confirm: str,
    *,
    origin: Actor,
    product_name: str,
    locale: str,
) -> User:
    """Set the new password with the token, sign the user out everywhere, queue the notice
    (unless it is the user's first password: nothing was changed), and record the reset as
    the token's owner's, from ``origin`` (the request's address and id: the link's holder has
    no session).

    Its transactions are its own and short: one finds the token's owner (whose email and
    name the policy needs), argon2 hashes the new password with none open, and one spends
    the token, checks its owner again and stores the hash with the sign-outs and the notice.
    Raises ``InvalidResetToken``, ``PasswordMismatch`` or ``PolicyViolation``; a refused
    password does not spend the token, of racing uses of one token one succeeds, and a
    password change or a disable of the user that commits first, however close, wins. Call
    ``runtime.mail.wake()`` afterwards. The link is recorded as just spent, for ``reset_by``.

    The clock is read at each step, not once: argon2 may wait for a thread, and a link that
    expires meanwhile is expired when it is spent, however valid it was when the post came.
    """
    async with db.transaction() as session:
        owner = await reset_token_owner(session, token, utcnow())
    if owner is None:
        raise _spent()
    if new_password != confirm:
        raise PasswordMismatch("The two passwords are not the same.")
    password_hash = await hash_password(passwords, new_password, email=owner.email, name=owner.name)
    async with db.write_transaction() as session:
        now = utcnow()
        stored = await _spend_and_store(session, owner.id, token, password_hash, now)
        if stored is None:
            raise _spent()
        user = stored.user
        # Before the reset commits: a second post waits on the user's row for its outcome.
        record = {"user_id": str(user.id), "at": now.isoformat()}
        await mark_spent(store, _SPENT_KIND, token, record)
        await revoke_all_for_user(session, user.id, now)
        if not stored.first_password:
            to = Recipient(user.email, user.locale or locale)
            await outbox.enqueue(
                session, messages.password_changed(to, product_name, everywhere=True), now
            )
        await emit(session, PASSWORD_RESET, about_user(user.id))
        await record_as(
            session,
            dataclasses.replace(origin, user_id=user.id),
            "user.password_reset",
            account_id=None,
            target=("user", user.id),
        )
    log.info("password reset", extra={"user_id": str(user.id)})
    return user


async def reset_by(session: AsyncSession, store: Store, token: str) -> User | None:
    """The user whose password ``token``'s link, spent in the last few minutes, reset; None
    for any other link, or one whose reset did not commit. Nothing is checked against the
    password posted again: the reset is known by the password's change time alone."""
    spent = await just_spent(session, store, _SPENT_KIND, token)
    if spent is None or spent.credential is None:
        return None
    reset_at = datetime.fromisoformat(spent.record["at"])
    return spent.user if spent.credential.changed_at >= reset_at else None


async def _spend_and_store(
    session: AsyncSession, owner_id: uuid.UUID, token: str, password_hash: str, now: datetime
) -> _Owner | None:
    """Spend the token of ``owner_id`` and store the new hash; None if the token or its owner
    is not usable any more, and the caller's transaction must then roll back (the token may
    be marked spent).

    The owner is checked again here, since they may have been disabled, or have changed the
    password another way, while the hash was made; and what the check found must still hold
    when the new hash commits. Disabling writes the user's row, so that row is held first: a
    disable in progress is waited for and then seen by the check, and one that starts later
    waits for this transaction, so a reset never lands after a disable. It is held before the
    token is spent because an email change takes the two in that order (user, then tokens);
    the other order could deadlock with it. On SQLite, spending the token takes the one write
    lock, and the check comes after it. A password change does not write the user's row: the
    write repeats the password part of the check in its own condition instead.
    """
    await accounts.hold_user(session, owner_id)
    row = await repository.consume_token(session, digest(token), now)
    if row is None:
        return None
    owner = await _owner_if_usable(session, row)
    if owner is None:
        return None
    stored = await accounts.replace_password(
        session, owner.user.id, password_hash, set_at=row.password_set_at
    )
    return owner if stored else None


def _spent() -> InvalidResetToken:
    return InvalidResetToken("This password reset link is not valid any more.")


async def assisted_email_change(
    session: AsyncSession,
    settings: Settings,
    actor: Actor,
    user_id: uuid.UUID,
    new_email: str,
    reason: str,
    now: datetime,
) -> User:
    """Staff, having checked who the customer is, move their sign-in to a new address.

    The reason is required and audited; both addresses are told (only the new one if the user
    has no password yet, so never had a way in through the old); the reset links and pending
    invitations mailed before, to the old address, stop working, and the new address receives
    a fresh reset link (the welcome link, for a user with no password yet), so the customer
    proves they hold it by using it; none while the user is disabled. Raises
    ``InvalidInput``, ``NotFound`` or ``Conflict``. Call ``runtime.mail.wake()`` after the
    commit.
    """
    reason = required_reason(reason)
    try:
        new_email = deliverable_email(new_email)
    except InvalidInput as exc:
        raise invalid_field("email", exc.detail) from None
    await accounts.lock_user(session, user_id)
    found = await repository.user_with_credential(session, user_id)
    if found is None:
        raise NotFound("No such user.")
    user, credential = found
    old_email = user.email
    if new_email == old_email:
        raise invalid_field("email", "The new email address is the one the user already has.")
    if await accounts.email_exists(session, new_email):
        raise email_taken()
    try:
        await repository.change_email(session, user, new_email, now)
    except repository.EmailTaken:
        raise email_taken() from None
    await end_for_left_address(session, actor, old_email, now)
    await record_as(
        session,
        actor,
        "user.email_changed_by_staff",
        account_id=None,
        target=("user", user.id),
        old=old_email,
        new=new_email,
        reason=reason,
    )
    locale = user.locale or "en"
    # With no password yet, the old address never had a way in (often it is a typo's, a
    # stranger's): telling it would only hand it the customer's real address.
    told = (old_email, new_email) if credential is not None else (new_email,)
    for address in told:
        notice = messages.email_changed(
            Recipient(address, locale), settings.product_name, old_email, new_email
        )
        await outbox.enqueue(session, notice, now)
    if user.disabled:
        # Neither signs in nor resets: a link would only tell the new address about an account
        # it cannot use, and would start working if staff enabled the user within its life.
        # Enabled again, the user asks for one with "Forgot your password?".
        return user
    if credential is None:
        # Created by staff and no password chosen yet (often a typo in the address being
        # fixed): the new address gets the welcome, which lasts days, not a reset of a
        # password there is none of.
        await send_welcome_link(session, settings, user, now)
    else:
        await send_reset_link(session, settings, user, locale, now)
    return user
