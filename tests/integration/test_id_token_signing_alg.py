"""ID tokens are signed by the current key, whatever its algorithm: there is no per-client
ID token algorithm to register, so no client can ask for one no key signs with."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from identity.clock import utcnow
from identity.commands import rotate_signing_key
from identity.keys.models import SigningKey
from identity.runtime import Runtime
from identity.settings import Settings
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import (
    REDIRECT_URI,
    make_client,
    signed_in_tokens,
    verify_with_jwks,
)


async def test_registering_an_id_token_algorithm_is_refused_not_half_honoured(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    response = await client.post(
        "/api/v1/clients",
        json={
            "name": "Wants ES256",
            "redirect_uris": [REDIRECT_URI],
            "id_token_signed_response_alg": "ES256",
        },
        headers=await staff_headers(runtime),
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "id_token_signed_response_alg" in response.text


async def test_id_token_after_a_switch_to_es256_verifies_with_an_advertised_algorithm(
    client: httpx.AsyncClient, runtime: Runtime, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime, "settings", dataclasses.replace(runtime.settings, keys_refresh=0))
    new_kid = await rotate_signing_key(settings, "ES256", show=lambda _: None)
    async with runtime.db.transaction() as session:
        await session.execute(update(SigningKey).values(created_at=utcnow() - timedelta(days=2)))
        await session.execute(
            update(SigningKey)
            .where(SigningKey.kid == new_kid)
            .values(created_at=utcnow() - timedelta(days=1))
        )
    await runtime.keyset(refresh=True)
    app = await make_client(runtime)

    id_token = (await signed_in_tokens(client, runtime, app))["id_token"]

    header = (await verify_with_jwks(client, id_token)).header
    assert header["kid"] == new_kid and header["alg"] == "ES256"
    discovery = (await client.get("/.well-known/openid-configuration")).json()
    assert header["alg"] in discovery["id_token_signing_alg_values_supported"]
