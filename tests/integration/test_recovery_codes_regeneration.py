"""New recovery codes from the security page: the old ones stop working at once, used or
not; the password proves the visitor; two at once, or one beside a sign-in, leave ten."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.errors import NotFound
from identity.mfa import recovery_codes, repository
from identity.mfa.models import RecoveryCode
from identity.mfa.service import InvalidCode, SecondFactor
from identity.runtime import Runtime
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    followed,
    post_form,
    second_step,
    sign_in_to_security_page,
)
from tests.integration.recovery_helpers import (
    PASSWORD,
    enrolled_user,
    mail_since_enrolment,
    new_user,
)

ANA = "ana@example.com"
SPANISH = {"Accept-Language": "es"}
REGENERATE = f"{SECURITY}/recovery-codes"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_LOGIN_MAX_FAILURES": "3"}


def _codes(page: httpx.Response) -> list[str]:
    return re.findall(r"<li data-recovery-code>([0-9a-z-]+)</li>", page.text)


async def _stored(runtime: Runtime, user: User) -> tuple[set[str], int]:
    """The digests of the user's codes, and how many of them are unused."""
    async with runtime.db.transaction() as session:
        hashes = set(
            await session.scalars(
                select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
            )
        )
        unused = await SecondFactor.from_runtime(runtime).unused_recovery_codes(session, user.id)
    return hashes, unused


def _digests(codes: list[str]) -> set[str]:
    return {recovery_codes.code_digest(code) for code in codes}


async def test_new_codes_replace_every_old_one_and_sign_in_takes_only_the_new(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=old[0])
    assert "Recovery codes left: 9." in page.text

    shown = await followed(
        client, await post_form(client, page, REGENERATE, current_password=PASSWORD)
    )

    assert "Your old recovery codes no longer work" in shown.text
    new = _codes(shown)
    assert len(set(new)) == 10 and not set(new) & set(old)
    assert await _stored(runtime, user) == (_digests(new), 10)
    assert "Recovery codes left: 10." in (await client.get(SECURITY)).text

    client.cookies.clear()
    to_login = await client.get(SECURITY)
    login = await client.get(to_login.headers["location"])
    step = await post_form(client, login, "/login", email=ANA, password=PASSWORD)
    refused = await second_step(client, step, old[1])  # never used, replaced all the same
    assert refused.status_code == 400 and "This code is not valid." in alert(refused)
    accepted = await post_form(client, refused, "/login/second-factor", code=new[0])
    assert accepted.status_code == 303, accepted.text
    assert "Recovery codes left: 9." in (await client.get(SECURITY)).text


async def test_the_replacement_is_audited_and_the_user_told_by_email(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=old[0])
    await post_form(client, page, REGENERATE, current_password=PASSWORD)
    async with runtime.db.transaction() as session:
        (event,) = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "user.recovery_codes_replaced")
        )
    assert (event.actor_user_id, event.target_type, event.target_id) == (
        user.id,
        "user",
        str(user.id),
    )
    assert event.ip == "127.0.0.1" and event.request_id
    assert event.details == {"old": None, "new": None}
    (message,) = await mail_since_enrolment(runtime, ANA)
    assert message.subject == "New recovery codes were made for your Identity account"
    assert old[1] not in message.text_body


async def test_in_spanish_the_codes_page_speaks_spanish(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, old[0], **SPANISH)
    assert "Generar nuevos códigos de recuperación" in page.text

    shown = await followed(
        client, await post_form(client, page, REGENERATE, current_password=PASSWORD)
    )

    assert 'lang="es"' in shown.text
    assert "Tus códigos de recuperación anteriores ya no sirven" in shown.text
    assert len(_codes(shown)) == 10
    (message,) = await mail_since_enrolment(runtime, ANA)
    assert message.subject.startswith("Se han generado nuevos códigos de recuperación")


async def test_a_wrong_password_is_refused_and_counts_with_the_other_forms(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, old[0], **SPANISH)
    before = await _stored(runtime, user)

    wrong = await post_form(client, page, REGENERATE, current_password="Wrong!Pass1")
    assert wrong.status_code == 400
    assert alert(wrong) == "La contraseña actual no es correcta."
    assert _codes(wrong) == [] and await _stored(runtime, user) == before

    await post_form(client, page, f"{SECURITY}/password", current_password="Wrong!Pass1")
    await post_form(client, page, REGENERATE, current_password="Wrong!Pass1")
    throttled = await post_form(client, page, REGENERATE, current_password=PASSWORD)
    assert throttled.status_code == 429
    assert alert(throttled) == "Demasiados intentos fallidos. Inténtalo de nuevo más tarde."
    assert _codes(throttled) == [] and await _stored(runtime, user) == before
    assert await mail_since_enrolment(runtime, ANA) == []


async def test_without_two_step_verification_the_page_says_there_is_nothing_to_replace(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    assert REGENERATE not in page.text  # the form is offered only with two-step on

    # A page left open in another tab from before two-step verification was turned off.
    answer = await post_form(client, page, REGENERATE, current_password=PASSWORD)

    assert answer.status_code == 400
    assert alert(answer) == "Two-step verification is off: there are no recovery codes to replace."
    assert _codes(answer) == []
    async with runtime.db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(RecoveryCode)) == 0
        assert await session.scalar(select(func.count()).select_from(AuditEvent)) == 0


async def test_two_replacements_at_once_leave_one_set_of_ten(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, _, old = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=old[0])

    answers = await asyncio.gather(
        *(post_form(client, page, REGENERATE, current_password=PASSWORD) for _ in range(2))
    )

    assert [a.status_code for a in answers] == [303, 303]
    answers = [await client.get(a.headers["location"]) for a in answers]
    stored, unused = await _stored(runtime, user)
    assert unused == 10 and len(stored) == 10
    # The set that committed last is the one kept, whole; nothing of the other works.
    assert sorted(len(_digests(_codes(a)) & stored) for a in answers) == [0, 10]


async def _replace(runtime: Runtime, user: User) -> list[str]:
    """What the page does once the password is proved."""
    actor = Actor(user.id, None, "198.51.100.7", "req-1")
    mfa = SecondFactor.from_runtime(runtime)
    return await mfa.replace_recovery_codes(runtime.db, actor, user, "en", utcnow())


def _start_a_replacement_once_a_code_is_spent(
    runtime: Runtime, user: User, monkeypatch: pytest.MonkeyPatch
) -> list[asyncio.Task[list[str]]]:
    """Spending a recovery code then starts a replacement beside the spender's transaction
    and gives it time to reach the code's row, which the spender holds until it commits."""
    real_spend = repository.spend_recovery_code
    replacements: list[asyncio.Task[list[str]]] = []

    async def spend_then_start_a_replacement(*args: Any, **kwargs: Any) -> bool:
        spent = await real_spend(*args, **kwargs)
        replacements.append(asyncio.create_task(_replace(runtime, user)))
        await asyncio.sleep(0.2)
        return spent

    monkeypatch.setattr(repository, "spend_recovery_code", spend_then_start_a_replacement)
    return replacements


async def test_an_old_code_typed_as_its_set_is_replaced_does_not_sign_in(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sign-in has found the factor on and is about to spend the code when the new set
    commits (and is shown): the old code must be refused."""
    user, _, old = await enrolled_user(runtime, ANA)
    real_spend = repository.spend_recovery_code
    shown: list[str] = []

    async def spend_after_a_replacement(*args: Any, **kwargs: Any) -> bool:
        shown.extend(await _replace(runtime, user))
        return await real_spend(*args, **kwargs)

    monkeypatch.setattr(repository, "spend_recovery_code", spend_after_a_replacement)
    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await SecondFactor.from_runtime(runtime).verify(session, user.id, old[1], utcnow())
    assert await _stored(runtime, user) == (_digests(shown), 10)


async def test_a_code_spent_just_before_a_replacement_leaves_ten_new_ones(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sign-in spends an old code and, before it commits, a replacement starts: it
    waits for the sign-in, then replaces every code, the one just spent included."""
    user, _, old = await enrolled_user(runtime, ANA)
    replacements = _start_a_replacement_once_a_code_is_spent(runtime, user, monkeypatch)
    async with runtime.db.transaction() as session:
        amr = await SecondFactor.from_runtime(runtime).verify(session, user.id, old[1], utcnow())
    assert amr == ("pwd", "otp")
    new = await replacements[0]
    assert await _stored(runtime, user) == (_digests(new), 10)


async def test_turning_off_with_a_code_while_codes_are_replaced_leaves_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Turning off with a recovery code holds that code's row, then removes the factor; a
    replacement started in between must neither deadlock with it nor leave codes behind."""
    user, _, old = await enrolled_user(runtime, ANA)
    mfa = SecondFactor.from_runtime(runtime)
    replacements = _start_a_replacement_once_a_code_is_spent(runtime, user, monkeypatch)
    await mfa.disable(
        runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, old[1], utcnow()
    )
    with pytest.raises(NotFound):
        await replacements[0]
    assert await _stored(runtime, user) == (set(), 0)
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, user.id)
