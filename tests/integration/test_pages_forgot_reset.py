"""The forgot-password and reset-password pages, in English and Spanish, without JavaScript."""

from __future__ import annotations

import asyncio
import html
import time
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from identity.accounts import repository as accounts
from identity.accounts.models import PasswordResetToken
from identity.accounts.service import authenticate, disable_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.recovery.service import ResetLimits
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.store.memory import MemoryStore
from tests.browser import form_fields
from tests.integration.page_helpers import (
    alert,
    link_in,
    mail_to,
    notice,
    other_session,
    post_form,
    retry_after,
    sign_in_to_security_page,
    token_of,
)
from tests.integration.recovery_helpers import (
    NEW_PASSWORD,
    PASSWORD,
    links_expire_while_hashing,
    new_user,
)

ANA = "ana@example.com"
SPANISH = {"Accept-Language": "es-ES,es;q=0.9"}
RESET = "/reset-password"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_RESET_LIMIT_PER_IP": "4/1h"}


async def _forgot(http: httpx.AsyncClient, email: str, **headers: str) -> httpx.Response:
    page = await http.get("/password/forgot", headers=headers)
    assert page.status_code == 200
    return await post_form(http, page, "/password/forgot", email=email)


async def _reset_link(client: httpx.AsyncClient, runtime: Runtime, **headers: str) -> str:
    assert (await _forgot(client, ANA, **headers)).status_code == 200
    (message,) = await mail_to(runtime, ANA)
    return link_in(message, RESET)


async def test_the_login_page_links_to_the_forgot_page_in_its_language(
    client: httpx.AsyncClient,
) -> None:
    english = await client.get("/password/forgot?ui_locales=en", headers=SPANISH)
    spanish = await client.get("/password/forgot", headers=SPANISH)
    assert "Forgot your password?" in english.text and 'lang="en"' in english.text
    assert "¿Has olvidado tu contraseña?" in spanish.text and 'lang="es"' in spanish.text
    assert set(form_fields(spanish.text)) == {"csrf_token", "ui_locales", "email"}


async def test_known_and_unknown_emails_get_the_same_page(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    known = await _forgot(client, ANA)
    unknown = await _forgot(client, "nobody@example.com")
    assert (known.status_code, known.text) == (unknown.status_code, unknown.text)
    assert known.status_code == 200
    assert "Check your inbox and your spam folder too." in notice(known)
    assert len(await mail_to(runtime, ANA)) == 1
    assert await mail_to(runtime, "nobody@example.com") == []


async def test_the_answer_is_in_spanish_for_a_spanish_browser(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    answer = await _forgot(client, ANA, **SPANISH)
    assert "Revisa tu bandeja de entrada" in notice(answer)
    (message,) = await mail_to(runtime, ANA)
    assert message.subject == "Cambia tu contraseña de Identity"


async def test_a_post_without_the_csrf_token_is_refused_and_sends_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    await client.get("/password/forgot")
    for token in ("", "0" * 64):
        response = await client.post(
            "/password/forgot", data={"email": ANA, "csrf_token": token, "ui_locales": "es"}
        )
        assert response.status_code == 400
        assert "se envió desde otro sitio" in alert(response)
    assert await mail_to(runtime, ANA) == []


async def test_text_that_is_no_email_address_gets_a_readable_message(
    client: httpx.AsyncClient,
) -> None:
    for value in ("not an address", "", "x" * 5000):
        response = await _forgot(client, value)
        assert response.status_code == 400
        assert alert(response) == "Please type a valid email address."


async def test_too_many_requests_from_one_address_get_a_friendly_page(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    window = ResetLimits.from_settings(runtime.settings).per_ip.window
    started = time.monotonic()
    answers = [await _forgot(client, f"user{n}@example.com") for n in range(5)]
    elapsed = time.monotonic() - started
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert "Please wait a little and try again." in alert(answers[-1])
    # The window opened with the first request, after ``started``: what is left of it, in
    # whole seconds rounded up, is at least the window less the time the requests took.
    assert window - elapsed <= retry_after(answers[-1]) <= window
    assert answers[-1].headers["content-type"].startswith("text/html")


async def test_reset_page_sets_a_new_password_and_signs_out_everywhere(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    other = await other_session(runtime, await new_user(runtime, ANA))
    form = await client.get(await _reset_link(client, runtime))
    assert form.status_code == 200
    assert "script-src 'self'" in form.headers["content-security-policy"]
    assert '<script src="/static/password.js" defer></script>' in form.text
    assert {"password", "password_confirm", "token"} <= set(form_fields(form.text))

    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert done.status_code == 200, done.text
    assert "every device signed in to your account was signed out" in notice(done)
    assert 'href="/account/security?ui_locales=en"' in done.text
    async with runtime.db.transaction() as session:
        assert await sessions.current(session, other, utcnow()) is None
        assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is None
        assert await authenticate(runtime.db, runtime.passwords, ANA, NEW_PASSWORD) is not None
    subjects = [m.subject for m in await mail_to(runtime, ANA)]
    assert subjects == ["Change your Identity password", "Your Identity password was changed"]


async def test_generate_without_javascript_fills_both_fields_with_a_password_that_works(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    form = await client.get(await _reset_link(client, runtime))
    assert f'data-for-email="{ANA}"' in form.text  # what password.js's live check sends
    suggested = await post_form(client, form, RESET, suggest="1", password="", password_confirm="")
    assert suggested.status_code == 200
    fields = form_fields(suggested.text)
    generated = fields["password"]
    assert generated and fields["password_confirm"] == generated
    assert f'readonly value="{html.escape(generated)}"' in suggested.text
    assert (await runtime.passwords.check(generated, email=ANA)).accepted
    done = await post_form(client, suggested, RESET)
    assert done.status_code == 200 and "Password changed" in done.text
    assert await authenticate(runtime.db, runtime.passwords, ANA, generated) is not None


async def test_different_passwords_and_policy_refusals_are_explained_in_the_page_language(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    form = await client.get(await _reset_link(client, runtime, **SPANISH), headers=SPANISH)
    mismatch = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD + "x"
    )
    assert mismatch.status_code == 400
    assert alert(mismatch) == "Las dos contraseñas no coinciden."
    weak = await post_form(
        client, form, RESET, password="Verano2025#", password_confirm="Verano2025#"
    )
    assert weak.status_code == 400
    assert "palabra" in alert(weak).lower()
    # A refused password does not spend the link.
    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert "Se ha cambiado tu contraseña" in notice(done)


@pytest.mark.parametrize(
    ("headers", "text"),
    [({}, "has expired, has already been used"), (SPANISH, "ha caducado, ya se ha usado")],
)
async def test_unknown_used_or_tampered_links_show_a_way_to_ask_again(
    client: httpx.AsyncClient, runtime: Runtime, headers: dict[str, str], text: str
) -> None:
    ana = await new_user(runtime, ANA)
    link = await _reset_link(client, runtime)
    form = await client.get(link, headers=headers)
    await post_form(client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD)
    for target in (link, link[:-2] + "xx", f"{RESET}?token=", RESET):
        page = await client.get(target, headers=headers)
        assert page.status_code == 400
        assert text in notice(page)
        assert 'href="/password/forgot?ui_locales=' in page.text
    # A link spent by another route (here ended as its user was disabled and enabled again).
    await _forgot(client, ANA)
    spent = await client.get(link_in((await mail_to(runtime, ANA))[-1], RESET), headers=headers)
    async with runtime.db.transaction() as session:
        await disable_user(session, Actor(), ana.id, "checking who this is", utcnow())
        await accounts.set_disabled(session, ana.id, False)
    used = await post_form(
        client, spent, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert used.status_code == 400 and text in notice(used)


async def test_an_expired_link_opens_on_a_way_to_ask_again_not_on_the_form(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Not a form to fill in that the post would then refuse: the page says at once that
    the link has expired and offers a new one."""
    await new_user(runtime, ANA)
    link = await _reset_link(client, runtime)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(PasswordResetToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )

    page = await client.get(link)

    assert page.status_code == 400
    assert "has expired, has already been used" in notice(page)
    assert 'href="/password/forgot?ui_locales=' in page.text
    assert 'name="password"' not in page.text


async def test_a_link_that_expires_while_the_new_password_hashes_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_user(runtime, ANA)
    form = await client.get(await _reset_link(client, runtime))
    links_expire_while_hashing(runtime, monkeypatch)
    late = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert late.status_code == 400
    assert 'href="/password/forgot?ui_locales=' in late.text
    assert await authenticate(runtime.db, runtime.passwords, ANA, PASSWORD) is not None


async def test_a_reset_post_without_the_csrf_token_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    link = await _reset_link(client, runtime)
    form = await client.get(link)
    refused = await client.post(
        RESET,
        data={"token": token_of(link), "password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD},
    )
    assert refused.status_code == 400
    assert "expired or was sent from another site" in alert(refused)
    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert done.status_code == 200


async def test_a_reset_in_a_browser_signed_in_as_someone_else_leaves_their_session_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The page dropped the browser's session cookie whoever it named: Bea, signed in, lost
    # her sign-in to Ana's reset, while her session lived on unended on the server.
    await new_user(runtime, ANA)
    await new_user(runtime, "bea@example.com")
    await sign_in_to_security_page(client, "bea@example.com", PASSWORD)
    form = await client.get(await _reset_link(client, runtime))
    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert done.status_code == 200 and "set-cookie" not in done.headers
    page = await client.get("/account/security")
    assert page.status_code == 200 and "bea@example.com" in page.text


async def test_a_reset_in_the_browser_signed_in_as_its_user_drops_the_ended_session(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    await sign_in_to_security_page(client, ANA, PASSWORD)
    form = await client.get(await _reset_link(client, runtime))
    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    assert done.status_code == 200
    assert done.headers["set-cookie"].startswith('identity_session=""; HttpOnly; Max-Age=0;')
    assert "identity_session" not in client.cookies


async def test_a_reset_posted_twice_resets_once_and_both_say_done(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A double click, or a reload of the answer (which resubmits): the second post told the
    # user the link no longer worked, and to ask again, though their password had been reset.
    other = await other_session(runtime, await new_user(runtime, ANA))
    await sign_in_to_security_page(client, ANA, PASSWORD)
    form = await client.get(await _reset_link(client, runtime))

    answers = await asyncio.gather(
        *(
            post_form(client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD)
            for _ in "ab"
        )
    )
    again = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )

    assert [a.status_code for a in (*answers, again)] == [200, 200, 200]
    assert {notice(a) for a in (*answers, again)} == {notice(answers[0])}
    assert "every device signed in to your account was signed out" in notice(again)
    # Each post carried the session the reset ended: each drops it, the last has none to drop.
    assert all(a.headers["set-cookie"].startswith('identity_session="";') for a in answers)
    assert "set-cookie" not in again.headers
    async with runtime.db.transaction() as session:
        assert await sessions.current(session, other, utcnow()) is None
    assert await authenticate(runtime.db, runtime.passwords, ANA, NEW_PASSWORD) is not None
    subjects = [m.subject for m in await mail_to(runtime, ANA)]
    assert subjects == ["Change your Identity password", "Your Identity password was changed"]


async def test_the_form_posted_again_shows_its_reset_for_five_minutes(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's five minutes, on a clock the test moves: after them, a reload is
    answered as any spent link is."""
    await new_user(runtime, ANA)
    form = await client.get(await _reset_link(client, runtime))
    clock = [0.0]
    monkeypatch.setattr(runtime, "store", MemoryStore(clock=lambda: clock[0]))
    posted = {"password": NEW_PASSWORD, "password_confirm": NEW_PASSWORD}
    done = await post_form(client, form, RESET, **posted)

    clock[0] = 5 * 60 - 1
    again = await post_form(client, form, RESET, **posted)
    clock[0] = 5 * 60
    late = await post_form(client, form, RESET, **posted)

    assert (done.status_code, again.status_code) == (200, 200)
    assert notice(again) == notice(done)
    assert late.status_code == 400 and "has already been used" in notice(late)


async def test_a_reset_whose_user_was_disabled_since_is_not_done_when_posted_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA)
    form = await client.get(await _reset_link(client, runtime))
    done = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )
    async with runtime.db.transaction() as session:
        await disable_user(session, Actor(), ana.id, "checking who this is", utcnow())

    again = await post_form(
        client, form, RESET, password=NEW_PASSWORD, password_confirm=NEW_PASSWORD
    )

    assert done.status_code == 200
    assert again.status_code == 400 and "has already been used" in notice(again)
