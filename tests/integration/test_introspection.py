"""RFC 7662 introspection: authenticated confidential clients; inactive tokens say only that."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.account_helpers import staff_headers
from tests.integration.oauth_helpers import (
    BILLING,
    RegisteredClient,
    make_client,
    refresh,
    signed_in_tokens,
)

PLANS = "https://plans.example.com"


async def introspect(
    http: httpx.AsyncClient, caller: RegisteredClient, token: str, **extra: str
) -> httpx.Response:
    return await http.post("/introspect", data={"token": token} | extra, headers=caller.basic)


async def test_live_access_token_is_active_with_its_claims(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    resource_server = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="api"
    )
    tokens = await signed_in_tokens(client, runtime, app)

    response = await introspect(client, resource_server, tokens["access_token"])

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["active"] is True
    assert body["client_id"] == app.client_id
    assert body["scope"] == "openid profile email"
    assert body["token_type"] == "Bearer"
    assert {"sub", "exp", "iat", "iss", "aud", "jti"} <= set(body)


async def test_refresh_token_is_active_for_its_own_client_only(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    other = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)

    own = (await introspect(client, app, tokens["refresh_token"])).json()
    foreign = (await introspect(client, other, tokens["refresh_token"])).json()

    assert own["active"] is True
    assert own["token_type"] == "refresh_token"
    assert own["client_id"] == app.client_id
    assert foreign == {"active": False}


async def test_unknown_expired_or_garbage_tokens_are_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    for token in ("unknown", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 5000):
        response = await introspect(client, app, token, token_type_hint="access_token")
        assert response.json() == {"active": False}


async def test_rotated_refresh_token_is_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)
    await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=app.basic,
    )

    assert (await introspect(client, app, tokens["refresh_token"])).json() == {"active": False}


async def test_unauthenticated_and_public_callers_are_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    public = await make_client(runtime, public=True)

    anonymous = await client.post("/introspect", data={"token": "x"})
    as_public = await client.post("/introspect", data={"token": "x", "client_id": public.client_id})

    assert anonymous.status_code == as_public.status_code == 401
    assert anonymous.json()["error"] == as_public.json()["error"] == "invalid_client"


async def test_the_caller_is_authenticated_before_its_request_is_judged(
    client: httpx.AsyncClient,
) -> None:
    """RFC 7662 §2.1 / RFC 7009 §2.1: an unknown caller learns nothing about its request."""
    for path in ("/introspect", "/revoke"):
        response = await client.post(path, data={"client_id": "x", "client_secret": "y"})
        assert response.status_code == 401, path
        assert response.json()["error"] == "invalid_client"


async def _introspected_and_refreshed(
    http: httpx.AsyncClient, app: RegisteredClient, refresh_token: str
) -> tuple[dict[str, object], httpx.Response]:
    """What introspection says of ``refresh_token`` (asked first: a refresh spends it), and
    what a refresh with it is answered."""
    introspected = (await introspect(http, app, refresh_token)).json()
    return introspected, await refresh(http, app, refresh_token)


async def test_a_refresh_token_whose_client_lost_the_refresh_grant_is_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7662 §2.2: active only while the token endpoint would take it. Without the grant
    the client is refused every refresh; the token is kept, and good again with the grant."""
    staff = await staff_headers(runtime)
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)
    path = f"/api/v1/clients/{app.client_id}"

    taken = await client.patch(path, json={"grant_types": ["authorization_code"]}, headers=staff)
    assert taken.status_code == 200, taken.text
    introspected, refreshed = await _introspected_and_refreshed(
        client, app, tokens["refresh_token"]
    )
    assert refreshed.json()["error"] == "unauthorized_client"
    assert introspected == {"active": False}

    grants = ["authorization_code", "refresh_token"]
    given = await client.patch(path, json={"grant_types": grants}, headers=staff)
    assert given.status_code == 200, given.text
    introspected, refreshed = await _introspected_and_refreshed(
        client, app, tokens["refresh_token"]
    )
    assert refreshed.status_code == 200, refreshed.text
    assert introspected["active"] is True


async def test_a_refresh_token_whose_every_resource_was_taken_from_its_client_is_inactive(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A grant for resources the client is no longer registered for brings no token at all
    (``invalid_target``: the user signs in again), so it is not active; one with a resource
    still registered goes on for that one."""
    staff = await staff_headers(runtime)
    app = await make_client(runtime, resources=[BILLING, PLANS])
    only_billing = await signed_in_tokens(client, runtime, app, resources=[BILLING])
    both = await signed_in_tokens(client, runtime, app, resources=[BILLING, PLANS])

    path = f"/api/v1/clients/{app.client_id}"
    taken = await client.patch(path, json={"resources": [PLANS]}, headers=staff)
    assert taken.status_code == 200, taken.text

    introspected, refreshed = await _introspected_and_refreshed(
        client, app, only_billing["refresh_token"]
    )
    assert refreshed.json()["error"] == "invalid_target"
    assert introspected == {"active": False}
    introspected, refreshed = await _introspected_and_refreshed(client, app, both["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert introspected["active"] is True
