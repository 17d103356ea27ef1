"""Signing in with a password and then an authenticator code (or a recovery code)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.app import create_app
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.settings import Settings
from identity.store.rate_limit import Limit
from tests.browser import form_fields, query
from tests.conftest import serving
from tests.integration.account_helpers import SYSTEM
from tests.integration.oauth_helpers import (
    REDIRECT_URI,
    RegisteredClient,
    make_client,
    pkce_pair,
    redeem,
    verify_with_jwks,
)
from tests.integration.page_helpers import (
    alert,
    login_page,
    post_form,
    posted_twice,
    waits_out,
)
from tests.integration.recovery_helpers import (
    PASSWORD,
    change_password_elsewhere,
    enrolled_user,
    new_user,
)
from tests.wrong_codes import wrong_code

ANA = "ana@example.com"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_LOGIN_MAX_FAILURES": "3"}


async def _password_step(
    http: httpx.AsyncClient,
    app: RegisteredClient,
    challenge: str,
    *,
    email: str = ANA,
    **params: str,
) -> httpx.Response:
    """Authorize and pass ``email``'s password; returns the second-factor page."""
    login = await login_page(http, app, challenge, **params)
    step = await post_form(http, login, "/login", email=email, password=PASSWORD)
    assert step.status_code == 303, step.text
    assert step.headers["location"].startswith("/login/second-factor?flow=")
    assert "identity_session" not in step.headers.get("set-cookie", "")
    page = await http.get(step.headers["location"])
    assert page.status_code == 200
    return page


async def _sessions(runtime: Runtime) -> list[BrowserSession]:
    async with runtime.db.transaction() as session:
        return list(await session.scalars(select(BrowserSession)))


async def test_a_code_after_the_password_signs_in_with_amr_pwd_and_otp(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    verifier, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    assert set(form_fields(page.text)) == {"csrf_token", "flow", "ui_locales", "code"}
    assert await _sessions(runtime) == []

    done = await post_form(client, page, "/login/second-factor", code=generator.now())
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(REDIRECT_URI)
    tokens = await redeem(client, app, query(done.headers["location"])["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    claims = (await verify_with_jwks(client, tokens.json()["id_token"])).claims
    assert claims["sub"] == str(user.id)
    assert claims["amr"] == ["pwd", "otp"]
    (browser,) = await _sessions(runtime)
    assert browser.amr == ["pwd", "otp"]


async def test_a_recovery_code_works_once_instead_of_a_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, codes = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    done = await post_form(client, page, "/login/second-factor", code=codes[0].upper())
    assert done.status_code == 303 and done.headers["location"].startswith(REDIRECT_URI)

    client.cookies.clear()
    page = await _password_step(client, app, challenge, prompt="login")
    again = await post_form(client, page, "/login/second-factor", code=codes[0])
    assert again.status_code == 400
    assert "This code is not valid." in alert(again)


async def test_wrong_codes_are_refused_then_throttled_in_spanish(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    since = time.monotonic()  # before the window's first count
    _, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge, ui_locales="es")
    assert "Verificación en dos pasos" in page.text
    answers = []
    for code in (wrong_code(generator.secret), "not a code", "x" * 500):
        answer = await post_form(client, page, "/login/second-factor", code=code)
        answers.append((answer.status_code, alert(answer)))
    invalid = (
        "Este código no es válido. Los códigos cambian cada 30 segundos y solo sirven una vez."
    )
    assert answers == [(400, invalid)] * 3
    # Now even the right code waits for the lockout to pass.
    blocked = await post_form(client, page, "/login/second-factor", code=generator.now())
    assert blocked.status_code == 429
    assert alert(blocked) == "Demasiados códigos incorrectos. Inténtalo de nuevo más tarde."
    assert waits_out(blocked, runtime.settings.login_lockout, since)
    assert await _sessions(runtime) == []


async def test_wrong_codes_spread_over_users_are_throttled_by_the_client_address(
    database: Settings,
) -> None:
    # Someone holding the passwords of many users with two-step verification (a leaked list)
    # spreads code guesses over them: counted per user alone, one client address got
    # IDENTITY_LOGIN_MAX_FAILURES guesses at each user's codes per window, however many
    # users, where wrong passwords are counted per address as well.
    changes = {"login_max_failures": 3, "login_max_failures_per_ip": 5}
    app = create_app(dataclasses.replace(database, **changes))
    async with serving(app) as http:
        runtime: Runtime = app.state.runtime
        client = await make_client(runtime, first_party=True)
        _, challenge = pkce_pair()
        answers = []
        since = time.monotonic()  # before the window's first count
        for email in ("ana@example.com", "bo@example.com", "cy@example.com"):
            _, generator, _ = await enrolled_user(runtime, email)
            page = await _password_step(http, client, challenge, email=email)
            for _ in range(2):
                code = wrong_code(generator.secret)
                answers.append(await post_form(http, page, "/login/second-factor", code=code))
        right = await post_form(http, page, "/login/second-factor", code=generator.now())

    # Two users' codes, then the third's password (right: it gives its count back) and codes.
    assert [answer.status_code for answer in answers] == [400] * 5 + [429]
    assert alert(answers[-1]) == "Too many wrong codes. Please try again later."
    # The right code too, as a right password is refused over the address's limit.
    assert right.status_code == 429
    assert waits_out(right, runtime.settings.login_lockout, since)


async def test_a_code_post_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    refused = await client.post(
        "/login/second-factor",
        data={"flow": form_fields(page.text)["flow"], "code": generator.now()},
    )
    assert refused.status_code == 400
    assert "expired or was sent from another site" in alert(refused)
    assert await _sessions(runtime) == []


async def test_the_code_page_needs_a_flow_whose_password_was_right(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    flow = form_fields(page.text)["flow"]
    for target in ("/login/second-factor", "/login/second-factor?flow=unknown"):
        response = await client.get(target)
        assert response.status_code == 400
        assert "has expired" in alert(response)
    forged = await post_form(client, page, "/login/second-factor", flow="unknown", code="123456")
    assert forged.status_code == 400 and "has expired" in alert(forged)
    assert flow  # the real flow still works after all that
    assert (await client.get(f"/login/second-factor?flow={flow}")).status_code == 200


async def test_the_code_step_belongs_to_the_browser_that_passed_the_password(
    client: httpx.AsyncClient, runtime: Runtime, other_browser: httpx.AsyncClient
) -> None:
    """The flow's id is in the code page's address (history, logs, a shared screenshot):
    with it, another browser holding a code (a phone looked at, an app's backup) signed in
    without the password. As node-oidc-provider, Keycloak and Kratos bind a sign-in to the
    browser's cookie, the step is this browser's."""
    _, generator, _ = await enrolled_user(runtime)
    oauth_app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, oauth_app, challenge)
    flow = form_fields(page.text)["flow"]
    opened = await other_browser.get(f"/login/second-factor?flow={flow}")
    assert opened.status_code == 400 and "has expired" in alert(opened)
    a_form = await other_browser.get("/password/forgot")  # any form: this browser's CSRF token
    posted = await post_form(
        other_browser, a_form, "/login/second-factor", flow=flow, code=generator.now()
    )
    assert posted.status_code == 400 and "has expired" in alert(posted)
    assert await _sessions(runtime) == []
    done = await post_form(client, page, "/login/second-factor", code=generator.now())
    assert done.status_code == 303 and done.headers["location"].startswith(REDIRECT_URI)


async def test_users_without_a_second_factor_sign_in_with_the_password_alone(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    app = await make_client(runtime, first_party=True)
    verifier, challenge = pkce_pair()
    login = await login_page(client, app, challenge, scope="openid")
    done = await post_form(client, login, "/login", email=ANA, password=PASSWORD)
    tokens = await redeem(client, app, query(done.headers["location"])["code"], verifier)
    claims = (await verify_with_jwks(client, tokens.json()["id_token"])).claims
    assert claims["amr"] == ["pwd"]


async def _disable(runtime: Runtime, user: User) -> None:
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, user.id, "account compromised", utcnow())


@pytest.mark.parametrize(
    "change", [change_password_elsewhere, _disable], ids=["password", "disabled"]
)
async def test_a_password_proven_before_a_change_or_a_disable_no_longer_counts(
    client: httpx.AsyncClient,
    runtime: Runtime,
    change: Callable[[Runtime, User], Awaitable[None]],
) -> None:
    user, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    await change(runtime, user)
    # Opening the page again says so at once, as the post does, not after a code is typed.
    reload = await client.get(f"/login/second-factor?flow={form_fields(page.text)['flow']}")
    assert reload.status_code == 400 and "has expired" in alert(reload)
    late = await post_form(client, page, "/login/second-factor", code=generator.now())
    assert late.status_code == 400, late.headers
    assert "has expired" in alert(late)
    assert await _sessions(runtime) == []


async def _staff_reset(runtime: Runtime, user: User) -> None:
    async with runtime.db.transaction() as session:
        await SecondFactor.from_runtime(runtime).staff_reset(
            session, SYSTEM, user.id, "lost phone", utcnow()
        )


async def _turned_off_elsewhere(runtime: Runtime, user: User, code: str) -> None:
    await SecondFactor.from_runtime(runtime).disable(
        runtime.db, runtime.passwords, Actor(user.id), user, PASSWORD, code, utcnow()
    )


@pytest.mark.parametrize("first", ["post", "reload"])
@pytest.mark.parametrize("removal", ["staff-reset", "turned-off"])
async def test_a_second_factor_removed_while_its_code_is_awaited_ends_the_step(
    client: httpx.AsyncClient, runtime: Runtime, removal: str, first: str
) -> None:
    """Whichever comes first, a post of any code (the old app's included: none can be
    right) or a reload (which must not offer a form no code can pass), the step is over and
    the user must start again."""
    user, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    if removal == "staff-reset":
        await _staff_reset(runtime, user)
    else:
        await _turned_off_elsewhere(runtime, user, generator.now())

    async def post() -> httpx.Response:
        return await post_form(client, page, "/login/second-factor", code="000000")

    async def reload() -> httpx.Response:
        return await client.get(f"/login/second-factor?flow={form_fields(page.text)['flow']}")

    for step in (post, reload) if first == "post" else (reload, post):
        answer = await step()
        assert answer.status_code == 400
        assert "has expired" in alert(answer) and "not valid" not in alert(answer)
        assert 'name="code"' not in answer.text
    assert await _sessions(runtime) == []


@pytest.mark.parametrize("kind", ["totp", "recovery"])
async def test_a_code_posted_twice_signs_in_with_the_first_posts_session(
    client: httpx.AsyncClient, runtime: Runtime, kind: str
) -> None:
    user, generator, codes = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    verifier, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    code = generator.now() if kind == "totp" else codes[0]

    fields = form_fields(page.text) | {"code": code}
    first, second = await posted_twice(client, "/login/second-factor", fields)

    assert first.status_code == 303, first.text
    assert second.status_code == 303, second.text
    assert second.headers["location"].startswith(REDIRECT_URI)
    assert "identity_session" in second.headers.get("set-cookie", "")
    tokens = await redeem(client, app, query(second.headers["location"])["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    claims = (await verify_with_jwks(client, tokens.json()["id_token"])).claims
    assert claims["sub"] == str(user.id) and claims["amr"] == ["pwd", "otp"]
    # One sign-in, one session: the first post's, now under the cookie the browser kept.
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None and claims["sid"] == str(only.sid)
    assert (await client.get("/account/security")).status_code == 200


async def test_a_repeat_must_carry_the_same_browser_and_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, _, codes = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    before = httpx.Cookies(client.cookies)
    done = await post_form(client, page, "/login/second-factor", code=codes[0])
    assert done.status_code == 303, done.text

    # Another code of the user's, or the same code from a browser with another CSRF seed:
    # not the first post again, so the step is over for them.
    client.cookies = before
    other_code = await post_form(client, page, "/login/second-factor", code=codes[1])
    assert other_code.status_code == 400 and "has expired" in alert(other_code)
    client.cookies.clear()
    elsewhere = await client.get(page.url)
    other_browser = await post_form(client, elsewhere, "/login/second-factor", code=codes[0])
    assert other_browser.status_code == 400
    assert "identity_session" not in other_browser.headers.get("set-cookie", "")
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None


async def test_a_code_posted_twice_at_once_answers_both_with_the_same_sign_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    code = generator.now()
    answers = await asyncio.gather(
        *(post_form(client, page, "/login/second-factor", code=code) for _ in range(2))
    )
    assert [answer.status_code for answer in answers] == [303, 303], answers[1].text
    assert all(answer.headers["location"].startswith(REDIRECT_URI) for answer in answers)
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None


async def _posted_again_while_the_first_is_held(
    http: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    fields: dict[str, str],
    held_at: str,
) -> list[httpx.Response]:
    """The code form posted twice at once: the first post held as it reaches the code
    throttle's ``held_at`` ("hit": before its code is checked; "reset": after it proved
    right) until the second has answered on its own or waits for the first one's answer."""
    reached, release, waiting = asyncio.Event(), asyncio.Event(), asyncio.Event()
    counted, add = getattr(runtime.limiter, held_at), runtime.store.add

    async def held(limit: Limit, subject: str) -> Any:
        if limit.name == "mfa-user" and not reached.is_set():
            reached.set()
            await release.wait()
        return await counted(limit, subject)

    async def noting_a_wait(key: str, value: bytes, ttl: int) -> bool:
        added = await add(key, value, ttl)
        if not added and key.startswith("repeated-post:"):
            waiting.set()  # a post of the same key found the first one under way
        return added

    monkeypatch.setattr(runtime.limiter, held_at, held)
    monkeypatch.setattr(runtime.store, "add", noting_a_wait)
    first = asyncio.create_task(http.post("/login/second-factor", data=fields))
    await reached.wait()
    second = asyncio.create_task(http.post("/login/second-factor", data=fields))
    noticed = asyncio.create_task(waiting.wait())
    await asyncio.wait({second, noticed}, return_when=asyncio.FIRST_COMPLETED)
    noticed.cancel()
    release.set()
    return [await first, await second]


async def test_a_code_posted_twice_at_once_on_the_last_attempt_answers_both_with_the_sign_in(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first post spends the last attempt and signs in; the same post again, at the same
    # moment, was checked against the spent budget and told "too many codes" (429).
    _, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    for _ in range(2):  # of IDENTITY_LOGIN_MAX_FAILURES (3): one attempt left
        wrong = await post_form(
            client, page, "/login/second-factor", code=wrong_code(generator.secret)
        )
        assert wrong.status_code == 400, wrong.text
    fields = form_fields(page.text) | {"code": generator.now()}

    answers = await _posted_again_while_the_first_is_held(
        client, runtime, monkeypatch, fields, held_at="reset"
    )

    assert [answer.status_code for answer in answers] == [303, 303], answers[1].text
    assert all(answer.headers["location"].startswith(REDIRECT_URI) for answer in answers)
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None


async def test_a_wrong_code_posted_twice_at_once_is_refused_twice_not_ended(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repeat waits for the first post, which hands nothing over: it withdraws its mark,
    # and the repeat is checked as any post rather than sent to start again.
    _, generator, _ = await enrolled_user(runtime)
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    page = await _password_step(client, app, challenge)
    fields = form_fields(page.text) | {"code": wrong_code(generator.secret)}

    answers = await _posted_again_while_the_first_is_held(
        client, runtime, monkeypatch, fields, held_at="hit"
    )

    assert [answer.status_code for answer in answers] == [400, 400], answers[1].text
    assert all("This code is not valid." in alert(answer) for answer in answers)
    right = await post_form(client, page, "/login/second-factor", code=generator.now())
    assert right.status_code == 303 and right.headers["location"].startswith(REDIRECT_URI)
