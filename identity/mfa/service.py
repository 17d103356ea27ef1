"""Two-step sign-in with an authenticator app (TOTP) and single-use recovery codes.

Enrolment stores a pending secret (encrypted: codes are computed from it, so it cannot be
hashed) that counts only once a first valid code confirms it; confirming hands out ten
recovery codes, shown once and stored as digests. At sign-in, a code is accepted once:
the service records the time step of the last accepted code and refuses that step and
every earlier one, with the check inside the UPDATE so that two racing uses of one code
give one success. Failures are counted per user like password failures: each attempt
is counted before its code is checked and a success clears the count, so that a burst of
guesses sent at once gets no more checks than the limit.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts import repository as accounts
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.audit.service import Actor, record_as, required_reason
from identity.crypto import Encryptor
from identity.db.engine import Database
from identity.errors import Conflict, DomainError, NotFound
from identity.i18n import DEFAULT_LOCALE
from identity.mail import messages, outbox
from identity.mail.messages import Recipient
from identity.mfa import recovery_codes, repository, totp
from identity.settings import Settings
from identity.store.rate_limit import Limit, RateLimiter

if TYPE_CHECKING:
    from identity.runtime import Runtime

log = logging.getLogger(__name__)

# RFC 8176: a password, then a one-time password. A recovery code is a one-time password
# too (NIST 800-63B "look-up secret"), and RFC 8176 has no value of its own for it.
AMR_PASSWORD_AND_OTP = ("pwd", "otp")
# The longest code taken as typed: a six-digit code or a recovery code, with the spaces and
# dashes people type. A form reads one character more, so that a longer one reaches
# ``_typed`` and is refused whole, never cut to a prefix that could be a code.
MAX_CODE = 64


class InvalidCode(DomainError):
    """Wrong, expired or already used code: one answer for all three."""

    code = "invalid-code"
    status = 400


class InvalidPassword(DomainError):
    code = "invalid-credentials"
    status = 400


def _typed(code: str) -> str | None:
    """The code to check, or None for one too long to be any code."""
    return code if len(code) <= MAX_CODE else None


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What the enrolment page shows: the secret as text, as a URI and as a QR code."""

    secret: str
    uri: str
    qr_svg: str


@dataclass(frozen=True, slots=True)
class SecondFactor:
    encryptor: Encryptor
    limiter: RateLimiter
    settings: Settings

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> SecondFactor:
        return cls(Encryptor(runtime.secret_key, "totp"), runtime.limiter, runtime.settings)

    @property
    def _failures(self) -> Limit:
        return Limit("mfa-user", self.settings.login_max_failures, self.settings.login_lockout)

    @property
    def _disable_failures(self) -> Limit:
        """Attempts to turn the factor off, counted apart from the sign-in's codes: a user
        fumbling on the security page must not lock their own sign-in, nor someone guessing
        codes at the sign-in stop the signed-in owner from turning it off."""
        return Limit(
            "mfa-disable-user", self.settings.login_max_failures, self.settings.login_lockout
        )

    @staticmethod
    async def is_enrolled(session: AsyncSession, user_id: uuid.UUID) -> bool:
        """Whether sign-in must ask this user for a code after the password (a static
        method: the sign-in asks without the key derivation an instance makes)."""
        return await repository.is_confirmed(session, user_id)

    async def unused_recovery_codes(self, session: AsyncSession, user_id: uuid.UUID) -> int:
        return await repository.unused_recovery_codes(session, user_id)

    async def begin_enrolment(self, session: AsyncSession, user: User, now: datetime) -> Enrolment:
        """A new secret awaiting its first code; raises ``Conflict`` if one is in use."""
        return await self.enrolment(await self.start_enrolment(session, user, now), user.email)

    async def start_enrolment(self, session: AsyncSession, user: User, now: datetime) -> str:
        """``begin_enrolment`` without drawing its QR code, for a page that shows it later:
        the new pending secret."""
        if await self.is_enrolled(session, user.id):
            raise Conflict("Two-step verification is already on; turn it off first.")
        secret = totp.new_secret()
        if not await repository.save_pending(session, user.id, self.encryptor.encrypt(secret), now):
            raise Conflict("Two-step verification is already on; turn it off first.")
        return secret

    async def enrolment(self, secret: str, email: str) -> Enrolment:
        """The page's view of ``secret``. The QR code is drawn in a worker thread: segno is
        pure Python, and a user's own long address (318 characters) makes a version 26 to 40
        code that costs 80 to 220 ms of CPU, against 7 ms for a usual one."""
        uri = totp.provisioning_uri(secret, account=email, issuer=self.settings.product_name)
        return Enrolment(secret, uri, await anyio.to_thread.run_sync(totp.qr_svg, uri))

    async def confirm_enrolment(
        self,
        session: AsyncSession,
        actor: Actor,
        user_id: uuid.UUID,
        code: str,
        now: datetime,
        *,
        locale: str = DEFAULT_LOCALE,
    ) -> list[str]:
        """Turn the pending secret on with a first valid code, recorded for ``actor`` and told
        to the user by email (in ``locale``, the page's, unless the user chose a language);
        returns the recovery codes, which exist nowhere else in clear.
        Raises ``NotFound`` or ``InvalidCode``. Call ``runtime.mail.wake()`` afterwards."""
        pending = await repository.get_secret(session, user_id)
        if pending is None or pending.confirmed_at is not None:
            raise NotFound("There is no two-step verification set-up in progress.")
        typed = _typed(code)
        secret = self.encryptor.decrypt(pending.secret_encrypted)
        step = totp.matching_step(secret, typed, now) if typed is not None else None
        if step is None or not await repository.confirm(
            session, user_id, pending.secret_encrypted, step, now
        ):
            raise InvalidCode("The code is not valid.")
        codes = recovery_codes.generate()
        await repository.replace_recovery_codes(
            session, user_id, [recovery_codes.code_digest(c) for c in codes], now
        )
        await record_as(
            session, actor, "user.second_factor_enabled", account_id=None, target=("user", user_id)
        )
        # Whoever holds the password and a session could turn it on with an app of their own
        # and lock the owner out: the owner hears of it, as of its removal.
        user = await session.get(User, user_id)
        assert user is not None  # the secret just confirmed is theirs (ON DELETE CASCADE)
        notice = messages.second_factor_added(
            Recipient(user.email, user.locale or locale), self.settings.product_name
        )
        await outbox.enqueue(session, notice, now)
        return codes

    async def _accepts(
        self, session: AsyncSession, user_id: uuid.UUID, code: str, now: datetime
    ) -> bool:
        secret = await repository.get_secret(session, user_id)
        if secret is None or secret.confirmed_at is None or _typed(code) is None:
            return False
        step = totp.matching_step(self.encryptor.decrypt(secret.secret_encrypted), code, now)
        if step is not None:
            return await repository.spend_step(session, user_id, step)
        if totp.normalise_code(code) is not None:
            return False  # six digits: a TOTP code, never a recovery code
        return await repository.spend_recovery_code(
            session, user_id, recovery_codes.code_digest(code), now
        )

    async def verify(
        self, session: AsyncSession, user_id: uuid.UUID, code: str, now: datetime
    ) -> tuple[str, ...]:
        """Check the second factor at sign-in: an authenticator code or a recovery code.

        Returns the ``amr`` for the session and tokens. Raises ``NotFound``, counting no
        attempt, when the user has no second factor (any more: a staff reset or the user
        turning it off elsewhere while the sign-in waited for a code, which no code can
        pass), ``RateLimited`` after too many failures (before looking at the code) and
        ``InvalidCode``.
        """
        if not await self.is_enrolled(session, user_id):
            raise NotFound("Two-step verification is not on.")
        await self._count_attempt(self._failures, user_id)
        return await self._check_counted(self._failures, session, user_id, code, now)

    async def _check_counted(
        self, limit: Limit, session: AsyncSession, user_id: uuid.UUID, code: str, now: datetime
    ) -> tuple[str, ...]:
        """``verify`` for an attempt ``_count_attempt`` has counted already under ``limit``."""
        if not await self._accepts(session, user_id, code, now):
            raise InvalidCode("The code is not valid.")
        await self.limiter.reset(limit, str(user_id))
        return AMR_PASSWORD_AND_OTP

    async def _count_attempt(self, limit: Limit, user_id: uuid.UUID) -> None:
        """Count an attempt before it is made (it stays counted unless it succeeds);
        ``RateLimited`` when the window's attempts are used up."""
        await self.limiter.spend(limit, str(user_id), "Too many failed attempts; try again later.")

    async def disable(
        self,
        db: Database,
        passwords: Passwords,
        actor: Actor,
        user: User,
        password: str,
        code: str,
        now: datetime,
        *,
        locale: str = DEFAULT_LOCALE,
    ) -> None:
        """The user turns two-step verification off, proving both factors again; the removal
        is recorded for ``actor`` (the user, from where they are) and told to the user as
        ``confirm_enrolment`` tells its start.

        Its transactions are its own: argon2 verifies the password between a short one that
        reads the stored hash and the one that checks the code and removes the factor.
        Raises ``InvalidPassword``, ``InvalidCode``, ``RateLimited``, or ``NotFound``
        (whatever the password) when it is off already (a double click's second post, or
        another tab's): not a failed attempt, so one found off after it was counted gives
        the attempt back. Call ``runtime.mail.wake()`` afterwards.
        """
        async with db.transaction() as session:
            # Off already: said before the password is looked at. Verified first, a right
            # password ("it is off") and a wrong one ("not correct") were answered apart: a
            # stolen session of a user without the factor had a password oracle here, with
            # guesses of its own beside the other forms' count of wrong current passwords.
            if not await self.is_enrolled(session, user.id):
                raise NotFound("Two-step verification is not on.")
            stored = await accounts.stored_password(session, user.id)
        # One attempt for the password and the code together: a stolen session must not be
        # a password oracle.
        await self._count_attempt(self._disable_failures, user.id)
        if not await passwords.verify(stored.hash if stored else None, password):
            raise InvalidPassword("The password is not correct.")
        async with db.transaction() as session:
            await repository.hold_secret(session, user.id)
            if not await self.is_enrolled(session, user.id):
                await self.limiter.release(self._disable_failures, str(user.id))
                raise NotFound("Two-step verification is not on.")
            await self._check_counted(self._disable_failures, session, user.id, code, now)
            await self._remove(session, user, locale, now)
            await record_as(
                session,
                actor,
                "user.second_factor_disabled",
                account_id=None,
                target=("user", user.id),
            )

    async def replace_recovery_codes(
        self, db: Database, actor: Actor, user: User, locale: str, now: datetime
    ) -> list[str]:
        """Ten new recovery codes for the user, who has proved the password: every earlier
        code, used or not, stops working as these commit. Returns them (they exist nowhere
        else in clear), audited and told by email like the factor's removal, since a session
        thief who knew the password could keep a way past the second factor this way.

        A sign-in spending an old code either commits first (and the code is replaced with
        the rest) or finds it gone. Raises ``NotFound`` when two-step verification is off.
        Call ``runtime.mail.wake()`` afterwards.
        """
        codes = recovery_codes.generate()
        async with db.write_transaction() as session:
            await repository.hold_secret(session, user.id)
            if not await self.is_enrolled(session, user.id):
                raise NotFound("Two-step verification is not on.")
            await repository.replace_recovery_codes(
                session, user.id, [recovery_codes.code_digest(c) for c in codes], now
            )
            await record_as(
                session,
                actor,
                "user.recovery_codes_replaced",
                account_id=None,
                target=("user", user.id),
            )
            notice = messages.recovery_codes_replaced(
                Recipient(user.email, user.locale or locale), self.settings.product_name
            )
            await outbox.enqueue(session, notice, now)
        log.info("recovery codes replaced", extra={"user_id": str(user.id)})
        return codes

    async def staff_reset(
        self, session: AsyncSession, actor: Actor, user_id: uuid.UUID, reason: str, now: datetime
    ) -> None:
        """Staff remove a user's second factor (a lost phone), with a reason for the audit log.

        Raises ``InvalidInput`` (no reason) or ``NotFound`` (no such user, or nothing to reset).
        """
        reason = required_reason(reason)
        user = await session.get(User, user_id)
        # Whether there was a factor is what the removal itself found: two resets at once
        # both see one before either deletes it, and only one may audit and tell the user.
        if user is None or not await self._remove(session, user, DEFAULT_LOCALE, now):
            raise NotFound("This user has no two-step verification to reset.")
        await record_as(
            session,
            actor,
            "user.second_factor_reset",
            account_id=None,
            target=("user", user_id),
            reason=reason,
        )

    async def _remove(self, session: AsyncSession, user: User, locale: str, now: datetime) -> bool:
        """Remove the factor and tell the user (in ``locale`` unless they chose a language);
        False, telling nobody, when none was on."""
        if not await repository.remove(session, user.id):
            return False
        notice = messages.second_factor_removed(
            Recipient(user.email, user.locale or locale), self.settings.product_name
        )
        await outbox.enqueue(session, notice, now)
        log.info("second factor removed", extra={"user_id": str(user.id)})
        return True
