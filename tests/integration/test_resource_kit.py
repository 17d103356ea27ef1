"""The kit's Litestar plugin, guard and dependency in a Litestar app, against a local issuer."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from uuid import UUID

import httpx
import pytest
from litestar import Litestar, get
from litestar.params import FromPath

from identity.resource import ResourceServer, ResourceServerConfig
from identity.resource.litestar import AccessTokenDep, ResourceServerPlugin, require_permission
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    OTHER_ACCOUNT_ID,
    LocalIssuer,
    asgi_client,
    bearer,
    issuer_fixture,  # noqa: F401 - the issuer fixture
    rsa_key,
)


@get("/accounts/{account_id:uuid}/tickets", guards=[require_permission("tickets")])
async def tickets(account_id: FromPath[UUID], access_token: AccessTokenDep) -> dict[str, str]:
    return {"account": str(account_id), "subject": access_token.subject}


@get("/me")
async def me(access_token: AccessTokenDep) -> dict[str, str]:
    return {"subject": access_token.subject}


@get("/status")
async def status() -> dict[str, str]:
    return {"status": "ok"}


@pytest.fixture
async def http(issuer: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    server = ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE))
    app = Litestar([tickets, me, status], plugins=[ResourceServerPlugin(server)])
    async with asgi_client(app, "http://tickets.test") as client:
        yield client


async def test_the_guard_admits_the_permission_in_the_named_account(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    token = issuer.token(sub="user-3")
    response = await http.get(f"/accounts/{ACCOUNT_ID}/tickets", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"account": ACCOUNT_ID, "subject": "user-3"}


async def test_the_guard_refuses_another_account_with_403(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    response = await http.get(
        f"/accounts/{OTHER_ACCOUNT_ID}/tickets", headers=bearer(issuer.token())
    )
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", error_description='
        '"The access token does not grant the tickets permission in this account."'
    )


async def test_the_guard_refuses_a_member_without_the_permission_with_403(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    token = issuer.token(permissions=["invoices"])
    response = await http.get(f"/accounts/{ACCOUNT_ID}/tickets", headers=bearer(token))
    assert response.status_code == 403


async def test_the_guard_answers_401_without_a_token(http: httpx.AsyncClient) -> None:
    response = await http.get(f"/accounts/{ACCOUNT_ID}/tickets")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_guard_answers_401_for_a_wrongly_signed_token(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    forged = issuer.token(rsa_key(1), header={"kid": rsa_key(0).kid})
    response = await http.get(f"/accounts/{ACCOUNT_ID}/tickets", headers=bearer(forged))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_the_dependency_alone_demands_a_valid_token(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    expired = issuer.token(exp=int(time.time()) - 100)
    assert (await http.get("/me", headers=bearer(expired))).status_code == 401
    response = await http.get("/me", headers=bearer(issuer.token(sub="user-4")))
    assert response.json() == {"subject": "user-4"}


async def test_routes_that_ask_for_nothing_need_no_token(http: httpx.AsyncClient) -> None:
    assert (await http.get("/status")).status_code == 200


async def test_an_unreachable_issuer_gets_503(issuer: LocalIssuer, http: httpx.AsyncClient) -> None:
    issuer.failing = True
    response = await http.get("/me", headers=bearer(issuer.token()))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
