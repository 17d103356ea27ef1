"""The two-step set-up's confirmation posted twice (a double click): whichever answer the
browser shows, the recovery codes it shows are the ones stored, or none at all and the page
says two-step verification is on; never codes that do not work, nor a refusal after the
codes were made unseen."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import select

from identity.accounts.models import User
from identity.mfa import recovery_codes
from identity.mfa.models import RecoveryCode
from identity.runtime import Runtime
from identity.web import shown_once
from tests.browser import form_fields
from tests.integration.page_helpers import (
    SECURITY,
    followed,
    other_session,
    post_form,
    posted_twice,
    session_live,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"


def _codes(page: httpx.Response) -> list[str]:
    return re.findall(r"<li data-recovery-code>([0-9a-z-]+)</li>", page.text)


async def _stored(runtime: Runtime, user: User) -> set[str]:
    async with runtime.db.transaction() as session:
        statement = select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user.id)
        return set(await session.scalars(statement))


async def _set_up_page(client: httpx.AsyncClient) -> httpx.Response:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    return await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )


async def test_a_second_confirmation_shows_the_codes_the_first_one_stored(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA)
    set_up = await _set_up_page(client)
    code = pyotp.TOTP(totp_secret(set_up)).now()

    await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    # The browser drops the first answer and follows the second.
    second = await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    shown = await followed(client, second)

    assert len(_codes(shown)) == 10
    assert {recovery_codes.code_digest(c) for c in _codes(shown)} == await _stored(runtime, ana)


async def test_once_the_codes_were_seen_a_second_confirmation_says_it_is_on(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA)
    set_up = await _set_up_page(client)
    code = pyotp.TOTP(totp_secret(set_up)).now()
    first = await followed(
        client, await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    )
    stored = await _stored(runtime, ana)

    second = await followed(
        client, await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    )

    assert {recovery_codes.code_digest(c) for c in _codes(first)} == stored
    assert _codes(second) == [] and 'role="alert"' not in second.text
    assert "/totp/disable" in second.text  # the form that turns it off: it is on
    assert await _stored(runtime, ana) == stored


async def test_two_confirmations_at_once_both_lead_to_the_stored_codes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA)
    set_up = await _set_up_page(client)
    code = pyotp.TOTP(totp_secret(set_up)).now()

    answers = await asyncio.gather(
        *(post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code) for _ in range(2))
    )

    assert [a.status_code for a in answers] == [303, 303], [a.text[:300] for a in answers]
    # Whichever answer the browser follows shows the codes stored.
    shown = await followed(client, answers[-1])
    assert {recovery_codes.code_digest(c) for c in _codes(shown)} == await _stored(runtime, ana)


async def test_the_second_answer_followed_at_once_finds_the_codes_already_left(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first post left its codes for the page only after its commit: the second post,
    # let through by that commit, could send the browser to the codes' handle before they
    # were there, and the page then said two-step verification was on, the codes never seen.
    ana = await new_user(runtime, ANA)
    set_up = await _set_up_page(client)
    code = pyotp.TOTP(totp_secret(set_up)).now()
    leaving_codes = asyncio.Event()
    real_leave = shown_once.leave

    async def slow_leave(
        runtime: Runtime, user_id: uuid.UUID, what: dict[str, Any], handle: str | None = None
    ) -> str:
        if "codes" in what:
            leaving_codes.set()
            await asyncio.sleep(0.5)
        return await real_leave(runtime, user_id, what, handle)

    monkeypatch.setattr(shown_once, "leave", slow_leave)
    first = asyncio.create_task(post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code))
    await leaving_codes.wait()
    shown = await followed(
        client, await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    )
    await first

    assert {recovery_codes.code_digest(c) for c in _codes(shown)} == await _stored(runtime, ana)


async def test_a_double_click_that_signs_out_the_other_devices_still_shows_the_codes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The first post ends every session but this browser's: the second, made with the same
    # cookie, must still find this browser signed in and lead to the codes.
    ana = await new_user(runtime, ANA)
    other = await other_session(runtime, ana)
    set_up = await _set_up_page(client)
    code = pyotp.TOTP(totp_secret(set_up)).now()
    fields = form_fields(set_up.text) | {"code": code}
    assert fields["sign_out_others"] == "yes"  # as the page sends it, ticked

    first, second = await posted_twice(client, f"{SECURITY}/totp/confirm", fields)

    assert [first.status_code, second.status_code] == [303, 303], second.text
    assert first.headers["location"] == second.headers["location"]
    shown = await followed(client, second)
    assert {recovery_codes.code_digest(c) for c in _codes(shown)} == await _stored(runtime, ana)
    assert not await session_live(runtime, other)
    assert await session_live(runtime, client.cookies["identity_session"])
