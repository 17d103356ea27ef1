"""What a signed-in user changes about their own account: name, password, other sessions.

The email change (a link to the new address) lives in identity.recovery.email_change and
the second factor in identity.mfa; this module holds the rest of the security page's verbs.
Knowing the current password is required to change it, the sign-in email or the second
factor (``prove_password``), and wrong guesses are counted per user like second-factor
failures: a stolen browser session must become neither the account nor a password oracle.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository
from identity.accounts.models import User
from identity.accounts.passwords import Passwords, password_bytes
from identity.accounts.service import checked_name, hash_password
from identity.audit.service import Actor, record_as
from identity.db.engine import Database
from identity.errors import DomainError
from identity.mail import messages, outbox
from identity.mail.messages import Recipient
from identity.mfa.service import InvalidPassword
from identity.recovery.service import PasswordMismatch
from identity.sessions import repository as sessions
from identity.sessions import service as sessions_service
from identity.sessions.models import BrowserSession
from identity.sessions.revocation import revoke_all_for_user, revoke_other_sessions
from identity.settings import Settings
from identity.store.rate_limit import Limit, RateLimiter

log = logging.getLogger(__name__)


async def change_name(session: AsyncSession, user: User, raw_name: str) -> None:
    """Raises ``InvalidInput`` for a name longer than the column holds."""
    user.name = checked_name(raw_name)
    await session.flush()


async def prove_password(
    db: Database,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: Settings,
    user: User,
    password: str,
) -> repository.StoredPassword:
    """The password as stored, once ``password`` proves the visitor is the user and not only
    holds their session: asked before the password, the sign-in email or the second factor
    changes.

    Reads the hash in a short transaction of its own and verifies with none open. Raises
    ``RateLimited`` or ``InvalidPassword``; failures on every such form count together.
    """
    failures = Limit("current-password-user", settings.login_max_failures, settings.login_lockout)
    # Counted before the check, so a burst sent at once gets no more guesses than the limit.
    await limiter.spend(failures, str(user.id), "Too many failed attempts; try again later.")
    async with db.transaction() as session:
        stored = await repository.stored_password(session, user.id)
    if not await passwords.verify(stored.hash if stored else None, password):
        raise InvalidPassword("The password is not correct.")
    assert stored is not None  # verify() is True only against a stored hash
    await limiter.reset(failures, str(user.id))
    return stored


class PasswordUnchanged(DomainError):
    """The new password is the current one: saying it changed would leave a password the
    user fears is known working, and their other devices signed out for nothing."""

    code = "password-unchanged"
    status = 422


class SignedOutMeanwhile(Exception):
    """The browser asking for a change was signed out while its password was checked: by
    another of the user's browsers, maybe the owner's ending a thief's session. Not a
    ``DomainError``: no API raises it, and the page that can sends the browser to sign in."""


async def change_password(
    db: Database,
    passwords: Passwords,
    limiter: RateLimiter,
    settings: Settings,
    user: User,
    *,
    actor: Actor,
    current: str,
    new: str,
    confirm: str,
    keep_session_id: uuid.UUID,
    locale: str,
    now: datetime,
) -> str:
    """Replace the password, proven by the current one; signs out the user's other sessions,
    revokes every refresh token, queues a notice email, records the change for ``actor`` (the
    user, from where they are) and returns the new token of the session kept: its old one may
    be in a thief's hands.

    Its transactions are its own and short: one reads the stored hash, argon2 verifies the
    current password and hashes the new one with none open, and one stores the new hash
    if the stored one is still the hash verified, with the sign-outs, the notice and the
    audit entry.
    Raises ``RateLimited``, ``InvalidPassword`` (also when the password was changed
    meanwhile, in another tab or by a reset: the one typed is no longer current),
    ``PasswordMismatch``, ``PasswordUnchanged``, ``PolicyViolation`` or ``SignedOutMeanwhile``
    (nothing changed). Call ``runtime.mail.wake()`` afterwards.
    """
    stored = await prove_password(db, passwords, limiter, settings, user, current)
    if new != confirm:
        raise PasswordMismatch("The two passwords are not the same.")
    # As the hash sees them: NFKC makes a full-width letter the same password.
    if password_bytes(new) == password_bytes(current):
        raise PasswordUnchanged("The new password is the current one.")
    new_hash = await hash_password(passwords, new, email=user.email, name=user.name)
    async with db.write_transaction() as session:
        # A change after "sign out everywhere else" pressed in another browser, from the
        # browser it signed out, would sign out the browser that pressed: nobody left.
        if not await sessions.lock_user_signed_in(session, user.id, keep_session_id):
            raise SignedOutMeanwhile("This browser was signed out.")
        if not await repository.swap_hash(
            session, user.id, stored.hash, new_hash, new_password=True
        ):
            # Not counted as a failure: the password typed was right when it was verified.
            raise InvalidPassword("The password is not correct.")
        token = await sessions_service.new_token(session, keep_session_id)
        await revoke_all_for_user(session, user.id, now, keep_session_id=keep_session_id)
        notice = messages.password_changed(
            Recipient(user.email, user.locale or locale), settings.product_name, everywhere=False
        )
        await outbox.enqueue(session, notice, now)
        await record_as(
            session, actor, "user.password_changed", account_id=None, target=("user", user.id)
        )
    log.info("password changed", extra={"user_id": str(user.id)})
    return token


async def live_sessions(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> list[BrowserSession]:
    return await sessions.live_for_user(session, user_id, now)


@dataclass(frozen=True, slots=True)
class SignedOutOthers:
    ended: int
    token: str  # the kept session's new one


async def sign_out_others(
    session: AsyncSession,
    actor: Actor,
    user_id: uuid.UUID,
    keep_session_id: uuid.UUID,
    now: datetime,
) -> SignedOutOthers | None:
    """End the user's other sessions (the security page's "sign out everywhere else"),
    recorded for ``actor``, and give the kept one a new token: whoever holds a copy of this
    browser's cookie is somewhere else too, though listed as this session. None, nothing
    done, when the kept one has ended meanwhile."""
    if not await sessions.lock_user_signed_in(session, user_id, keep_session_id):
        return None
    ended = await end_other_sessions(session, actor, user_id, keep_session_id, now)
    return SignedOutOthers(ended, await sessions_service.new_token(session, keep_session_id))


async def end_other_sessions(
    session: AsyncSession,
    actor: Actor,
    user_id: uuid.UUID,
    keep_session_id: uuid.UUID,
    now: datetime,
) -> int:
    """End the user's sessions but ``keep_session_id``, which the caller holds
    (``lock_user_signed_in``), and what apps got through them (``revoke_other_sessions``),
    recorded for ``actor``; returns how many sessions ended.
    Its token stays: see ``sign_out_others`` for a caller that replaces it."""
    ended = await revoke_other_sessions(session, user_id, keep_session_id, now)
    await record_as(
        session,
        actor,
        "user.other_sessions_revoked",
        account_id=None,
        target=("user", user_id),
        new={"sessions_ended": ended},
    )
    return ended
