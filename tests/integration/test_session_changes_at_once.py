"""A change that ends some of one user's sessions, and "sign out everywhere else" pressed in
another of their browsers at once (that press twice included): neither is answered with an
error, and what is left is what one of them coming first would leave."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import httpx
import pyotp
import pytest
from sqlalchemy import update

from identity.accounts import self_service
from identity.accounts.models import User
from identity.accounts.repository import stored_password
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mfa import repository as mfa_repository
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from tests.browser import form_fields
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import fresh_code, make_client, refresh
from tests.integration.page_helpers import (
    SECURITY,
    change_password,
    followed,
    post_form,
    session_live,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    new_user,
    reset,
    stored_reset_token,
)

ANA = "ana@example.com"
# A use older than a minute is recorded by the next one; one just made is not.
LAST_USED = [timedelta(minutes=5), timedelta(seconds=0)]


@pytest.fixture
async def ana(runtime: Runtime) -> User:
    return await new_user(runtime, ANA)


@pytest.fixture
def browsers(
    client: httpx.AsyncClient, other_browser: httpx.AsyncClient, ana: User
) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    return client, other_browser


async def _last_used(runtime: Runtime, ago: timedelta) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(update(BrowserSession).values(last_seen_at=utcnow() - ago))


async def _live(runtime: Runtime, *browsers: httpx.AsyncClient) -> list[bool]:
    return [await session_live(runtime, b.cookies["identity_session"]) for b in browsers]


async def _password_is(runtime: Runtime, user: User, password: str) -> bool:
    async with runtime.db.transaction() as session:
        stored = await stored_password(session, user.id)
    assert stored is not None
    return await runtime.passwords.verify(stored.hash, password)


async def _sign_out_others(browser: httpx.AsyncClient, page: httpx.Response) -> httpx.Response:
    return await post_form(browser, page, f"{SECURITY}/sessions")


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_two_browsers_signing_each_other_out_at_once_leave_one_signed_in(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient], runtime: Runtime, last_used: timedelta
) -> None:
    """Each fears the other is a thief's. On PostgreSQL each post held its own session's row
    (the use it recorded, or its new token) and waited for the other's: a deadlock, and one
    of them was answered 503. Had both gone through, each would have ended the other's
    session: nobody signed in."""
    pages = [await sign_in_to_security_page(browser, ANA, PASSWORD) for browser in browsers]
    await _last_used(runtime, last_used)

    answers = await asyncio.gather(
        *(_sign_out_others(browser, page) for browser, page in zip(browsers, pages, strict=True))
    )

    assert [answer.status_code for answer in answers] == [303, 303], [a.text for a in answers]
    assert sorted(await _live(runtime, *browsers)) == [False, True]


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_a_password_change_and_sign_out_everywhere_else(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    runtime: Runtime,
    ana: User,
    last_used: timedelta,
) -> None:
    a, b = browsers
    pages = [await sign_in_to_security_page(browser, ANA, PASSWORD) for browser in browsers]
    await _last_used(runtime, last_used)

    changed, signed_out = await asyncio.gather(
        change_password(a, pages[0], PASSWORD, NEW_PASSWORD), _sign_out_others(b, pages[1])
    )

    assert [changed.status_code, signed_out.status_code] == [303, 303], [
        changed.text,
        signed_out.text,
    ]
    # Either comes first and signs the other browser out; a change from a browser signed
    # out meanwhile is not made.
    live = await _live(runtime, a, b)
    assert sorted(live) == [False, True]
    assert await _password_is(runtime, ana, NEW_PASSWORD) is live[0]
    assert changed.headers["location"].startswith("/login?") is not live[0]


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_turning_two_step_on_and_sign_out_everywhere_else(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient], runtime: Runtime, last_used: timedelta
) -> None:
    a, b = browsers
    page = await sign_in_to_security_page(b, ANA, PASSWORD)
    set_up = await followed(
        a,
        await post_form(
            a,
            await sign_in_to_security_page(a, ANA, PASSWORD),
            f"{SECURITY}/totp",
            current_password=PASSWORD,
        ),
    )
    await _last_used(runtime, last_used)

    turned_on, signed_out = await asyncio.gather(
        post_form(
            a, set_up, f"{SECURITY}/totp/confirm", code=pyotp.TOTP(totp_secret(set_up)).now()
        ),
        _sign_out_others(b, page),
    )

    assert [turned_on.status_code, signed_out.status_code] == [303, 303]
    assert sorted(await _live(runtime, a, b)) == [False, True]


@pytest.mark.parametrize("ticked", [True, False])
async def test_a_set_up_confirmed_from_a_browser_signed_out_meanwhile_turns_nothing_on(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    runtime: Runtime,
    ana: User,
    ticked: bool,
) -> None:
    """The press in the other browser commits after the confirmation found its browser
    signed in: turning two-step on then would leave a second factor set up from a session
    the owner had just ended, maybe a thief's, with its recovery codes shown to nobody."""
    a, b = browsers
    await sign_in_to_security_page(b, ANA, PASSWORD)
    set_up = await followed(
        a,
        await post_form(
            a,
            await sign_in_to_security_page(a, ANA, PASSWORD),
            f"{SECURITY}/totp",
            current_password=PASSWORD,
        ),
    )
    fields = form_fields(set_up.text) | {"code": pyotp.TOTP(totp_secret(set_up)).now()}
    if not ticked:
        del fields["sign_out_others"]

    async with runtime.db.write_transaction() as session:
        kept = await sessions.current(session, b.cookies["identity_session"], utcnow())
        assert kept is not None
        await self_service.end_other_sessions(session, Actor(ana.id), ana.id, kept.id, utcnow())
        confirmed = asyncio.create_task(a.post(f"{SECURITY}/totp/confirm", data=fields))
        # The confirmation is admitted (the press is not committed) and goes on to its work.
        await asyncio.sleep(0.5)
    answer = await confirmed

    assert answer.status_code == 303, answer.text
    assert answer.headers["location"].startswith("/login?")
    async with runtime.db.transaction() as session:
        assert not await mfa_repository.is_confirmed(session, ana.id)
    assert await _live(runtime, a, b) == [False, True]


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_signing_this_browser_out_and_sign_out_everywhere_else(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient], runtime: Runtime, last_used: timedelta
) -> None:
    a, b = browsers
    pages = [await sign_in_to_security_page(browser, ANA, PASSWORD) for browser in browsers]
    form = re.search(r'<form method="post" action="/logout[^"]*">.*?</form>', pages[0].text, re.S)
    assert form is not None
    a_cookie = a.cookies["identity_session"]
    await _last_used(runtime, last_used)

    out, signed_out = await asyncio.gather(
        a.post("/logout", data=form_fields(form.group(0))), _sign_out_others(b, pages[1])
    )

    assert [out.status_code, signed_out.status_code] == [200, 303], [out.text, signed_out.text]
    assert not await session_live(runtime, a_cookie)
    assert await _live(runtime, b) == [True]


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_a_disable_and_sign_out_everywhere_else(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    runtime: Runtime,
    ana: User,
    last_used: timedelta,
) -> None:
    a, b = browsers
    page = await sign_in_to_security_page(b, ANA, PASSWORD)
    headers = await staff_headers(runtime)
    await _last_used(runtime, last_used)

    disabled, signed_out = await asyncio.gather(
        a.post(f"/api/v1/users/{ana.id}/disable", json={"reason": "Fraud"}, headers=headers),
        _sign_out_others(b, page),
    )

    assert [disabled.status_code, signed_out.status_code] == [200, 303], [
        disabled.text,
        signed_out.text,
    ]
    assert await _live(runtime, b) == [False]


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_a_password_reset_and_sign_out_everywhere_else(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    runtime: Runtime,
    ana: User,
    last_used: timedelta,
) -> None:
    a, b = browsers
    page = await sign_in_to_security_page(b, ANA, PASSWORD)
    token = await stored_reset_token(runtime, ana)
    await _last_used(runtime, last_used)

    reset_done, signed_out = await asyncio.gather(reset(a, token), _sign_out_others(b, page))

    assert [reset_done.status_code, signed_out.status_code] == [204, 303], [
        reset_done.text,
        signed_out.text,
    ]
    assert await _live(runtime, b) == [False]
    assert await _password_is(runtime, ana, NEW_PASSWORD)


@pytest.mark.parametrize("last_used", LAST_USED)
async def test_a_code_redemption_and_sign_out_everywhere_else_in_another_browser(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    runtime: Runtime,
    ana: User,
    last_used: timedelta,
) -> None:
    a, b = browsers
    page = await sign_in_to_security_page(a, ANA, PASSWORD)
    await sign_in_to_security_page(b, ANA, PASSWORD)
    async with runtime.db.transaction() as session:
        through_b = await sessions.current(session, b.cookies["identity_session"], utcnow())
    assert through_b is not None
    app = await make_client(runtime)
    code = await fresh_code(runtime, app, user=ana, session_id=through_b.id)
    await _last_used(runtime, last_used)

    redeemed, signed_out = await asyncio.gather(code.redeem(b), _sign_out_others(a, page))

    assert signed_out.status_code == 303
    assert await _live(runtime, a, b) == [True, False]
    # Redeemed first, its refresh token is ended by the sign-out; after it, refused.
    if redeemed.status_code == 200:
        refreshed = await refresh(b, app, redeemed.json()["refresh_token"])
        assert refreshed.status_code == 400, refreshed.text
    else:
        assert redeemed.status_code == 400 and redeemed.json()["error"] == "invalid_grant"
