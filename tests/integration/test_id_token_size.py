"""An ID token must stay short enough to come back as an ``id_token_hint`` (at /logout and
/authorize, at most MAX_HINT_LENGTH). The nonce is the part the client chooses; it goes into
the token UTF-8 encoded, so its limit counts bytes, not characters."""

from __future__ import annotations

import httpx
import pytest

from identity.oauth.authorize import MAX_VALUE_LENGTH
from identity.runtime import Runtime
from tests.browser import add_oauth_client, add_user, authorize_params, redirected_to_client

FOUR_BYTES = "\U0001f600"


@pytest.fixture
async def first_party(runtime: Runtime) -> None:
    await add_user(runtime)
    await add_oauth_client(runtime, first_party=True)


@pytest.mark.usefixtures("first_party")
async def test_a_nonce_longer_than_the_limit_in_bytes_is_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    nonce = FOUR_BYTES * (MAX_VALUE_LENGTH // 4 + 1)

    response = await client.get("/authorize", params=authorize_params(nonce=nonce))

    assert response.status_code in (302, 303), response.text
    result = redirected_to_client(response)
    assert result["error"] == "invalid_request"
    assert "nonce" in result["error_description"]


@pytest.mark.usefixtures("first_party")
async def test_a_nonce_at_the_limit_in_bytes_is_accepted(client: httpx.AsyncClient) -> None:
    nonce = FOUR_BYTES * (MAX_VALUE_LENGTH // 4)

    response = await client.get("/authorize", params=authorize_params(nonce=nonce))

    assert response.status_code == 303
    assert response.headers["location"].startswith("/login")
