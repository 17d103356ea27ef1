"""Every problem the API answers is ``Cache-Control: no-store``, as its successes are: a
problem can quote what was posted (the address a 422 or a 409 names), and some statuses
(404, 405) a shared cache may keep without being told to."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from identity.db.engine import DatabaseUnavailable
from identity.permissions import directory
from identity.runtime import Runtime
from identity.store.rate_limit import Limit
from identity.web.api import password
from tests.integration.account_helpers import make_user, staff_headers, user_headers

USERS = "/api/v1/users"
UUID0 = "00000000-0000-0000-0000-000000000000"
Ask = Callable[[httpx.AsyncClient, Runtime, pytest.MonkeyPatch], Awaitable[httpx.Response]]


async def _unauthenticated(client: httpx.AsyncClient, *_: object) -> httpx.Response:
    return await client.get(USERS)


async def _insufficient_scope(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    return await client.get(USERS, headers=await user_headers(runtime, await make_user(runtime)))


async def _unknown_user(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    return await client.get(f"{USERS}/{UUID0}", headers=await staff_headers(runtime))


async def _unknown_path(client: httpx.AsyncClient, *_: object) -> httpx.Response:
    return await client.get("/api/v1/no-such-thing")


async def _wrong_method(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    return await client.delete(USERS, headers=await staff_headers(runtime))


async def _address_taken(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    body = {"email": (await make_user(runtime)).email}
    return await client.post(USERS, json=body, headers=await staff_headers(runtime))


async def _too_large(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    body = {"email": "x" * (runtime.settings.max_body_bytes + 1)}
    return await client.post(USERS, json=body, headers=await staff_headers(runtime))


async def _not_json(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    headers = await staff_headers(runtime) | {"Content-Type": "text/plain"}
    return await client.post(USERS, content="maria@example.com", headers=headers)


async def _invalid_address(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    body = {"email": "maria@@example.com"}
    return await client.post(USERS, json=body, headers=await staff_headers(runtime))


async def _malformed_json(
    client: httpx.AsyncClient, runtime: Runtime, _: pytest.MonkeyPatch
) -> httpx.Response:
    headers = await staff_headers(runtime) | {"Content-Type": "application/json"}
    return await client.post(USERS, content='{"email": "maria@example.com"', headers=headers)


async def _rate_limited(
    client: httpx.AsyncClient, _: Runtime, monkeypatch: pytest.MonkeyPatch
) -> httpx.Response:
    monkeypatch.setattr(password, "CHECK_LIMIT", Limit("password-check", max=1, window=60))
    await client.post("/api/v1/password/check", json={"password": "x"})
    return await client.post("/api/v1/password/check", json={"password": "x"})


async def _database_down(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> httpx.Response:
    async def down(*_: object) -> None:
        raise DatabaseUnavailable("OperationalError")

    headers = await staff_headers(runtime)
    monkeypatch.setattr(directory, "list_users", down)
    return await client.get(USERS, headers=headers)


@pytest.mark.parametrize(
    ("status", "ask"),
    [
        (401, _unauthenticated),
        (403, _insufficient_scope),
        (404, _unknown_user),
        (404, _unknown_path),
        (405, _wrong_method),
        (409, _address_taken),
        (413, _too_large),
        (415, _not_json),
        (422, _invalid_address),
        (400, _malformed_json),
        (429, _rate_limited),
        (503, _database_down),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else str(value),
)
async def test_a_problem_is_never_cached(
    client: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    ask: Ask,
) -> None:
    response = await ask(client, runtime, monkeypatch)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["cache-control"] == "no-store"


async def test_the_public_password_policy_may_still_be_cached(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/password/policy")
    assert response.status_code == 200
    assert "cache-control" not in response.headers
