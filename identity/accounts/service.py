"""What other parts of the service do with accounts: create users, check and set passwords."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository
from identity.accounts.emails import normalise_email
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.errors import Conflict, InvalidInput, PolicyViolation

log = logging.getLogger(__name__)

MAX_NAME = 200  # the users.name column


async def _require_policy(passwords: Passwords, password: str, *, email: str, name: str) -> None:
    verdict = await passwords.check(password, email=email, name=name)
    if not verdict.accepted:
        raise PolicyViolation(
            "The password does not meet the password policy.",
            reasons=verdict.as_problem_reasons(),
        )


async def create_user(
    session: AsyncSession,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    name: str = "",
    is_admin: bool = False,
    email_verified: bool = True,
) -> User:
    """A new user with a password the policy accepts.

    Raises ``InvalidInput`` (email, name), ``PolicyViolation`` (password, with ``reasons``)
    or ``Conflict`` (the email, whatever its case, belongs to another user).
    """
    email = normalise_email(email)
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"The name must be at most {MAX_NAME} characters.")
    await _require_policy(passwords, password, email=email, name=name)
    if await repository.email_exists(session, email):
        raise Conflict("A user with this email address already exists.")
    user = User(email=email, name=name, is_admin=is_admin, email_verified=email_verified)
    try:
        await repository.insert_user(session, user, await passwords.hash(password))
    except repository.EmailTaken:
        raise Conflict("A user with this email address already exists.") from None
    return user


async def authenticate(
    session: AsyncSession, passwords: Passwords, email: str, password: str
) -> User | None:
    """The user these credentials prove, or None; every failure costs one argon2 verify.

    Unknown email, wrong password, a user with no password and a disabled user all look
    and take the same, so a caller cannot learn which emails have accounts.
    """
    try:
        email = normalise_email(email)
    except InvalidInput:
        found = None
    else:
        found = await repository.user_with_password(session, email)
    user, credential = found or (None, None)
    stored = credential.hash if credential else None
    if not await passwords.verify(stored, password) or user is None or user.disabled:
        return None
    assert stored is not None  # verify() is True only against a stored hash
    if passwords.needs_rehash(stored):
        await repository.upgrade_hash(session, user.id, stored, await passwords.hash(password))
        log.info("password hash upgraded", extra={"user_id": str(user.id)})
    return user


async def set_password(
    session: AsyncSession, passwords: Passwords, user: User, new_password: str
) -> None:
    """Replace ``user``'s password (reset, change); raises ``PolicyViolation``."""
    await _require_policy(passwords, new_password, email=user.email, name=user.name)
    await repository.replace_password(session, user.id, await passwords.hash(new_password))
