"""The form that turns two-step verification off, posted by someone who holds a session of a
user who has it off (a stolen cookie): it says it is off whatever password came with it, so it
is no password oracle. It verified the password first, then refused a wrong one ("password or
code not correct") and answered a right one with "it is off", under a count of its own beside
the other forms' count of wrong current passwords: more guesses for a session thief."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.page_helpers import (
    SECURITY,
    followed,
    notice,
    post_form,
    sign_in_to_security_page,
)
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"


async def test_with_two_step_off_a_wrong_password_gets_the_same_answer_as_the_right_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    wrong, right = [
        await post_form(client, page, f"{SECURITY}/totp/disable", password=guess, code="123456")
        for guess in ("not-the-password", PASSWORD)
    ]
    assert (wrong.status_code, right.status_code) == (303, 303), (wrong.status_code, wrong.text)
    for answer in (wrong, right):
        assert notice(await followed(client, answer)) == "Two-step verification is off."
