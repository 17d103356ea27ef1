"""PKCE at the token endpoint: S256 only, verifier required and matched, none without challenge."""

from __future__ import annotations

import httpx

from identity.audit.service import Actor
from identity.clients.service import ClientChange, update_client
from identity.clock import utcnow
from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    REDIRECT_URI,
    RegisteredClient,
    fresh_code,
    issue_code,
    make_client,
    make_user,
    pkce_pair,
    redeem,
)


async def test_wrong_verifier_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))
    other_verifier, _ = pkce_pair()

    response = await redeem(client, fresh.client, fresh.code, other_verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_missing_verifier_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))

    response = await redeem(client, fresh.client, fresh.code, None)

    assert response.json()["error"] == "invalid_grant"


async def test_public_client_with_correct_verifier_gets_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))

    response = await fresh.redeem(client)

    assert response.status_code == 200
    assert response.json()["refresh_token"]


async def test_verifier_for_a_code_without_challenge_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, require_pkce=False)
    user = await make_user(runtime)
    verifier, _ = pkce_pair()
    code = await issue_code(runtime, app, user, challenge=None)

    response = await redeem(client, app, code, verifier)

    assert response.json()["error"] == "invalid_grant"


async def test_confidential_client_may_skip_pkce_only_when_registered_so(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    relaxed = await make_client(runtime, require_pkce=False)
    strict = await make_client(runtime)
    user = await make_user(runtime)

    allowed = await redeem(client, relaxed, await issue_code(runtime, relaxed, user), None)
    refused = await redeem(client, strict, await issue_code(runtime, strict, user), None)

    assert allowed.status_code == 200
    assert refused.json()["error"] == "invalid_grant"


async def test_malformed_verifier_is_an_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))

    response = await redeem(client, fresh.client, fresh.code, "short+and/not*unreserved")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def set_require_pkce(runtime: Runtime, app: RegisteredClient, required: bool) -> None:
    """Staff's change of the client's PKCE requirement, as the management API makes it."""
    async with runtime.db.transaction() as session:
        await update_client(
            session, Actor(), app.client_id, ClientChange(require_pkce=required), utcnow()
        )
    runtime.clients.forget(app.client_id)


async def test_a_code_without_challenge_refused_once_pkce_is_required_is_spent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """No verifier can redeem such a code while PKCE is required, so the refusal spends it:
    relaxing the client again within the code's minute must not make it good again."""
    app = await make_client(runtime, require_pkce=False)
    code = await issue_code(runtime, app, await make_user(runtime), challenge=None)
    await set_require_pkce(runtime, app, True)

    refused = await redeem(client, app, code, None)
    await set_require_pkce(runtime, app, False)
    again = await redeem(client, app, code, None)

    assert refused.json()["error"] == "invalid_grant"
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_a_code_without_challenge_sent_to_another_redirect_uri_stays_usable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Whoever presents it at another address is not the code's app: it is left unspent."""
    app = await make_client(runtime, require_pkce=False)
    code = await issue_code(runtime, app, await make_user(runtime), challenge=None)
    await set_require_pkce(runtime, app, True)

    refused = await redeem(client, app, code, None, redirect_uri=f"{REDIRECT_URI}/other")
    await set_require_pkce(runtime, app, False)
    redeemed = await redeem(client, app, code, None)

    assert refused.json()["error"] == "invalid_grant"
    assert redeemed.status_code == 200, redeemed.text
