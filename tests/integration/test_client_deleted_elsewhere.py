"""A client deleted through one server process while another still holds it in its client
cache (identity.clients.cache, a few seconds): a sign-in or a token request finishing on the
other process meets a client that is gone, and answers as for an unknown client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select

from identity.app import create_app
from identity.runtime import Runtime
from identity.settings import Settings
from identity.tokens.models import AuthorizationCode, Consent
from tests.browser import (
    CLIENT_ID,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    open_login,
    submit_login,
)
from tests.conftest import serving
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import (
    RegisteredClient,
    fresh_code,
    make_client,
    refresh,
    signed_in_tokens,
)

UNKNOWN_APPLICATION = "The application that sent you here is not registered with us."


@pytest.fixture
async def elsewhere(
    database: Settings, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """Another server process on the same database, with a client cache of its own.

    Made before the test runs: creating an app sets up logging, which would drop the
    handler through which ``caplog`` sees this test's log records."""
    async with serving(create_app(database)) as other:
        yield other


async def _delete_elsewhere(elsewhere: httpx.AsyncClient, runtime: Runtime, client_id: str) -> None:
    deleted = await elsewhere.delete(
        f"/api/v1/clients/{client_id}", headers=await staff_headers(runtime)
    )
    assert deleted.status_code == 204, deleted.text


async def _rows(runtime: Runtime, model: type[AuthorizationCode] | type[Consent]) -> int:
    async with runtime.db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


def _errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.levelno >= logging.ERROR]


def assert_unknown_application_page(response: httpx.Response) -> None:
    """The page /authorize shows for an unknown client_id, and no redirect: the client's
    redirect URIs went with it, so none of them can be trusted any more."""
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert UNKNOWN_APPLICATION in response.text
    assert "invalid_client" in response.text


async def test_a_sign_in_ending_after_its_client_was_deleted_elsewhere_shows_the_unknown_client(
    client: httpx.AsyncClient,
    runtime: Runtime,
    elsewhere: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)
    login_page = await open_login(client, authorize_params())  # this process caches the client
    await _delete_elsewhere(elsewhere, runtime, CLIENT_ID)

    answer = await submit_login(client, login_page)

    assert_unknown_application_page(answer)
    assert await _rows(runtime, AuthorizationCode) == 0
    assert _errors_logged(caplog) == []


async def test_consent_after_its_client_was_deleted_elsewhere_shows_the_unknown_client_page(
    client: httpx.AsyncClient,
    runtime: Runtime,
    elsewhere: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime)  # third party: consent is asked
    to_consent = await submit_login(client, await open_login(client, authorize_params()))
    assert to_consent.headers["location"].startswith("/consent?flow="), to_consent.text
    consent_page = await client.get(to_consent.headers["location"])
    await _delete_elsewhere(elsewhere, runtime, CLIENT_ID)

    allowed = await client.post(
        "/consent", data=form_fields(consent_page.text) | {"decision": "allow"}
    )
    shown_again = await client.get(to_consent.headers["location"])

    assert_unknown_application_page(allowed)
    # That page ended the sign-in: its consent link now says to start again.
    assert shown_again.status_code == 400
    assert "This sign-in page has expired" in shown_again.text
    assert (await _rows(runtime, Consent), await _rows(runtime, AuthorizationCode)) == (0, 0)
    assert _errors_logged(caplog) == []


async def _warmed(http: httpx.AsyncClient, runtime: Runtime) -> RegisteredClient:
    """A confidential client that this process has just authenticated, so holds in its cache."""
    portal = await make_client(runtime, grant_types=["authorization_code", "refresh_token"])
    await signed_in_tokens(http, runtime, portal)
    return portal


async def test_a_code_redeemed_after_its_client_was_deleted_elsewhere_is_invalid_client(
    client: httpx.AsyncClient,
    runtime: Runtime,
    elsewhere: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = await _warmed(client, runtime)
    fresh = await fresh_code(runtime, portal)
    await _delete_elsewhere(elsewhere, runtime, portal.client_id)

    redeemed = await fresh.redeem(client)

    assert redeemed.status_code == 401, redeemed.text
    assert redeemed.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in redeemed.headers
    assert _errors_logged(caplog) == []


async def test_a_refresh_after_its_client_was_deleted_elsewhere_is_invalid_client(
    client: httpx.AsyncClient,
    runtime: Runtime,
    elsewhere: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    portal = await make_client(runtime, grant_types=["authorization_code", "refresh_token"])
    tokens = await signed_in_tokens(client, runtime, portal)
    await _delete_elsewhere(elsewhere, runtime, portal.client_id)

    refreshed = await refresh(client, portal, tokens["refresh_token"])

    assert refreshed.status_code == 401, refreshed.text
    assert refreshed.json()["error"] == "invalid_client"
    assert _errors_logged(caplog) == []
