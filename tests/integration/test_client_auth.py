"""Client authentication at the token endpoint: basic, post, none; one method at a time."""

from __future__ import annotations

import base64
import re

import httpx
from sqlalchemy import event, update

from identity.clients.cache import ClientCache
from identity.clients.models import OAuthClient
from identity.runtime import Runtime
from tests.integration.oauth_helpers import RegisteredClient, make_client

CC = {"grant_type": "client_credentials"}


async def confidential(runtime: Runtime) -> RegisteredClient:
    return await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="api"
    )


async def test_client_secret_basic_authenticates(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    assert (await client.post("/token", data=CC, headers=app.basic)).status_code == 200


async def test_client_secret_post_authenticates(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    data = CC | {"client_id": app.client_id, "client_secret": app.secret or ""}
    assert (await client.post("/token", data=data)).status_code == 200


async def test_wrong_secret_is_invalid_client_with_a_basic_challenge(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    wrong = RegisteredClient(app.client_id, "wrong")

    response = await client.post("/token", data=CC, headers=wrong.basic)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_every_basic_challenge_names_its_realm(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 7617 §2: a Basic challenge must carry a realm; HTTP clients that parse challenges
    (RFC 6749 §5.2 asks for one matching the scheme the client used) reject one without."""
    app = await confidential(runtime)
    wrong = RegisteredClient(app.client_id, "wrong")
    public = await make_client(runtime, public=True)

    refusals = [
        await client.post("/token", data=CC, headers=wrong.basic),
        await client.post("/revoke", data={"token": "x"}, headers=wrong.basic),
        await client.post("/introspect", data={"token": "x", "client_id": public.client_id}),
    ]

    for response in refusals:
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        assert re.fullmatch(r'Basic realm="[^"]+"(, error="invalid_client".*)?', challenge)


async def test_unknown_client_and_wrong_secret_look_the_same(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    wrong_secret = await client.post(
        "/token", data=CC, headers=RegisteredClient(app.client_id, "x").basic
    )
    unknown = await client.post("/token", data=CC, headers=RegisteredClient("nobody", "x").basic)

    assert wrong_secret.status_code == unknown.status_code == 401
    assert wrong_secret.json() == unknown.json()


async def test_two_methods_at_once_is_an_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    data = CC | {"client_id": app.client_id, "client_secret": app.secret or ""}

    response = await client.post("/token", data=data, headers=app.basic)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_basic_credentials_are_form_decoded(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await confidential(runtime)
    # RFC 6749 §2.3.1: the id and secret are form-encoded, so any character may come
    # escaped. All of them are: escaping only "-" tested nothing when a random secret had
    # none, about one time in two.
    encoded_secret = "".join(f"%{ord(c):02X}" for c in app.secret or "")
    pair = f"{app.client_id}:{encoded_secret}".encode()
    headers = {"Authorization": "Basic " + base64.b64encode(pair).decode()}

    assert (await client.post("/token", data=CC, headers=headers)).status_code == 200


async def test_public_client_cannot_present_a_secret_or_be_confidential_without_one(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    public = await make_client(runtime, public=True)
    secretless = await confidential(runtime)

    with_secret = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers=RegisteredClient(public.client_id, "guess").basic,
    )
    without_secret = await client.post("/token", data=CC | {"client_id": secretless.client_id})

    assert with_secret.status_code == without_secret.status_code == 401


async def test_garbled_basic_header_is_invalid_client(client: httpx.AsyncClient) -> None:
    for header in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest x"):
        response = await client.post("/token", data=CC, headers={"Authorization": header})
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_client"


async def test_disabled_client_is_refused_once_the_cache_interval_passes(
    runtime: Runtime,
) -> None:
    app = await confidential(runtime)
    now = [0.0]
    cache = ClientCache(ttl=5, clock=lambda: now[0])
    async with runtime.db.transaction() as session:
        assert await cache.get(session, app.client_id) is not None
        await session.execute(
            update(OAuthClient).where(OAuthClient.client_id == app.client_id).values(disabled=True)
        )

    async with runtime.db.transaction() as session:
        assert await cache.get(session, app.client_id) is not None
        now[0] = 5.1
        assert await cache.get(session, app.client_id) is None
        assert await cache.get(session, "never-registered") is None


async def _disable(runtime: Runtime, client_id: str) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            update(OAuthClient).where(OAuthClient.client_id == client_id).values(disabled=True)
        )


async def test_a_forgotten_client_is_read_again_at_once(runtime: Runtime) -> None:
    app = await confidential(runtime)
    cache = ClientCache(ttl=5, clock=lambda: 0.0)
    async with runtime.db.transaction() as session:
        assert await cache.get(session, app.client_id) is not None
    await _disable(runtime, app.client_id)

    cache.forget(app.client_id)

    async with runtime.db.transaction() as session:
        assert await cache.get(session, app.client_id) is None


async def test_a_read_under_way_when_the_client_is_forgotten_is_not_kept(
    runtime: Runtime,
) -> None:
    # The read began before the change committed, so it may hold the row as it was.
    app = await confidential(runtime)
    cache = ClientCache(ttl=5, clock=lambda: 0.0)
    async with runtime.db.transaction() as session:
        event.listen(
            session.sync_session,
            "do_orm_execute",
            lambda _: cache.forget(app.client_id),
            once=True,
        )
        assert await cache.get(session, app.client_id) is not None
    await _disable(runtime, app.client_id)

    async with runtime.db.transaction() as session:
        assert await cache.get(session, app.client_id) is None
