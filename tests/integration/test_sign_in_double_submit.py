"""A sign-in step posted twice at once (a double click, a resent request) hands over once:
one session, one authorization code; the other post is told to start again."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from tests.browser import form_fields
from tests.integration.oauth_helpers import REDIRECT_URI, make_client, pkce_pair
from tests.integration.page_helpers import alert
from tests.integration.recovery_helpers import PASSWORD, enrolled_user, new_user

ANA = "ana@example.com"


async def _login_page(http: httpx.AsyncClient, runtime: Runtime) -> httpx.Response:
    app = await make_client(runtime, first_party=True)
    _, challenge = pkce_pair()
    authorize = await http.get(
        "/authorize",
        params={
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid email",
            "state": "s1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    assert authorize.status_code == 303, authorize.text
    return await http.get(authorize.headers["location"])


async def _sessions(runtime: Runtime) -> list[BrowserSession]:
    async with runtime.db.transaction() as session:
        return list(await session.scalars(select(BrowserSession)))


def _one_handed_over(answers: list[httpx.Response]) -> None:
    to_client = [a for a in answers if a.headers.get("location", "").startswith(REDIRECT_URI)]
    assert len(to_client) == 1, [(a.status_code, a.headers.get("location")) for a in answers]
    (other,) = [a for a in answers if a not in to_client]
    assert other.status_code == 400 and "has expired" in alert(other), other.text
    assert "identity_session" not in other.headers.get("set-cookie", "")


async def test_a_password_step_posted_twice_at_once_issues_one_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    answers = await asyncio.gather(*(client.post("/login", data=fields) for _ in range(2)))

    _one_handed_over(list(answers))
    assert len(await _sessions(runtime)) == 1


async def test_a_code_step_posted_twice_at_once_issues_one_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, codes = await enrolled_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    step = await client.post("/login", data=fields)
    assert step.status_code == 303 and step.headers["location"].startswith("/login/second-factor")
    page = form_fields((await client.get(step.headers["location"])).text)

    # Two good codes (a tab with the app's code, another with a recovery code): each alone
    # would sign in, together they must not sign in twice.
    answers = await asyncio.gather(
        client.post("/login/second-factor", data=page | {"code": generator.now()}),
        client.post("/login/second-factor", data=page | {"code": codes[0]}),
    )

    _one_handed_over(list(answers))
    assert len(await _sessions(runtime)) == 1
