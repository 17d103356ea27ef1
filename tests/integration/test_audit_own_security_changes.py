"""A user's own security changes in the audit log: password changed or reset, sign-in email
change asked for and confirmed, two-step verification on and off, other sessions signed out.
Each entry names the user as actor and target, with the client's address and the request id,
and holds no password, code, token or link; a refused or rolled-back change leaves none."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pyotp
import pytest

from identity.accounts.models import User
from identity.runtime import Runtime
from tests.browser import form_fields
from tests.integration.account_helpers import staff_headers
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    followed,
    link_in,
    mail_to,
    notice,
    other_session,
    post_form,
    sign_in_to_security_page,
    token_of,
    totp_secret,
)
from tests.integration.recovery_helpers import NEW_PASSWORD, PASSWORD, forgot, new_user
from tests.wrong_codes import wrong_code

ANA = "ana@example.com"
NEW_EMAIL = "ana@new.example"
REQUEST_ID = "req-self-1"


@pytest.fixture
async def ana(runtime: Runtime) -> User:
    return await new_user(runtime, ANA)


async def _post(
    http: httpx.AsyncClient, page: httpx.Response, action: str, **values: str
) -> httpx.Response:
    """``post_form`` under a request id of ours, for the entry to be found by."""
    data = form_fields(page.text) | values
    return await http.post(action, data=data, headers={"X-Request-ID": REQUEST_ID})


async def _entries(client: httpx.AsyncClient, runtime: Runtime, user: User) -> list[dict[str, Any]]:
    """The entries about ``user`` in the whole audit log, as staff read them, oldest first."""
    staff = await staff_headers(runtime)
    answer = await client.get(f"/api/v1/audit?target_id={user.id}", headers=staff)
    assert answer.status_code == 200, answer.text
    return list(reversed(answer.json()["events"]))


def _by_the_user(entry: dict[str, Any], user: User, *secrets: str) -> None:
    """``entry`` names ``user`` as actor and target, from the test client with our request
    id, and none of ``secrets`` appears anywhere in it."""
    assert entry["actor_user_id"] == str(user.id) and entry["actor_client_id"] is None
    assert (entry["target_type"], entry["target_id"]) == ("user", str(user.id))
    assert entry["account_id"] is None
    assert (entry["ip"], entry["request_id"]) == ("127.0.0.1", REQUEST_ID)
    written = json.dumps(entry)
    for secret in secrets:
        assert secret not in written


async def test_a_password_change_on_the_security_page_is_recorded(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    changed = await _post(
        client,
        page,
        f"{SECURITY}/password",
        current_password=PASSWORD,
        password=NEW_PASSWORD,
        password_confirm=NEW_PASSWORD,
    )
    assert changed.status_code == 303, changed.text

    (entry,) = await _entries(client, runtime, ana)
    assert entry["action"] == "user.password_changed"
    assert entry["details"] == {"old": None, "new": None}
    _by_the_user(entry, ana, PASSWORD, NEW_PASSWORD)


async def test_a_refused_password_change_records_nothing(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    action = f"{SECURITY}/password"
    wrong = await _post(
        client,
        page,
        action,
        current_password="Wrong!Pass9",
        password=NEW_PASSWORD,
        password_confirm=NEW_PASSWORD,
    )
    assert wrong.status_code == 400 and alert(wrong) == "The current password is not correct."
    mismatch = await _post(
        client, page, action, current_password=PASSWORD, password=NEW_PASSWORD, password_confirm="x"
    )
    assert mismatch.status_code == 400

    assert await _entries(client, runtime, ana) == []


@pytest.mark.parametrize("through", ["page", "api"])
async def test_a_reset_through_the_emailed_link_is_recorded_as_the_user(
    client: httpx.AsyncClient, runtime: Runtime, ana: User, through: str
) -> None:
    await forgot(client, ANA)
    (message,) = await mail_to(runtime, ANA)
    link = link_in(message, "/reset-password")
    client.cookies.clear()  # the link is opened with no session
    if through == "page":
        form = await client.get(link)
        done = await _post(
            client, form, "/reset-password", password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
        )
        assert done.status_code == 200, done.text
    else:
        body = {"token": token_of(link), "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
        done = await client.post(
            "/api/v1/password/reset", json=body, headers={"X-Request-ID": REQUEST_ID}
        )
        assert done.status_code == 204, done.text

    (entry,) = await _entries(client, runtime, ana)
    assert entry["action"] == "user.password_reset"
    assert entry["details"] == {"old": None, "new": None}
    _by_the_user(entry, ana, NEW_PASSWORD, token_of(link), link)


async def _ask_for_new_email(client: httpx.AsyncClient, runtime: Runtime) -> str:
    """Ana asks to move her sign-in email to NEW_EMAIL; returns the confirmation link."""
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    await _post(client, page, f"{SECURITY}/email", current_password=PASSWORD, email=NEW_EMAIL)
    (message,) = await mail_to(runtime, NEW_EMAIL)
    return link_in(message, "/confirm-email")


async def test_asking_for_an_email_change_is_recorded_with_the_address_asked_for(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    """Nothing changes until the link is opened, but a link went, under our name, to an
    address the session's holder chose: a stolen session's first step to taking the
    account over, which the owner and staff must be able to find."""
    link = await _ask_for_new_email(client, runtime)

    (entry,) = await _entries(client, runtime, ana)
    assert entry["action"] == "user.email_change_requested"
    assert entry["details"] == {"old": ANA, "new": NEW_EMAIL}
    _by_the_user(entry, ana, PASSWORD, token_of(link), link)


async def test_a_confirmed_email_change_records_the_old_and_new_address(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    link = await _ask_for_new_email(client, runtime)
    client.cookies.clear()  # opened in the new mailbox's browser, perhaps another one
    confirm = await client.get(link)

    done = await _post(client, confirm, "/confirm-email")

    assert done.status_code == 200, done.text
    _, entry = await _entries(client, runtime, ana)
    assert entry["action"] == "user.email_changed"
    assert entry["details"] == {"old": ANA, "new": NEW_EMAIL}
    _by_the_user(entry, ana, PASSWORD, token_of(link), link)


async def test_an_email_confirmation_refused_as_taken_records_nothing(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    link = await _ask_for_new_email(client, runtime)
    await new_user(runtime, NEW_EMAIL)  # someone signs up with it meanwhile
    confirm = await client.get(link)

    taken = await _post(client, confirm, "/confirm-email")

    assert taken.status_code == 409
    assert [e["action"] for e in await _entries(client, runtime, ana)] == [
        "user.email_change_requested"
    ]


async def test_turning_two_step_verification_on_and_off_is_recorded(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    enrol = await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )
    secret = totp_secret(enrol)
    # A wrong first code shows the set-up again, its transaction committed: still nothing.
    wrong = await _post(client, enrol, f"{SECURITY}/totp/confirm", code=wrong_code(secret))
    assert wrong.status_code == 400
    assert await _entries(client, runtime, ana) == []
    first_code = pyotp.TOTP(secret).now()
    shown = await followed(
        client, await _post(client, wrong, f"{SECURITY}/totp/confirm", code=first_code)
    )
    codes = re.findall(r"<li data-recovery-code>([0-9a-z-]+)</li>", shown.text)

    page = await client.get(SECURITY)
    refused = await _post(client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code="1")
    assert refused.status_code == 400
    off = await followed(
        client,
        await _post(client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code=codes[0]),
    )
    assert notice(off) == "Two-step verification is off."

    on_entry, signed_out, off_entry = await _entries(client, runtime, ana)
    assert on_entry["action"] == "user.second_factor_enabled"
    assert off_entry["action"] == "user.second_factor_disabled"
    for entry in (on_entry, off_entry):
        assert entry["details"] == {"old": None, "new": None}
    # The set-up's box, ticked as the page sends it, signed the other devices out.
    assert signed_out["action"] == "user.other_sessions_revoked"
    assert signed_out["details"] == {"old": None, "new": {"sessions_ended": 0}}
    for entry in (on_entry, signed_out, off_entry):
        _by_the_user(entry, ana, PASSWORD, secret, first_code, *codes)


async def test_signing_out_everywhere_else_is_recorded_with_how_many_sessions_ended(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    other = await other_session(runtime, ana)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)

    done = await followed(client, await _post(client, page, f"{SECURITY}/sessions"))

    assert notice(done) == "Your other sessions were signed out (1)."
    (entry,) = await _entries(client, runtime, ana)
    assert entry["action"] == "user.other_sessions_revoked"
    assert entry["details"] == {"old": None, "new": {"sessions_ended": 1}}
    _by_the_user(entry, ana, other, client.cookies["identity_session"])
