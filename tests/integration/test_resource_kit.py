"""The kit's Litestar plugin, guard and dependency in a Litestar app, against a local issuer."""

from __future__ import annotations

import time
import warnings
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar import Litestar, WebSocket, get, websocket
from litestar.config.cors import CORSConfig
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


@websocket("/accounts/{account_id:uuid}/live", guards=[require_permission("tickets")])
async def live(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    await socket.close()


@websocket("/me/live")
async def my_live(socket: WebSocket[Any, Any, Any], access_token: AccessTokenDep) -> None:
    await socket.accept()
    await socket.send_text(access_token.subject)
    await socket.close()


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


async def test_the_guard_answers_400_invalid_request_for_the_bearer_scheme_alone(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(
        f"/accounts/{ACCOUNT_ID}/tickets", headers={"authorization": "Bearer"}
    )
    assert response.status_code == 400
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert response.json()["error"] == "invalid_request"


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


@pytest.mark.parametrize("path", [f"/accounts/{ACCOUNT_ID}/tickets", "/me"])
async def test_a_cors_preflight_is_answered_without_a_token(path: str) -> None:
    # Browsers send a preflight without credentials: a guard or the access_token dependency
    # demanding a token of it would fail every cross-origin call a browser app makes.
    server = ResourceServer(ResourceServerConfig("http://127.0.0.1:9", audience=AUDIENCE))
    cors = CORSConfig(allow_origins=["https://app.example.test"], allow_headers=["authorization"])
    app = Litestar([tickets, me], cors_config=cors, plugins=[ResourceServerPlugin(server)])
    preflight = {
        "origin": "https://app.example.test",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
    }
    async with asgi_client(app, "http://tickets.test") as client:
        response = await client.options(path, headers=preflight)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://app.example.test"


async def test_an_unreachable_issuer_gets_503(issuer: LocalIssuer, http: httpx.AsyncClient) -> None:
    issuer.failing = True
    response = await http.get("/me", headers=bearer(issuer.token()))
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"


async def websocket_closing(
    issuer: LocalIssuer, headers: dict[str, str], path: str = f"/accounts/{ACCOUNT_ID}/live"
) -> list[dict[str, Any]]:
    """What the app sends a WebSocket handshake to ``path``."""
    server = ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE))
    app = Litestar([live, my_live], plugins=[ResourceServerPlugin(server)])
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(name.encode(), value.encode()) for name, value in headers.items()],
        "scheme": "ws",
        "server": ("tickets.test", 80),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
    }
    async with server:
        await app(scope, receive, send)  # type: ignore[arg-type]
    return sent


@pytest.mark.parametrize(
    "claims",
    [None, {"exp": 1, "iat": 0}, {"permissions": ["invoices"]}],
    ids=["no-token", "expired", "no-permission"],
)
async def test_a_refused_websocket_is_closed_as_a_policy_violation_not_a_server_error(
    issuer: LocalIssuer, claims: dict[str, Any] | None
) -> None:
    # Litestar closes a WebSocket whose guard raised anything but WebSocketException as
    # 4500 Internal Server Error, and logs a traceback: a bad token looked like our crash.
    headers = {} if claims is None else bearer(issuer.token(**claims))
    sent = await websocket_closing(issuer, headers)
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1008)]


async def test_a_websocket_is_closed_try_again_later_while_the_issuer_is_unreachable(
    issuer: LocalIssuer,
) -> None:
    issuer.failing = True
    sent = await websocket_closing(issuer, bearer(issuer.token()))
    assert [(m["type"], m["code"]) for m in sent] == [("websocket.close", 1013)]


async def test_a_websocket_with_the_permission_is_accepted(issuer: LocalIssuer) -> None:
    sent = await websocket_closing(issuer, bearer(issuer.token(permissions=["tickets"])))
    assert sent[0]["type"] == "websocket.accept"


async def test_the_dependency_alone_closes_a_websocket_without_a_valid_token(
    issuer: LocalIssuer,
) -> None:
    refused = await websocket_closing(issuer, {}, "/me/live")
    assert [(m["type"], m["code"]) for m in refused] == [("websocket.close", 1008)]
    admitted = await websocket_closing(issuer, bearer(issuer.token(sub="user-5")), "/me/live")
    assert [m.get("text") for m in admitted if m["type"] == "websocket.send"] == ["user-5"]


async def test_the_access_token_dependency_is_declared_as_litestar_3_resolves_it(
    issuer: LocalIssuer,
) -> None:
    # Declared as ``request: Request``, the dependency made Litestar warn on every app with a
    # WebSocket route using it: such a declaration stops resolving there in Litestar 3.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        refused = await websocket_closing(issuer, {}, "/me/live")
        admitted = await websocket_closing(issuer, bearer(issuer.token(sub="user-6")), "/me/live")
        server = ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE))
        app = Litestar([me, my_live], plugins=[ResourceServerPlugin(server)])
        async with asgi_client(app, "http://tickets.test") as client:
            response = await client.get("/me", headers=bearer(issuer.token(sub="user-6")))
    assert [(m["type"], m["code"]) for m in refused] == [("websocket.close", 1008)]
    assert [m.get("text") for m in admitted if m["type"] == "websocket.send"] == ["user-6"]
    assert response.json() == {"subject": "user-6"}
