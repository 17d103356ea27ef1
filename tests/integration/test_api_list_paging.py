"""The management API's lists of members, roles, role templates, invitations, webhook
subscriptions and the caller's own accounts are paged as the users list is: ``offset`` and
``limit`` (1 to 200, 50 by default) in the query, the page a plain JSON array, anything out of
range 400 naming it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.account_helpers import (
    make_account,
    problem_fields,
    staff_headers,
    user_headers,
)
from tests.integration.oauth_helpers import make_user

ITEMS = 5  # made by each test: pages of 2 are full, full, then short
# A list's path, and the headers of a caller who may read it.
Listing = tuple[str, dict[str, str]]
Fill = Callable[[httpx.AsyncClient, Runtime, dict[str, str]], Awaitable[Listing]]


async def _members(client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]) -> Listing:
    account = await make_account(runtime, await make_user(runtime))
    path = f"/api/v1/accounts/{account.id}/members"
    for _ in range(ITEMS - 1):  # the owner is the first
        user = await make_user(runtime)
        added = await client.post(path, json={"user_id": str(user.id)}, headers=staff)
        assert added.status_code == 201, added.text
    return path, staff


async def _account_roles(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]
) -> Listing:
    account = await make_account(runtime, await make_user(runtime))
    path = f"/api/v1/accounts/{account.id}/roles"
    # Two with one name in another case would be refused; the order is by name, then id.
    for n in range(ITEMS):
        made = await client.post(path, json={"name": f"Desk {n % 3}-{n}"}, headers=staff)
        assert made.status_code == 201, made.text
    return path, staff


async def _templates(client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]) -> Listing:
    for n in range(ITEMS):  # besides the built-in templates
        made = await client.post("/api/v1/roles", json={"name": f"Desk {n}"}, headers=staff)
        assert made.status_code == 201, made.text
    return "/api/v1/roles", staff


async def _invitations(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]
) -> Listing:
    account = await make_account(runtime, await make_user(runtime))
    path = f"/api/v1/accounts/{account.id}/invitations"
    for n in range(ITEMS):
        sent = await client.post(path, json={"email": f"hire{n}@example.com"}, headers=staff)
        assert sent.status_code == 201, sent.text
    return path, staff


async def _webhooks(client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]) -> Listing:
    for n in range(ITEMS):
        made = await client.post(
            "/api/v1/webhooks",
            json={
                "url": f"https://hooks{n}.example.com/identity",
                "event_types": ["user.disabled"],
            },
            headers=staff,
        )
        assert made.status_code == 201, made.text
    return "/api/v1/webhooks", staff


async def _my_accounts(
    client: httpx.AsyncClient, runtime: Runtime, staff: dict[str, str]
) -> Listing:
    member = await make_user(runtime)
    # Listed by name, then id: three share a name, so only the id orders them.
    for n in range(ITEMS):
        await make_account(runtime, member, name=f"Acme {max(n - 2, 0)}")
    return "/api/v1/me/accounts", await user_headers(runtime, member)


LISTS = pytest.mark.parametrize(
    "fill",
    [_members, _account_roles, _templates, _invitations, _webhooks, _my_accounts],
    ids=["members", "account-roles", "role-templates", "invitations", "webhooks", "my-accounts"],
)


def _ids(page: httpx.Response) -> list[str]:
    assert page.status_code == 200, page.text
    return [row.get("id") or row["user_id"] for row in page.json()]


@LISTS
async def test_pages_follow_one_another_to_the_end(
    client: httpx.AsyncClient, runtime: Runtime, fill: Fill
) -> None:
    path, headers = await fill(client, runtime, await staff_headers(runtime))
    whole = _ids(await client.get(path, params={"limit": 200}, headers=headers))
    assert len(whole) >= ITEMS and len(set(whole)) == len(whole)
    assert _ids(await client.get(path, headers=headers)) == whole  # 50 by default

    pages = []
    for offset in range(0, len(whole) + 2, 2):
        pages.append(
            _ids(await client.get(path, params={"offset": offset, "limit": 2}, headers=headers))
        )
    # First and next pages are full, the last holds what is left, past it nothing.
    assert all(len(page) == 2 for page in pages[: len(whole) // 2])
    assert [item for page in pages for item in page] == whole
    assert pages[-1] == []
    assert _ids(await client.get(path, params={"limit": 1}, headers=headers)) == whole[:1]


@LISTS
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"offset": "-1"}, "offset"),
        ({"offset": "next"}, "offset"),
        ({"offset": "1000001"}, "offset"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "many"}, "limit"),
    ],
)
async def test_a_page_out_of_range_is_a_problem_naming_it(
    client: httpx.AsyncClient,
    runtime: Runtime,
    fill: Fill,
    query: dict[str, str],
    field: str,
) -> None:
    path, headers = await fill(client, runtime, await staff_headers(runtime))
    refused = await client.get(path, params=query, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert field in problem_fields(refused.json())


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/accounts/{account_id}/members",
        "/api/v1/accounts/{account_id}/roles",
        "/api/v1/roles",
        "/api/v1/accounts/{account_id}/invitations",
        "/api/v1/webhooks",
        "/api/v1/me/accounts",
    ],
)
async def test_the_openapi_document_declares_the_paging(
    client: httpx.AsyncClient, path: str
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    users = {p["name"]: p for p in document["paths"]["/api/v1/users"]["get"]["parameters"]}
    listed = {p["name"]: p for p in document["paths"][path]["get"]["parameters"]}
    for name in ("offset", "limit"):
        assert listed[name] == users[name]
