"""What other parts of the service do with accounts: create users, check and hash passwords.

Argon2 runs outside transactions: what hashes a password (``hash_password``,
``prepare_user``) or verifies one (``authenticate``) is called with none open, and the
transaction that stores the result comes after it.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository
from identity.accounts.emails import deliverable_email, normalise_email
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.audit.service import Actor, record_as, required_reason
from identity.db.engine import Database
from identity.display_names import display_name
from identity.errors import Conflict, InvalidInput, NotFound, PolicyViolation
from identity.recovery.repository import end_reset_tokens
from identity.sessions.revocation import revoke_all_for_user
from identity.webhooks.events import USER_DISABLED, USER_ENABLED, about_user, emit

log = logging.getLogger(__name__)

MAX_NAME = 200  # the users.name column


def checked_name(raw: str) -> str:
    """The user's name as stored (it may be empty), or ``InvalidInput``."""
    return display_name(raw, MAX_NAME, required=False)


async def hash_password(passwords: Passwords, password: str, *, email: str, name: str) -> str:
    """The stored form of a password the policy accepts for this user, or ``PolicyViolation``
    (with ``reasons``).

    Called with no transaction open: argon2 costs ~20 ms of CPU, and a transaction waiting
    for it would hold its connection (and, on SQLite, the write lock) all that time.
    """
    verdict = await passwords.check(password, email=email, name=name)
    if not verdict.accepted:
        raise PolicyViolation(
            "The password does not meet the password policy.",
            reasons=verdict.as_problem_reasons(),
        )
    return await passwords.hash(password)


@dataclass(frozen=True, slots=True)
class NewUser:
    """A user ready to be stored, made by ``prepare_user`` (or ``passwordless_user``) for
    ``create_user``."""

    email: str
    name: str
    # None: no password yet; the user chooses one by an emailed link (staff onboarding).
    password_hash: str | None = field(repr=False)


async def prepare_user(
    passwords: Passwords, *, email: str, password: str, name: str = ""
) -> NewUser:
    """A new user's details normalised and checked and the password hashed, before any
    transaction (see ``hash_password``).

    Raises ``InvalidInput`` (email, name) or ``PolicyViolation`` (password, with ``reasons``).
    """
    email = deliverable_email(email)
    name = checked_name(name)
    return NewUser(email, name, await hash_password(passwords, password, email=email, name=name))


def passwordless_user(*, email: str, name: str = "") -> NewUser:
    """A new user's details normalised and checked, with no password: sign-in fails for them
    as for a wrong password until they choose one. Raises ``InvalidInput`` naming the field."""
    try:
        email = deliverable_email(email)
    except InvalidInput as exc:
        raise InvalidInput(exc.detail, errors=[{"field": "email", "message": exc.detail}]) from None
    return NewUser(email, checked_name(name), None)


async def create_user(
    session: AsyncSession,
    new_user: NewUser,
    *,
    is_admin: bool = False,
    email_verified: bool = True,
    locale: str | None = None,
) -> User:
    """Store the user ``prepare_user`` made; ``Conflict`` (naming the ``email`` field) if the
    email, whatever its case, belongs to another user."""
    if await repository.email_exists(session, new_user.email):
        raise email_taken()
    user = User(
        email=new_user.email,
        name=new_user.name,
        is_admin=is_admin,
        email_verified=email_verified,
        locale=locale,
    )
    try:
        await repository.insert_user(session, user, new_user.password_hash)
    except repository.EmailTaken:
        raise email_taken() from None
    return user


def email_taken() -> Conflict:
    """The refusal of an address another user holds, naming the field, wherever one is set."""
    message = "A user with this email address already exists."
    return Conflict(message, errors=[{"field": "email", "message": message}])


async def record_created(session: AsyncSession, actor: Actor, user: User) -> None:
    """Audit a new user as the command line and staff make one, in the creating transaction."""
    await record_as(
        session,
        actor,
        "user.created",
        account_id=None,
        target=("user", user.id),
        new={"email": user.email, "name": user.name, "is_admin": user.is_admin},
    )


@dataclass(frozen=True, slots=True)
class Authenticated:
    """Who a password proved, and which of their passwords it was: the one set at
    ``password_set_at`` (its ``changed_at``, read with the hash), for
    ``check_password_unchanged_since`` when the sign-in opens its session."""

    user_id: uuid.UUID
    password_set_at: datetime


async def authenticate(
    db: Database, passwords: Passwords, email: str, password: str
) -> Authenticated | None:
    """Who these credentials prove, or None; every failure costs one argon2 verify.

    Unknown email, wrong password, a user with no password and a disabled user all look
    and take the same, so a caller cannot learn which emails have accounts. The look-up is a
    lone read and the rehash a short transaction of its own: none is held open while argon2
    runs.
    """
    try:
        email = normalise_email(email)
    except InvalidInput:
        found = None
    else:
        found = await repository.sign_in_credentials(db, email)
    user_id, disabled, stored, set_at = found or (None, True, None, None)
    if not await passwords.verify(stored, password) or user_id is None or disabled:
        return None
    assert stored is not None and set_at is not None  # verify() is True only against a hash
    if passwords.needs_rehash(stored):
        upgraded = await passwords.hash(password)
        async with db.transaction() as session:
            # The same password: its changed_at, and so this proof, stays.
            await repository.swap_hash(session, user_id, stored, upgraded, new_password=False)
        log.info("password hash upgraded", extra={"user_id": str(user_id)})
    return Authenticated(user_id, set_at)


async def _user_now(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await session.get(User, user_id, populate_existing=True)
    if user is None:
        raise NotFound("No such user.")
    return user


LAST_ADMINISTRATOR = (
    "The service must keep at least one administrator who can sign in; make another user "
    "an administrator first."
)


async def _keeping_an_administrator(session: AsyncSession, user_id: uuid.UUID) -> User:
    """The user, read under the administrators' lock, about to stop administering (a
    demotion or a disable); ``Conflict`` if they are the last enabled administrator.

    The lock stays until the caller's transaction ends, so two such changes at once are
    counted one after the other and cannot both take one of the last two. The user's own
    row is locked after it (the order staff changes take them, ``authorize``): a staff change
    of theirs in progress commits first, and one that comes later finds them demoted.
    """
    await repository.lock_administrators(session)
    user = await repository.hold_for_demotion(session, user_id)  # read again under the lock
    if user is None:
        raise NotFound("No such user.")
    # A disabled administrator or a plain user leaves as many able to act as before.
    taking_an_active_one = user.is_admin and not user.disabled
    if taking_an_active_one and await repository.count_active_administrators(session) <= 1:
        raise Conflict(LAST_ADMINISTRATOR)
    return user


async def disable_user(
    session: AsyncSession, actor: Actor, user_id: uuid.UUID, reason: str, now: datetime
) -> User:
    """Staff switch a user off: no sign-in, no refresh, every session and refresh token ended,
    and every reset link mailed so far ended for good (enabling the user does not revive one:
    the mailbox may be why they were disabled).

    Its access tokens go on the deny list with its refresh tokens (introspection and userinfo
    refuse a disabled user's anyway); the ``user.disabled`` event tells consuming services
    that check JWTs alone to stop trusting them before they expire. Disabling a disabled
    user changes nothing. The last enabled administrator is not disabled (``Conflict``), as
    ``update_user`` keeps their flag. Raises ``NotFound`` or ``InvalidInput`` (no reason:
    the audit log must say why).
    """
    reason = required_reason(reason)
    await _keeping_an_administrator(session, user_id)
    changed = await repository.set_disabled(session, user_id, True)
    user = await _user_now(session, user_id)
    if not changed:
        return user
    await revoke_all_for_user(session, user.id, now)
    await end_reset_tokens(session, user.id, now)
    await record_as(
        session,
        actor,
        "user.disabled",
        account_id=None,
        target=("user", user.id),
        reason=reason,
    )
    await emit(session, USER_DISABLED, about_user(user.id))
    return user


async def enable_user(session: AsyncSession, actor: Actor, user_id: uuid.UUID, reason: str) -> User:
    """Staff switch a disabled user on again: they sign in with their password as before.

    What the disable ended stays ended (sessions, refresh tokens, reset links). The
    ``user.enabled`` event tells consuming services that stopped trusting the user on
    ``user.disabled`` that they are back. Enabling an enabled user changes nothing, records
    nothing and tells nobody. Raises ``NotFound`` or ``InvalidInput`` (no reason).
    """
    reason = required_reason(reason)
    changed = await repository.set_disabled(session, user_id, False)
    user = await _user_now(session, user_id)
    if changed:
        await record_as(
            session,
            actor,
            "user.enabled",
            account_id=None,
            target=("user", user.id),
            reason=reason,
        )
        await emit(session, USER_ENABLED, about_user(user.id))
    return user


async def update_user(
    session: AsyncSession,
    actor: Actor,
    user_id: uuid.UUID,
    *,
    name: str | None,
    is_admin: bool | None,
) -> User:
    """Staff rename a user or give or take the administrator flag (None: leave as it is).

    Audited ``user.updated`` with the old and new values of what changed; nothing changed,
    nothing recorded. An administrator may take their own flag away (as in Keycloak), but
    not the last enabled administrator's: ``Conflict``, also when several are taken at once.
    Raises ``NotFound`` or ``InvalidInput`` (name) as well.
    """
    name = None if name is None else checked_name(name)
    if is_admin is False:
        user = await _keeping_an_administrator(session, user_id)
    else:
        user = await _user_now(session, user_id)
    old: dict[str, object] = {}
    new: dict[str, object] = {}
    if name is not None and name != user.name:
        old["name"], new["name"] = user.name, name
    if is_admin is not None and is_admin != user.is_admin:
        old["is_admin"], new["is_admin"] = user.is_admin, is_admin
    if not new:
        return user
    for field_name, value in new.items():
        setattr(user, field_name, value)
    await session.flush()
    await record_as(
        session, actor, "user.updated", account_id=None, target=("user", user.id), old=old, new=new
    )
    return user
