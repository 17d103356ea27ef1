"""Two-step verification with TOTP and recovery codes, against a real database and store."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pyotp
import pytest
from sqlalchemy import Select, select

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import Encryptor
from identity.errors import Conflict, InvalidInput, NotFound, RateLimited
from identity.mfa import repository
from identity.mfa.models import RecoveryCode, TotpSecret
from identity.mfa.service import InvalidCode, InvalidPassword, SecondFactor
from identity.runtime import Runtime
from tests.backends import TEST_SECRET_KEY
from tests.integration.page_helpers import mail_to
from tests.integration.recovery_helpers import (
    PASSWORD,
    enrolled_user,
    mail_since_enrolment,
    new_user,
)
from tests.wrong_codes import wrong_code

STAFF = Actor(user_id=None, client_id="support-desk", ip="203.0.113.9", request_id="req-1")


def _staff_resets() -> Select[tuple[AuditEvent]]:
    """The audit log's staff resets (turning two-step on is recorded too)."""
    return select(AuditEvent).where(AuditEvent.action == "user.second_factor_reset")


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_PRODUCT_NAME": "Acme ID", "IDENTITY_LOGIN_MAX_FAILURES": "3"}


@pytest.fixture
def mfa(runtime: Runtime) -> SecondFactor:
    return SecondFactor.from_runtime(runtime)


async def _verify(runtime: Runtime, mfa: SecondFactor, user: User, code: str) -> tuple[str, ...]:
    async with runtime.db.transaction() as session:
        return await mfa.verify(session, user.id, code, utcnow())


async def test_enrolment_shows_the_secret_as_text_uri_and_qr_code(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user = await new_user(runtime, "ana@example.com")
    async with runtime.db.transaction() as session:
        enrolment = await mfa.begin_enrolment(session, user, utcnow())
        assert not await mfa.is_enrolled(session, user.id)
    assert enrolment.uri.startswith("otpauth://totp/Acme%20ID:ana%40example.com?")
    assert f"secret={enrolment.secret}" in enrolment.uri and "issuer=Acme%20ID" in enrolment.uri
    assert enrolment.qr_svg.startswith("<svg")


async def test_the_secret_is_stored_encrypted(runtime: Runtime, mfa: SecondFactor) -> None:
    user = await new_user(runtime, "ana@example.com")
    async with runtime.db.transaction() as session:
        enrolment = await mfa.begin_enrolment(session, user, utcnow())
        row = await session.get(TotpSecret, user.id)
    assert row is not None and enrolment.secret not in row.secret_encrypted
    assert Encryptor(TEST_SECRET_KEY, "totp").decrypt(row.secret_encrypted) == enrolment.secret


async def test_a_wrong_first_code_does_not_turn_it_on(runtime: Runtime, mfa: SecondFactor) -> None:
    user = await new_user(runtime, "ana@example.com")
    async with runtime.db.transaction() as session:
        enrolment = await mfa.begin_enrolment(session, user, utcnow())
    wrong = wrong_code(enrolment.secret)
    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await mfa.confirm_enrolment(session, Actor(user.id), user.id, wrong, utcnow())
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, user.id)


async def test_a_restarted_enrolment_replaces_the_pending_secret(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user = await new_user(runtime, "ana@example.com")
    async with runtime.db.transaction() as session:
        first = await mfa.begin_enrolment(session, user, utcnow())
    async with runtime.db.transaction() as session:
        second = await mfa.begin_enrolment(session, user, utcnow())
    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await mfa.confirm_enrolment(
                session, Actor(user.id), user.id, pyotp.TOTP(first.secret).now(), utcnow()
            )
    async with runtime.db.transaction() as session:
        codes = await mfa.confirm_enrolment(
            session, Actor(user.id), user.id, pyotp.TOTP(second.secret).now(), utcnow()
        )
    assert len(codes) == 10


async def test_confirming_hands_out_ten_recovery_codes_stored_only_as_digests(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, _, codes = await enrolled_user(runtime)
    assert len(set(codes)) == 10
    async with runtime.db.transaction() as session:
        assert await mfa.is_enrolled(session, user.id)
        stored = (await session.scalars(select(RecoveryCode.code_hash))).all()
        assert await mfa.unused_recovery_codes(session, user.id) == 10
    assert len(stored) == 10 and not set(codes) & set(stored)


async def test_turning_it_on_tells_the_user_by_email(runtime: Runtime) -> None:
    """Someone holding the password and a session could turn it on with an app of their own
    and lock the owner out: the owner must hear of it, as of its removal."""
    user, _, codes = await enrolled_user(runtime)
    (notice,) = await mail_to(runtime, user.email)
    assert notice.subject == "Two-step verification was turned on for your Acme ID account"
    assert not any(code in notice.text_body for code in codes)


async def test_enrolling_again_while_on_is_a_conflict(runtime: Runtime, mfa: SecondFactor) -> None:
    user, _, _ = await enrolled_user(runtime)
    with pytest.raises(Conflict):
        async with runtime.db.transaction() as session:
            await mfa.begin_enrolment(session, user, utcnow())


async def test_a_current_code_signs_in_with_amr_pwd_and_otp(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    assert await _verify(runtime, mfa, user, generator.now()) == ("pwd", "otp")


@pytest.mark.parametrize("spell", ["{}-{}", "{} {}", "{}\uff0d{}"])
async def test_a_code_typed_with_a_dash_or_space_signs_in(
    runtime: Runtime, mfa: SecondFactor, spell: str
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    code = generator.now()
    assert await _verify(runtime, mfa, user, spell.format(code[:3], code[3:])) == ("pwd", "otp")


async def test_a_code_typed_in_full_width_digits_signs_in(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    full_width = generator.now().translate({ord(d): 0xFF10 + int(d) for d in "0123456789"})
    assert await _verify(runtime, mfa, user, full_width) == ("pwd", "otp")


async def test_a_code_is_accepted_once_only(runtime: Runtime, mfa: SecondFactor) -> None:
    user, generator, _ = await enrolled_user(runtime)
    code = generator.now()
    await _verify(runtime, mfa, user, code)
    with pytest.raises(InvalidCode):
        await _verify(runtime, mfa, user, code)


async def test_an_older_code_is_refused_once_a_newer_one_was_used(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    now = utcnow()
    async with runtime.db.transaction() as session:
        await mfa.verify(session, user.id, generator.at(now + timedelta(seconds=30)), now)
    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await mfa.verify(session, user.id, generator.at(now), now)


async def test_two_parallel_uses_of_one_code_give_one_success(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    code = generator.now()
    results = await asyncio.gather(
        *(_verify(runtime, mfa, user, code) for _ in range(5)), return_exceptions=True
    )
    assert sum(r == ("pwd", "otp") for r in results) == 1
    # Each use counts as an attempt before it is checked: past IDENTITY_LOGIN_MAX_FAILURES
    # (3) of them the rest are refused unchecked.
    others = [r for r in results if r != ("pwd", "otp")]
    assert all(isinstance(r, InvalidCode | RateLimited) for r in others)
    assert sum(isinstance(r, InvalidCode) for r in others) >= 1


async def test_the_confirming_code_cannot_be_replayed_at_sign_in(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user = await new_user(runtime, "ana@example.com")
    async with runtime.db.transaction() as session:
        enrolment = await mfa.begin_enrolment(session, user, utcnow())
    code = pyotp.TOTP(enrolment.secret).now()
    async with runtime.db.transaction() as session:
        await mfa.confirm_enrolment(session, Actor(user.id), user.id, code, utcnow())
    with pytest.raises(InvalidCode):
        await _verify(runtime, mfa, user, code)


async def test_a_recovery_code_works_once_instead_of_a_code(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, _, codes = await enrolled_user(runtime)
    assert await _verify(runtime, mfa, user, codes[3].upper()) == ("pwd", "otp")
    with pytest.raises(InvalidCode):
        await _verify(runtime, mfa, user, codes[3])
    async with runtime.db.transaction() as session:
        assert await mfa.unused_recovery_codes(session, user.id) == 9


async def test_two_parallel_uses_of_one_recovery_code_give_one_success(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, _, codes = await enrolled_user(runtime)
    results = await asyncio.gather(
        *(_verify(runtime, mfa, user, codes[0]) for _ in range(5)), return_exceptions=True
    )
    assert sum(r == ("pwd", "otp") for r in results) == 1


async def test_failed_codes_are_throttled_even_for_a_right_code(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    for _ in range(3):  # IDENTITY_LOGIN_MAX_FAILURES
        with pytest.raises(InvalidCode):
            await _verify(runtime, mfa, user, wrong_code(generator.secret))
    with pytest.raises(RateLimited) as refused:
        await _verify(runtime, mfa, user, generator.now())
    assert refused.value.retry_after > 0


async def test_a_user_without_a_second_factor_has_no_code_to_verify(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user = await new_user(runtime, "ana@example.com")
    # Not a failed attempt: more of them than IDENTITY_LOGIN_MAX_FAILURES (3) are not throttled.
    for _ in range(4):
        with pytest.raises(NotFound):
            await _verify(runtime, mfa, user, "123456")


async def test_disabling_needs_the_password_and_a_current_code(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    with pytest.raises(InvalidPassword):
        await mfa.disable(
            runtime.db, runtime.passwords, Actor(user.id), user, "wrong", generator.now(), utcnow()
        )
    wrong = wrong_code(generator.secret)
    with pytest.raises(InvalidCode):
        await mfa.disable(
            runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, wrong, utcnow()
        )
    await mfa.disable(
        runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, generator.now(), utcnow()
    )
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, user.id)
        assert await mfa.unused_recovery_codes(session, user.id) == 0
    (notice,) = await mail_since_enrolment(runtime, user.email)
    assert notice.subject == "Two-step verification was turned off for your Acme ID account"


async def test_staff_reset_removes_the_factor_is_audited_and_tells_the_user(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, _, _ = await enrolled_user(runtime)
    async with runtime.db.transaction() as session:
        await mfa.staff_reset(session, STAFF, user.id, "  lost phone, ID checked  ", utcnow())
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, user.id)
        (event,) = await session.scalars(_staff_resets())
    assert (event.actor_client_id, event.target_id) == ("support-desk", str(user.id))
    assert event.details == {"old": None, "new": None, "reason": "lost phone, ID checked"}
    assert event.ip == "203.0.113.9" and event.request_id == "req-1"
    assert len(await mail_since_enrolment(runtime, user.email)) == 1


async def test_of_two_staff_resets_at_once_one_resets_and_the_other_finds_nothing(
    runtime: Runtime, mfa: SecondFactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both see the factor on; the other commits its removal before this one deletes. This
    one removed nothing, so it must not audit a reset or email the user a second time."""
    user, _, _ = await enrolled_user(runtime)
    real_remove = repository.remove

    async def remove_after_another_reset(*args: Any, **kwargs: Any) -> bool:
        monkeypatch.setattr(repository, "remove", real_remove)
        async with runtime.db.transaction() as other:
            await mfa.staff_reset(other, STAFF, user.id, "lost phone, ticket 1", utcnow())
        return await real_remove(*args, **kwargs)

    monkeypatch.setattr(repository, "remove", remove_after_another_reset)
    with pytest.raises(NotFound):
        async with runtime.db.transaction() as session:
            await mfa.staff_reset(session, STAFF, user.id, "lost phone, ticket 2", utcnow())
    async with runtime.db.transaction() as session:
        (event,) = await session.scalars(_staff_resets())
    assert event.details == {"old": None, "new": None, "reason": "lost phone, ticket 1"}
    assert len(await mail_since_enrolment(runtime, user.email)) == 1


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
async def test_staff_reset_needs_a_reason(runtime: Runtime, mfa: SecondFactor, reason: str) -> None:
    user, _, _ = await enrolled_user(runtime)
    with pytest.raises(InvalidInput):
        async with runtime.db.transaction() as session:
            await mfa.staff_reset(session, STAFF, user.id, reason, utcnow())


async def test_staff_reset_of_a_user_without_a_factor_is_not_found(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user = await new_user(runtime, "ana@example.com")
    with pytest.raises(NotFound):
        async with runtime.db.transaction() as session:
            await mfa.staff_reset(session, STAFF, user.id, "lost phone", utcnow())


async def test_failed_attempts_to_turn_it_off_leave_the_sign_in_codes_alone(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    wrong = wrong_code(generator.secret)
    for _ in range(3):  # IDENTITY_LOGIN_MAX_FAILURES
        with pytest.raises(InvalidCode):
            await mfa.disable(
                runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, wrong, utcnow()
            )
    with pytest.raises(RateLimited):
        await mfa.disable(
            runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, generator.now(), utcnow()
        )
    # Fumbling on the security page does not lock the user out of signing in.
    assert await _verify(runtime, mfa, user, generator.now()) == ("pwd", "otp")


async def test_failed_sign_in_codes_leave_turning_it_off_alone(
    runtime: Runtime, mfa: SecondFactor
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    for _ in range(3):  # IDENTITY_LOGIN_MAX_FAILURES
        with pytest.raises(InvalidCode):
            await _verify(runtime, mfa, user, wrong_code(generator.secret))
    with pytest.raises(RateLimited):
        await _verify(runtime, mfa, user, generator.now())
    # Someone guessing at the sign-in does not stop the signed-in owner turning it off.
    await mfa.disable(
        runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, generator.now(), utcnow()
    )
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, user.id)
