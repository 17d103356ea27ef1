"""A signed-in user moves their sign-in to another email address, proven by a link sent there.

The pending change lives in the short-lived store (Redis when configured), under the digest
of the link's token, and is consumed atomically, so a link works once. Asking never says
whether the new address already has an account (that would let any user probe addresses):
the link goes out regardless, and confirming answers ``Conflict`` if the address is taken.
The old address is told once the change is made, and the reset links and pending
invitations mailed to it stop working.

A link changes the account only as it was when the link was asked for: the same password,
and no disable or change of sign-in email since (``User.email_change_epoch``, raised by each,
never lowered). Whoever asked may have held a stolen session; the owner who then resets the
password, or whom staff disable or move to a new address, has taken the account back, and a
link still waiting in the intruder's mailbox must not hand it over again, even once the user
is enabled again or moved back. Both are matched exactly, not by clock: servers' clocks differ.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository as accounts_repository
from identity.accounts.emails import deliverable_email
from identity.accounts.models import PasswordCredential, User
from identity.audit.service import Actor, record_as
from identity.crypto import digest, random_token
from identity.errors import Conflict, DomainError, InvalidInput
from identity.mail import messages, outbox
from identity.mail.messages import Recipient
from identity.permissions.invitations import end_for_left_address
from identity.recovery import repository
from identity.recovery.spent_links import just_spent, mark_spent
from identity.settings import Settings
from identity.store.base import Store
from identity.store.rate_limit import Limit, RateLimiter

# The hosted page a confirmation link opens; it reads ``token`` from the query.
CONFIRM_PAGE_PATH = "/confirm-email"
TTL_SECONDS = 3600
_KEY = "email-change:"
# Links just spent, with the change each asked for (see spent_links).
_SPENT_KIND = "email-change"
# Each request mails any address the user types, under our name: without a limit one
# account could send as many as it liked, as forgot-password and invitations cannot.
PER_USER = Limit("email-change-user", max=5, window=3600)


class InvalidConfirmationLink(DomainError):
    """Unknown, used or expired: the person can ask again from the security page."""

    code = "invalid-confirmation-link"
    status = 400


async def request_email_change(
    session: AsyncSession,
    store: Store,
    limiter: RateLimiter,
    settings: Settings,
    actor: Actor,
    user_id: uuid.UUID,
    new_email: str,
    locale: str,
    now: datetime,
    *,
    browser_id: uuid.UUID,
    password_set_at: datetime,
) -> str | None:
    """Mail a confirmation link to ``new_email``, recorded for ``actor`` (the user
    ``user_id``, signed in with the browser session ``browser_id``), who has just proved the
    password set at ``password_set_at`` (``StoredPassword.set_at``), and return the address
    as stored; None, and nothing mailed, if that session has ended or the user was disabled
    meanwhile. The link is mailed in the user's language, else in ``locale``, the page's.
    Raises ``InvalidInput`` or ``RateLimited``. Call ``runtime.mail.wake()`` after the
    commit."""
    new_email = deliverable_email(new_email)
    # The row first, as a disable or a move takes it: one under way is waited for and then
    # seen (its sessions ended), and one that starts later waits for this link to be stored
    # and then raises the count it holds. On SQLite, a write from the first statement on.
    await accounts_repository.lock_user(session, user_id)
    asking = await repository.asking_as(session, user_id, browser_id, now)
    if asking is None:
        return None
    if new_email == asking.email:
        raise InvalidInput("This is already the email address you sign in with.")
    await limiter.spend(PER_USER, str(user_id), "Too many email changes; try again later.")
    token = random_token()
    pending = json.dumps(
        {
            "user_id": str(user_id),
            "email": new_email,
            "epoch": asking.email_change_epoch,
            "password_set_at": password_set_at.isoformat(),
        }
    ).encode()
    await store.set(_KEY + digest(token), pending, TTL_SECONDS)
    link = f"{settings.issuer}{CONFIRM_PAGE_PATH}?token={quote(token)}"
    message = messages.email_change_confirmation(
        Recipient(new_email, asking.locale or locale), settings.product_name, link, TTL_SECONDS
    )
    await outbox.enqueue(session, message, now)
    # Nothing changes until the link is opened, but a link to an address of the session
    # holder's choosing is how a stolen session takes the account over: it must be findable.
    await record_as(
        session,
        actor,
        "user.email_change_requested",
        account_id=None,
        target=("user", user_id),
        old=asking.email,
        new=new_email,
    )
    return new_email


async def confirmed_by(session: AsyncSession, store: Store, token: str) -> User | None:
    """The user whose sign-in email ``token``'s link, spent in the last few minutes, made
    the one it confirms; None for any other link, or one whose change was refused.

    Takes the user's row first, as a confirmation does: a post that spent the link and has
    yet to commit is waited for."""
    spent = await just_spent(session, store, _SPENT_KIND, token)
    if spent is None or spent.user.email != spent.record["email"]:
        return None
    return spent.user


def _as_asked(user: User, credential: PasswordCredential | None, pending: dict[str, Any]) -> bool:
    """The user is still enabled, was neither disabled nor moved to another sign-in email
    since the link was asked for, and has the password proved then (a link asked for before
    these were recorded, in the hour before an upgrade, is refused).

    The password is the one proved when asking, known by its ``changed_at`` as read with
    its hash, not by when the link was asked: a reset stamps its ``changed_at`` before it
    commits, and an intruder's session proving the old password in between asked later
    than that stamp. Matched exactly: a change stamped on a clock behind is earlier, and
    another password all the same."""
    if user.disabled or "password_set_at" not in pending:
        return False
    if pending.get("epoch") != user.email_change_epoch:
        return False
    proved = datetime.fromisoformat(pending["password_set_at"])
    return credential is None or credential.changed_at == proved


async def confirm_email_change(
    session: AsyncSession,
    store: Store,
    settings: Settings,
    origin: Actor,
    token: str,
    locale: str,
    now: datetime,
) -> User:
    """Make the confirmed address the sign-in email and tell the old one, in the user's
    language or else ``locale``, the confirmation page's (the link's: the language the
    change was asked in). The change is recorded as the user's, from ``origin`` (the
    request's address and id: the link may be opened where the user is not signed in),
    with both addresses as a move by staff is.

    Raises ``InvalidConfirmationLink`` or ``Conflict``. Call ``runtime.mail.wake()`` after
    the commit.
    """
    # The user's row first, then the link marked spent, then spent: a second post of the
    # form (a double click) either waits here and finds the link gone, or finds it gone and
    # marked, and waits on the row in ``confirmed_by`` for this post's outcome. Marked after
    # the row, it could take the row first and read the email not yet changed.
    seen = await store.get(_KEY + digest(token))
    if seen is None:
        raise InvalidConfirmationLink("This confirmation link is not valid any more.")
    asked = json.loads(seen)
    await accounts_repository.lock_user(session, uuid.UUID(asked["user_id"]))
    await mark_spent(store, _SPENT_KIND, token, asked)
    raw = await store.consume(_KEY + digest(token))
    if raw is None:
        raise InvalidConfirmationLink("This confirmation link is not valid any more.")
    pending = json.loads(raw)
    found = await repository.user_with_credential(session, uuid.UUID(pending["user_id"]))
    if found is None or not _as_asked(*found, pending):
        raise InvalidConfirmationLink("This confirmation link is not valid any more.")
    user = found[0]
    old_email = user.email
    try:
        await repository.change_email(session, user, pending["email"], now)
    except repository.EmailTaken:
        raise Conflict("Another account already uses this email address.") from None
    actor = dataclasses.replace(origin, user_id=user.id)
    await end_for_left_address(session, actor, old_email, now)
    await record_as(
        session,
        actor,
        "user.email_changed",
        account_id=None,
        target=("user", user.id),
        old=old_email,
        new=user.email,
    )
    notice = messages.email_changed(
        Recipient(old_email, user.locale or locale), settings.product_name, old_email, user.email
    )
    await outbox.enqueue(session, notice, now)
    return user
