"""prompt=select_account (OIDC Core §3.1.2.1): the user chooses who signs in, and which of
their accounts, even when one is signed in already and nothing else would ask."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

import httpx
import pytest

from identity.accounts.models import User
from identity.crypto import digest
from identity.runtime import Runtime
from identity.tokens.models import AuthorizationCode
from tests.browser import (
    EMAIL,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    open_login,
    redirected_to_client,
    sign_in,
    submit_login,
)
from tests.integration.account_helpers import make_account

SELECT = authorize_params(prompt="select_account")
OTHER = "other@example.com"


@pytest.fixture
async def users(client: httpx.AsyncClient, runtime: Runtime) -> tuple[User, User]:
    """ana, signed in to a first-party client, and another user."""
    ana = await add_user(runtime)
    other = await add_user(runtime, OTHER)
    await add_oauth_client(runtime, first_party=True)
    redirected_to_client(await sign_in(client))
    return ana, other


async def _picker(client: httpx.AsyncClient, params: dict[str, str]) -> httpx.Response:
    response = await client.get("/authorize", params=params)
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/login/account?flow="), response.headers
    page = await client.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return page


async def _code_of(runtime: Runtime, response: httpx.Response) -> AuthorizationCode:
    code = redirected_to_client(response)["code"]
    async with runtime.db.transaction() as session:
        stored = await session.get(AuthorizationCode, digest(code))
    assert stored is not None
    return stored


async def test_a_signed_in_user_is_asked_before_a_code_is_issued(
    client: httpx.AsyncClient, runtime: Runtime, users: tuple[User, User]
) -> None:
    picker = await _picker(client, SELECT)
    assert EMAIL in picker.text

    # The page's one button, "Continue", names no account.
    chosen = await client.post("/login/account", data=form_fields(picker.text) | {"account_id": ""})

    assert (await _code_of(runtime, chosen)).user_id == users[0].id


async def test_the_user_may_sign_in_as_someone_else_instead(
    client: httpx.AsyncClient, runtime: Runtime, users: tuple[User, User]
) -> None:
    picker = await _picker(client, SELECT)
    links = [html.unescape(href) for href in re.findall(r'href="([^"]+)"', picker.text)]
    login = await client.get(next(link for link in links if urlsplit(link).path == "/login"))
    assert login.status_code == 200

    response = await submit_login(client, login, email=OTHER)

    assert (await _code_of(runtime, response)).user_id == users[1].id


async def test_without_a_session_signing_in_is_the_choice(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    page = await open_login(client, SELECT)
    assert (await _code_of(runtime, await submit_login(client, page))).user_id == ana.id


async def test_a_preselected_account_is_shown_to_be_confirmed(
    client: httpx.AsyncClient, runtime: Runtime, users: tuple[User, User]
) -> None:
    acme = await make_account(runtime, users[0], "Acme")
    picker = await _picker(client, SELECT | {"account_id": str(acme.id)})
    assert "Acme" in picker.text

    chosen = await client.post(
        "/login/account", data=form_fields(picker.text) | {"account_id": str(acme.id)}
    )

    assert (await _code_of(runtime, chosen)).account_id == acme.id


@pytest.mark.usefixtures("users")
async def test_the_picker_for_select_account_speaks_spanish(client: httpx.AsyncClient) -> None:
    picker = await _picker(client, SELECT | {"ui_locales": "es"})
    assert 'lang="es"' in picker.text
    assert "Continuar" in picker.text


@pytest.mark.usefixtures("users")
async def test_prompt_none_with_select_account_is_an_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    """OIDC Core §3.1.2.1: none with any other value is an error."""
    params = authorize_params(prompt="none select_account")
    result = redirected_to_client(await client.get("/authorize", params=params))
    assert result["error"] == "invalid_request"


async def test_discovery_advertises_select_account(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert set(document["prompt_values_supported"]) == {
        "none",
        "login",
        "consent",
        "select_account",
    }
