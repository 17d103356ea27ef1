"""The authorization code grant: single use, expiry, same client and redirect URI, tokens."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.audit.service import Actor
from identity.clients.service import ClientChange, update_client
from identity.clock import utcnow
from identity.crypto import digest
from identity.runtime import Runtime
from identity.tokens.models import AuthorizationCode, RefreshToken
from tests.integration.db_helpers import counting_statements
from tests.integration.oauth_helpers import (
    REDIRECT_URI,
    RegisteredClient,
    assert_access_token_dead,
    fresh_code,
    is_active,
    make_client,
    make_user,
    pkce_pair,
    redeem,
    redeemed_code,
    refresh,
    verify_with_jwks,
)


async def test_code_exchange_issues_access_refresh_and_id_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    user = await make_user(runtime, email="ada@example.com")
    fresh = await fresh_code(runtime, app, user=user)

    response = await fresh.redeem(client)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 600
    assert body["scope"] == "openid profile email"
    assert body["refresh_token"]
    id_token = await verify_with_jwks(client, body["id_token"])
    assert id_token.claims["sub"] == str(user.id)
    assert id_token.claims["aud"] == app.client_id
    assert id_token.claims["nonce"] == "n-0S6_WzA2Mj"
    assert id_token.claims["email"] == "ada@example.com"
    assert id_token.claims["amr"] == ["pwd"]
    assert {"iss", "exp", "iat", "auth_time", "at_hash"} <= set(id_token.claims)


async def test_code_reuse_revokes_issued_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    fresh, first = await redeemed_code(client, runtime, app)

    second = await fresh.redeem(client)

    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    assert (await refresh(client, app, first["refresh_token"])).json()["error"] == "invalid_grant"
    await assert_access_token_dead(client, app, first["access_token"])


async def test_a_replay_past_its_window_revokes_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A replay revokes for a day after the code expires or while its access token lives
    (README); past both it is refused as an unknown code is, whether or not housekeeping
    has deleted the row yet."""
    app = await make_client(runtime)
    fresh, first = await redeemed_code(client, runtime, app)
    now = utcnow()
    async with runtime.db.transaction() as session:
        await session.execute(
            update(AuthorizationCode)
            .where(AuthorizationCode.code_hash == digest(fresh.code))
            .values(
                expires_at=now - timedelta(days=1, seconds=1),
                access_expires_at=now - timedelta(seconds=1),
            )
        )

    late = await fresh.redeem(client)

    assert late.json()["error"] == "invalid_grant"
    assert (await refresh(client, app, first["refresh_token"])).status_code == 200


@pytest.mark.parametrize("replay", ["another-client", "no-verifier", "wrong-verifier"])
async def test_a_replay_that_could_not_have_redeemed_the_code_revokes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, replay: str
) -> None:
    """As node-oidc-provider checks the client, redirect URI and PKCE verifier before it
    revokes for a replay, and as a refresh token another client presents is left alone: a
    used code leaks easily (browser history, logs) and anyone may call as a public client,
    but only its app holds the verifier. Without it, the owner's tokens are nobody's to
    revoke."""
    app = await make_client(runtime, public=True)
    fresh, first = await redeemed_code(client, runtime, app)
    presenter = await make_client(runtime, public=True) if replay == "another-client" else app
    verifier = {"another-client": fresh.verifier, "no-verifier": None}.get(replay, pkce_pair()[0])

    replayed = await redeem(client, presenter, fresh.code, verifier)

    assert replayed.json()["error"] == "invalid_grant"
    assert await is_active(client, await make_client(runtime), first["access_token"])
    data = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    kept = await client.post("/token", data=data | {"client_id": app.client_id})
    assert kept.status_code == 200, kept.text


async def test_code_reuse_revokes_access_tokens_issued_by_later_refreshes(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 9700 §4.5: a replayed code revokes every token issued from it, not just the first."""
    app = await make_client(runtime)
    fresh, first = await redeemed_code(client, runtime, app)
    refreshed = (await refresh(client, app, first["refresh_token"])).json()

    assert (await fresh.redeem(client)).status_code == 400

    assert not await is_active(client, app, refreshed["access_token"])


async def test_ten_parallel_redemptions_give_exactly_one_success(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime)

    responses = await asyncio.gather(*(fresh.redeem(client) for _ in range(10)))

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 9
    assert {r.json()["error"] for r in responses if r.status_code == 400} == {"invalid_grant"}
    # The losers are replays: what the winner got is revoked too.
    async with runtime.db.transaction() as session:
        rows = (await session.scalars(select(RefreshToken))).all()
    assert len(rows) == 1
    assert rows[0].revoked_at is not None


async def test_expired_code_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    fresh = await fresh_code(runtime, ttl=-1)

    response = await fresh.redeem(client)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_code_default_lifetime_is_sixty_seconds(runtime: Runtime) -> None:
    assert runtime.settings.authorization_code_ttl == 60


async def test_code_issued_to_another_client_is_refused_and_stays_usable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime)
    thief = await make_client(runtime)

    stolen = await redeem(client, thief, fresh.code, fresh.verifier)

    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_grant"
    assert (await fresh.redeem(client)).status_code == 200


async def test_redirect_uri_must_match_exactly(client: httpx.AsyncClient, runtime: Runtime) -> None:
    fresh = await fresh_code(runtime)

    response = await fresh.redeem(client, redirect_uri="https://app.example.com/callback/")

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def set_redirect_uris(runtime: Runtime, app: RegisteredClient, uris: list[str]) -> None:
    """Staff's change of the client's redirect URIs, as the management API makes it."""
    async with runtime.db.transaction() as session:
        change = ClientChange(redirect_uris=uris)
        await update_client(session, Actor(), app.client_id, change, utcnow())
    runtime.clients.forget(app.client_id)


async def test_a_code_refused_for_its_unregistered_redirect_uri_is_spent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Once staff take the address from the client, the code sent there is refused; putting
    the address back within the code's minute must not make it good again."""
    app = await make_client(runtime)
    fresh = await fresh_code(runtime, app)
    await set_redirect_uris(runtime, app, ["https://app.example.com/other"])

    refused = await fresh.redeem(client)
    await set_redirect_uris(runtime, app, [REDIRECT_URI])
    again = await fresh.redeem(client)

    assert refused.json()["error"] == "invalid_grant"
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_code_for_a_disabled_user_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, user=await make_user(runtime, disabled=True))

    response = await fresh.redeem(client)

    assert response.json()["error"] == "invalid_grant"


async def test_a_code_refused_for_its_disabled_user_is_spent(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Enabling the user again within the code's minute must not make a refused code good."""
    user = await make_user(runtime)
    fresh = await fresh_code(runtime, user=user)
    await set_disabled(runtime, user.id, True)

    refused = await fresh.redeem(client)
    await set_disabled(runtime, user.id, False)
    again = await fresh.redeem(client)

    assert refused.json()["error"] == "invalid_grant"
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def set_disabled(runtime: Runtime, user_id: uuid.UUID, disabled: bool) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == user_id).values(disabled=disabled))


async def test_client_without_refresh_grant_gets_no_refresh_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, grant_types=["authorization_code"])
    fresh = await fresh_code(runtime, app, scope="openid")

    body = (await fresh.redeem(client)).json()

    assert "refresh_token" not in body
    assert "id_token" in body


async def test_scope_without_openid_gets_no_id_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, scope="profile")

    body = (await fresh.redeem(client)).json()

    assert "id_token" not in body
    claims = (await verify_with_jwks(client, body["access_token"])).claims
    assert claims["scope"] == "profile"


async def test_code_exchange_reads_session_and_user_in_one_statement(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The statements of a code redemption, each a round trip and SQLAlchemy's work on
    every sign-in: the client held, the code spent, the sign-in and its user read together,
    the refresh token stored (and on SQLite, first, its write lock)."""
    app = await make_client(runtime)
    user = await make_user(runtime)
    # The first exchange fills this process's caches (client, signing keys, role templates).
    await redeemed_code(client, runtime, app, user=user)
    fresh = await fresh_code(runtime, app, user=user)

    with counting_statements(runtime) as statements:
        response = await fresh.redeem(client)

    assert response.status_code == 200, response.text
    sqlite_write_lock = 1 if runtime.db.engine.dialect.name == "sqlite" else 0
    assert len(statements) == 4 + sqlite_write_lock, statements
