"""Turning two-step verification on signs out the other devices, unless the user unticks the
box (Keycloak's "Sign out from other devices" on its OTP form): someone who turns it on
because their password may be known must not leave a thief's session, or the apps it
signed in to, working. This browser stays signed in."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pyotp
import pytest

from identity.accounts.models import User
from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from identity.sessions import service as sessions
from tests.browser import form_fields
from tests.integration.oauth_helpers import (
    RegisteredClient,
    assert_access_token_dead,
    is_active,
    make_client,
    refresh,
    signed_in_tokens,
)
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    followed,
    other_session,
    post_form,
    session_live,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, new_user
from tests.wrong_codes import wrong_code

ANA = "ana@example.com"
BOX = "sign_out_others"
INCOMPLETE = (
    "The form came without some of its fields, or with one twice, so nothing was changed. "
    "Please try again."
)


@pytest.fixture
async def ana(runtime: Runtime) -> User:
    return await new_user(runtime, ANA)


async def _elsewhere(
    client: httpx.AsyncClient, runtime: Runtime, user: User
) -> tuple[str, RegisteredClient, dict[str, Any]]:
    """Another browser signed in as ``user``, and an app's tokens issued through it."""
    other = await other_session(runtime, user)
    async with runtime.db.transaction() as session:
        found = await sessions.current(session, other, utcnow())
    assert found is not None
    app = await make_client(runtime)
    issued = await signed_in_tokens(client, runtime, app, user=user, session_id=found.id)
    return other, app, issued


async def _set_up_page(client: httpx.AsyncClient, **headers: str) -> httpx.Response:
    page = await sign_in_to_security_page(client, ANA, PASSWORD, **headers)
    return await followed(
        client, await post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
    )


async def _enrolled(runtime: Runtime, user_id: uuid.UUID) -> bool:
    async with runtime.db.transaction() as session:
        return await SecondFactor.from_runtime(runtime).is_enrolled(session, user_id)


def _codes(page: httpx.Response) -> list[str]:
    return re.findall(r"<li data-recovery-code>([0-9a-z-]+)</li>", page.text)


async def test_turning_it_on_signs_out_the_other_devices_and_their_apps(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    other, app, issued = await _elsewhere(client, runtime, ana)
    set_up = await _set_up_page(client)
    this = client.cookies["identity_session"]

    shown = await followed(
        client,
        await post_form(
            client, set_up, f"{SECURITY}/totp/confirm", code=pyotp.TOTP(totp_secret(set_up)).now()
        ),
    )

    assert len(_codes(shown)) == 10
    assert not await session_live(runtime, other)
    refreshed = await refresh(client, app, issued["refresh_token"])
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"
    await assert_access_token_dead(client, app, issued["access_token"])
    # This browser stays signed in, with the cookie it had.
    assert client.cookies["identity_session"] == this
    assert await session_live(runtime, this)
    page = await client.get(SECURITY)
    assert page.status_code == 200 and "Other Browser" not in page.text
    assert "your other devices were signed out" in shown.text


async def test_with_the_box_unticked_the_other_devices_stay_signed_in(
    client: httpx.AsyncClient, runtime: Runtime, ana: User
) -> None:
    other, app, issued = await _elsewhere(client, runtime, ana)
    set_up = await _set_up_page(client)
    fields = form_fields(set_up.text)
    fields.pop(BOX, None)  # a box left unticked is not sent
    secret = totp_secret(set_up)
    wrong = await client.post(
        f"{SECURITY}/totp/confirm", data=fields | {"code": wrong_code(secret)}
    )
    # Shown again after a wrong code, the box stays as the user left it.
    assert wrong.status_code == 400 and f'name="{BOX}"' in wrong.text
    assert re.search(rf'<input [^>]*name="{BOX}"[^>]*checked', wrong.text) is None

    shown = await followed(
        client,
        await client.post(
            f"{SECURITY}/totp/confirm", data=fields | {"code": pyotp.TOTP(secret).now()}
        ),
    )

    assert len(_codes(shown)) == 10
    assert "signed out" not in shown.text
    assert await _enrolled(runtime, ana.id)
    assert await session_live(runtime, other)
    assert await is_active(client, app, issued["access_token"])
    assert (await refresh(client, app, issued["refresh_token"])).status_code == 200


@pytest.mark.parametrize(
    ("headers", "label"),
    [
        ({}, "Sign out from other devices"),
        ({"Accept-Language": "es"}, "Cerrar la sesión en los demás dispositivos"),
    ],
)
async def test_the_box_is_labelled_and_ticked_by_default(
    client: httpx.AsyncClient, ana: User, headers: dict[str, str], label: str
) -> None:
    set_up = await _set_up_page(client, **headers)

    form = re.search(r'<form method="post" action="[^"]*/totp/confirm.*?</form>', set_up.text, re.S)
    assert form is not None, set_up.text
    box = re.search(r'<input ([^>]*name="sign_out_others"[^>]*)>', form.group(0))
    assert box is not None, form.group(0)
    attributes = box.group(1).split()
    assert {'type="checkbox"', 'value="yes"', "checked", f'id="{BOX}"'} <= set(attributes)
    assert re.search(rf'<label [^>]*for="{BOX}"[^>]*>.*{label}.*</label>', form.group(0), re.S)


@pytest.mark.parametrize("box", [["yes", "yes"], "no", ""])
async def test_a_hand_made_box_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, ana: User, box: str | list[str]
) -> None:
    # A browser sends the box once with its value, or not at all: anything else is no
    # answer either way, so the set-up is shown again with nothing done, its code unspent.
    other = await other_session(runtime, ana)
    set_up = await _set_up_page(client)
    fields = form_fields(set_up.text)
    code = pyotp.TOTP(totp_secret(set_up)).now()

    refused = await client.post(f"{SECURITY}/totp/confirm", data=fields | {"code": code, BOX: box})

    assert refused.status_code == 400, refused.text
    assert alert(refused) == INCOMPLETE
    assert totp_secret(refused) == totp_secret(set_up)
    assert not await _enrolled(runtime, ana.id)
    assert await session_live(runtime, other)
    # The page shown again works, with the same code.
    shown = await followed(
        client, await post_form(client, refused, f"{SECURITY}/totp/confirm", code=code)
    )
    assert len(_codes(shown)) == 10
    assert not await session_live(runtime, other)
