"""A code typed longer than any code with its spaces (64 characters) is refused like a wrong
code on every page that takes one, never cut to a prefix that is then checked: a cut made
"123456" + spaces + junk pass as "123456"."""

from __future__ import annotations

import re

import httpx
import pyotp
import pytest

from identity.mfa.service import MAX_CODE
from identity.runtime import Runtime
from tests.integration.oauth_helpers import make_client, pkce_pair
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    followed,
    login_page,
    post_form,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, enrolled_user, new_user

ANA = "ana@example.com"


def _padded(code: str) -> str:
    """``code``, then spaces up to the longest code taken, then one more character: cut to
    that length, it reads as ``code``."""
    return code + " " * (MAX_CODE - len(code)) + "9"


async def test_a_too_long_code_at_sign_in_is_refused_as_invalid(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, codes = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    login = await login_page(client, app, challenge)
    step = await post_form(client, login, "/login", email=ANA, password=PASSWORD)
    page = await client.get(step.headers["location"])

    for code in (generator.now(), codes[0]):
        refused = await post_form(client, page, "/login/second-factor", code=_padded(code))
        assert refused.status_code == 400, refused.text
        assert "This code is not valid." in alert(refused)
    # Neither was spent: the recovery code still signs in.
    done = await post_form(client, page, "/login/second-factor", code=codes[0])
    assert done.status_code == 303, done.text


@pytest.mark.parametrize("which", ["totp", "recovery"])
async def test_a_code_with_spaces_beyond_the_longest_taken_is_refused_at_sign_in(
    client: httpx.AsyncClient, runtime: Runtime, which: str
) -> None:
    """The form keeps the whole of a code one character too long, and spaces alone make it
    so: without spaces it is the right code, and it is still refused, as the README says
    of any code over 64 characters."""
    _, generator, codes = await enrolled_user(runtime)
    code = generator.now() if which == "totp" else codes[0]
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    login = await login_page(client, app, challenge)
    step = await post_form(client, login, "/login", email=ANA, password=PASSWORD)
    page = await client.get(step.headers["location"])

    spaced = code + " " * (MAX_CODE + 1 - len(code))
    refused = await post_form(client, page, "/login/second-factor", code=spaced)

    assert refused.status_code == 400, refused.text
    assert "This code is not valid." in alert(refused)


async def test_a_too_long_code_does_not_turn_two_step_verification_on(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    set_up = await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )
    code = pyotp.TOTP(totp_secret(set_up)).now()

    refused = await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=_padded(code))

    assert refused.status_code == 400, refused.text
    assert alert(refused).startswith("This code is not valid.")
    done = await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
    assert done.status_code == 303, done.text


@pytest.mark.parametrize("which", ["totp", "recovery"])
async def test_a_too_long_code_does_not_turn_two_step_verification_off(
    client: httpx.AsyncClient, runtime: Runtime, which: str
) -> None:
    _, generator, codes = await enrolled_user(runtime)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=codes[1])
    code = generator.now() if which == "totp" else codes[0]

    refused = await post_form(
        client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code=_padded(code)
    )

    assert refused.status_code == 400, refused.text
    assert alert(refused) == "The password or the code is not correct."
    assert "/totp/disable" in (await client.get(SECURITY)).text


def _code_inputs(page: httpx.Response) -> list[str]:
    return re.findall(r'<input [^>]*name="code"[^>]*>', page.text)


async def test_no_page_lets_the_browser_cut_a_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A browser cuts a pasted text to the input's maxlength without a word, and the cut code
    would be checked: the server refuses a long one instead."""
    _, _, codes = await enrolled_user(runtime)
    login = await client.get((await client.get(SECURITY)).headers["location"])
    step = await post_form(client, login, "/login", email=ANA, password=PASSWORD)
    second_step = await client.get(step.headers["location"])
    back = await post_form(client, second_step, "/login/second-factor", code=codes[0])
    security = await client.get(back.headers["location"])
    client.cookies.clear()
    await new_user(runtime, "bea@example.com")
    page = await sign_in_to_security_page(client, "bea@example.com", PASSWORD)
    set_up = await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )

    inputs = [*_code_inputs(second_step), *_code_inputs(security), *_code_inputs(set_up)]
    assert len(inputs) == 3
    assert not [i for i in inputs if "maxlength" in i]
