"""The plain ASGI middleware in front of a bare ASGI app."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar, get
from litestar.params import FromPath

from identity.resource import ResourceServer, ResourceServerConfig
from identity.resource.asgi import BearerAuthMiddleware, PathPermission
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    OTHER_ACCOUNT_ID,
    LocalIssuer,
    bearer,
    issuer_fixture,  # noqa: F401 - the issuer fixture
)

INVOICES = PathPermission(r"/accounts/(?P<account_id>[^/]+)/invoices", "invoices")


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with what the middleware told it about the bearer."""
    body = json.dumps(
        {"subject": scope["auth"].subject, "state": scope["state"]["access_token"].subject}
    ).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server(issuer: LocalIssuer) -> AsyncIterator[ResourceServer]:
    async with ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE)) as kit:
        yield kit


@pytest.fixture
async def http(server: ResourceServer) -> AsyncIterator[httpx.AsyncClient]:
    app = BearerAuthMiddleware(echo, server, rules=[INVOICES])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        yield client


async def test_a_valid_token_reaches_the_app_with_its_claims(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    response = await http.get("/profile", headers=bearer(issuer.token(sub="user-7")))
    assert response.status_code == 200
    assert response.json() == {"subject": "user-7", "state": "user-7"}


async def test_a_request_without_a_token_gets_401_with_a_bare_challenge(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/profile")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_the_bearer_scheme_without_a_token_gets_400_invalid_request(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get("/profile", headers={"authorization": "Bearer"})
    assert response.status_code == 400
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert response.json()["error"] == "invalid_request"


async def test_an_expired_token_gets_401_with_the_reason(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    now = int(time.time())
    response = await http.get("/profile", headers=bearer(issuer.token(exp=now - 100)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="The access token has expired."'
    )
    assert response.json() == {
        "error": "invalid_token",
        "error_description": "The access token has expired.",
    }


async def test_a_path_rule_admits_the_permission_in_the_named_account(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    response = await http.get(f"/accounts/{ACCOUNT_ID}/invoices", headers=bearer(issuer.token()))
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("account", "permissions"),
    [(OTHER_ACCOUNT_ID, ["invoices"]), (ACCOUNT_ID, ["tickets"])],
)
async def test_a_path_rule_refuses_403_without_the_permission_in_that_account(
    issuer: LocalIssuer, http: httpx.AsyncClient, account: str, permissions: list[str]
) -> None:
    token = issuer.token(permissions=permissions)
    response = await http.get(f"/accounts/{account}/invoices", headers=bearer(token))
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


async def test_a_path_rule_holds_for_an_app_served_under_a_root_path(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    # Behind a proxy's prefix (uvicorn --root-path) or inside a Mount, ASGI's ``path`` starts
    # with ``root_path``, and the app routes on what follows it: a rule matched against the
    # whole path never applied there, letting any valid token into every account.
    app = BearerAuthMiddleware(echo, server, rules=[INVOICES])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, root_path="/billing")
    token = issuer.token(permissions=["invoices"])
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        other = await client.get(
            f"/billing/accounts/{OTHER_ACCOUNT_ID}/invoices", headers=bearer(token)
        )
        own = await client.get(f"/billing/accounts/{ACCOUNT_ID}/invoices", headers=bearer(token))
    assert other.status_code == 403
    assert own.status_code == 200


@pytest.mark.parametrize(
    "path",
    [f"/accounts//{OTHER_ACCOUNT_ID}/invoices", f"/accounts/{OTHER_ACCOUNT_ID}//invoices"],
)
async def test_a_path_rule_holds_for_paths_a_router_reads_as_the_same_route(
    issuer: LocalIssuer, server: ResourceServer, path: str
) -> None:
    # Litestar's router skips empty segments, so these reach the invoices of OTHER_ACCOUNT_ID;
    # a rule matched against the path as sent never saw that account.
    @get("/accounts/{account_id:str}/invoices")
    async def invoices(account_id: FromPath[str]) -> str:
        return account_id

    app = BearerAuthMiddleware(Litestar([invoices]), server, rules=[INVOICES])
    transport = httpx.ASGITransport(app=app)
    token = issuer.token(permissions=["invoices"])
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        response = await client.get(path, headers=bearer(token))
    assert response.status_code == 403


async def test_an_issuer_that_cannot_be_reached_gets_503_not_401(
    issuer: LocalIssuer, http: httpx.AsyncClient
) -> None:
    issuer.failing = True
    response = await http.get("/profile", headers=bearer(issuer.token()))
    assert response.status_code == 503
    assert "www-authenticate" not in response.headers


async def test_why_the_issuer_cannot_be_used_is_logged_for_the_operator(
    issuer: LocalIssuer, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A misconfigured issuer URL answers every request 503 "Try again later."; without a log
    # line saying what failed, nothing told the operator which setting to fix.
    issuer.advertised_issuer = "https://id.example.test"
    with caplog.at_level(logging.WARNING, logger="identity.resource"):
        response = await http.get("/profile", headers=bearer(issuer.token()))
    assert response.status_code == 503
    assert "names issuer 'https://id.example.test'" in caplog.text


async def test_a_websocket_without_a_valid_token_is_closed_before_the_app_sees_it(
    server: ResourceServer,
) -> None:
    reached: list[dict[str, Any]] = []
    sent: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/live", "headers": [(b"authorization", b"Bearer x")]}
    await BearerAuthMiddleware(app, server)(scope, None, send)  # type: ignore[arg-type]
    assert sent == [{"type": "websocket.close", "code": 1008}]
    assert reached == []


async def test_lifespan_messages_pass_through_untouched(server: ResourceServer) -> None:
    reached: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["type"])

    await BearerAuthMiddleware(app, server)({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert reached == ["lifespan"]


def test_a_path_rule_without_an_account_group_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="account_id"):
        PathPermission(r"/accounts/[^/]+/invoices", "invoices")


async def test_a_cors_preflight_reaches_the_app_untouched_without_a_token(
    server: ResourceServer,
) -> None:
    # Browsers send a preflight without credentials (Fetch standard, CORS-preflight request):
    # demanding a token of it failed every cross-origin call a browser app made with one.
    reached: list[dict[str, Any]] = []

    async def cors(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope)
        headers = [(b"access-control-allow-origin", b"https://app.example.test")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    app = BearerAuthMiddleware(cors, server, rules=[INVOICES])  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    preflight = {
        "origin": "https://app.example.test",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        response = await client.options(f"/accounts/{ACCOUNT_ID}/invoices", headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example.test"
    assert len(reached) == 1
    assert "auth" not in reached[0]
    assert "access_token" not in reached[0].get("state", {})


@pytest.mark.parametrize(
    "headers",
    [{}, {"origin": "https://app.example.test"}, {"access-control-request-method": "GET"}],
    ids=["plain", "origin-only", "method-only"],
)
async def test_an_options_request_that_is_no_preflight_still_needs_a_token(
    http: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await http.options("/profile", headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_only_options_can_be_a_preflight(http: httpx.AsyncClient) -> None:
    headers = {"origin": "https://app.example.test", "access-control-request-method": "GET"}
    assert (await http.get("/profile", headers=headers)).status_code == 401


async def test_a_preflight_the_app_answers_without_cors_gets_401_not_the_apps_answer(
    server: ResourceServer,
) -> None:
    # An app with no CORS layer, whose handler serves whatever the method (a bare ASGI app, a
    # view that never looks at it): passed through, a token-less preflight would read its data.
    async def careless(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"invoices": ["secret"]}'})

    app = BearerAuthMiddleware(careless, server)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app)
    preflight = {"origin": "https://evil.example.test", "access-control-request-method": "GET"}
    async with httpx.AsyncClient(transport=transport, base_url="http://billing.test") as client:
        response = await client.options(f"/accounts/{ACCOUNT_ID}/invoices", headers=preflight)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert b"secret" not in response.content
