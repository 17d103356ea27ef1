"""The kit reading tokens our own token endpoint issued: a user's, and a client's own
(client_credentials), which acts for no user and holds no account rights."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from identity.resource import AccessToken, ResourceServer, ResourceServerConfig, permits
from identity.runtime import Runtime
from tests.integration.account_helpers import signed_in_member
from tests.integration.oauth_helpers import BILLING, make_client, service_token

ISSUER = "http://testserver.local"


@asynccontextmanager
async def kit(http: httpx.AsyncClient) -> AsyncIterator[ResourceServer]:
    """Billing's kit, reaching our app through the test client."""
    async with ResourceServer(ResourceServerConfig(ISSUER, audience=BILLING), http=http) as server:
        yield server


async def _client_token(http: httpx.AsyncClient, runtime: Runtime) -> str:
    billing_caller = await make_client(
        runtime,
        grant_types=["client_credentials"],
        redirect_uris=[],
        scope="api",
        resources=[BILLING],
    )
    response = await http.post(
        "/token",
        data={"grant_type": "client_credentials", "resource": BILLING},
        headers=billing_caller.basic,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_a_client_credentials_token_acts_for_no_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    raw = await _client_token(client, runtime)
    async with kit(client) as server:
        token = await server.validate(raw)
    assert token.user_id is None
    assert token.subject == token.client_id


async def test_a_users_token_names_its_user(client: httpx.AsyncClient, runtime: Runtime) -> None:
    member, account, app, tokens = await signed_in_member(client, runtime, ["invoices"])
    async with ResourceServer(
        ResourceServerConfig(ISSUER, audience=app.client_id), http=client
    ) as server:
        token = await server.validate(tokens["access_token"])
    assert token.user_id == str(member.id)
    assert permits(token, "invoices", account.id)


async def test_a_client_token_is_granted_no_account_permission(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, account, _, _ = await signed_in_member(client, runtime, ["invoices"])
    raw = await _client_token(client, runtime)
    async with kit(client) as server:
        token = await server.validate(raw)
    assert token.account_id is None and not token.permissions
    assert not permits(token, "invoices", account.id)
    assert not permits(token, "invoices", uuid.uuid4())


async def test_introspection_tells_a_client_token_from_a_users_too(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    member, account, _, tokens = await signed_in_member(client, runtime, ["invoices"])
    caller = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    raw = await service_token(client, caller)
    async with ResourceServer(ResourceServerConfig(ISSUER), http=client) as server:
        introspector = server.introspector(caller.client_id, caller.secret or "")
        own: AccessToken = await introspector.introspect(raw)
        users = await introspector.introspect(tokens["access_token"])
        assert not await introspector.permits(raw, "invoices", account.id)
    assert own.user_id is None
    assert users.user_id == str(member.id)
