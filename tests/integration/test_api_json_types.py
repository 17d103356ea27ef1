"""A JSON body's values must have the types the schema declares: no coercion.

Litestar converts bodies with msgspec's lax rules, under which ``"true"`` and ``1`` are
booleans and a number is a date: ``{"is_admin": "true"}`` made a user an administrator and
``{"owner": 1}`` made a member an owner. Every wrong type is a 400 problem naming the field,
and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.account_helpers import (
    problem_fields,
    staff_headers,
    table_ids,
    with_ids,
)

MEMBER = "/accounts/{a}/members/{t}"
CB = "https://app.example.com/cb"

# (method, path, body, field, probe): the body is wrong in the type of the field named; a
# GET of the probe answers the same before and after.
CASES: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("PATCH", "/users/{t}", {"is_admin": "true"}, "is_admin", "/users/{t}"),
    ("PATCH", "/users/{t}", {"is_admin": 1}, "is_admin", "/users/{t}"),
    ("PATCH", "/users/{t}", {"name": 5}, "name", "/users/{t}"),
    ("POST", "/users", {"email": "new@example.com", "is_admin": "1"}, "is_admin", "/users"),
    ("PATCH", MEMBER, {"owner": 1}, "owner", MEMBER),
    ("PATCH", MEMBER, {"owner": "true"}, "owner", MEMBER),
    ("PATCH", MEMBER, {"all_permissions": 1.0}, "all_permissions", MEMBER),
    (
        "POST",
        "/accounts/{a}/members",
        {"user_id": "{u}", "owner": "true"},
        "owner",
        "/accounts/{a}/members",
    ),
    # A number was read as a Unix time.
    (
        "POST",
        MEMBER + "/permissions",
        {"name": "tickets", "expires_at": 1893456000},
        "expires_at",
        MEMBER,
    ),
    (
        "POST",
        "/accounts/{a}/invitations",
        {"email": "inv@example.com", "all_permissions": "yes"},
        "all_permissions",
        "/accounts/{a}/invitations",
    ),
    ("PATCH", "/accounts/{a}", {"name": 42}, "name", "/accounts/{a}"),
    (
        "POST",
        "/clients",
        {"name": "A", "redirect_uris": [CB], "first_party": "true"},
        "first_party",
        "/clients",
    ),
    ("PATCH", "/clients/{c}", {"disabled": 1}, "disabled", "/clients/{c}"),
    ("PATCH", "/clients/{c}", {"require_pkce": "false"}, "require_pkce", "/clients/{c}"),
    ("PATCH", "/clients/{c}", {"scope": 7}, "scope", "/clients/{c}"),
]


@pytest.fixture
async def arranged(runtime: Runtime) -> dict[str, Any]:
    ids = await table_ids(runtime)
    return {"headers": await staff_headers(runtime), "ids": ids}


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "probe"),
    CASES,
    ids=[f"{m} {p} {f}={b[f]!r}" for m, p, b, f, _ in CASES],
)
async def test_a_value_of_the_wrong_type_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    arranged: dict[str, Any],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str,
    probe: str,
) -> None:
    ids, headers = arranged["ids"], arranged["headers"]
    probe_url = "/api/v1" + probe.format(**ids)
    before = (await client.get(probe_url, headers=headers)).json()

    response = await client.request(
        method, "/api/v1" + path.format(**ids), json=with_ids(body, ids), headers=headers
    )

    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem_fields(response.json()) == {field}, response.json()
    assert (await client.get(probe_url, headers=headers)).json() == before


async def test_dates_and_ids_written_as_json_strings_are_still_read(
    client: httpx.AsyncClient, arranged: dict[str, Any]
) -> None:
    """JSON has no date or UUID type: strict decoding still reads them from strings."""
    ids, headers = arranged["ids"], arranged["headers"]
    granted = await client.post(
        "/api/v1" + MEMBER.format(**ids) + "/permissions",
        json={"name": "tickets", "expires_at": "2030-01-01T00:00:00+02:00"},
        headers=headers,
    )
    added = await client.post(
        f"/api/v1/accounts/{ids['a']}/members",
        json={"user_id": ids["u"], "owner": False},
        headers=headers,
    )

    assert granted.status_code in (200, 201), granted.text
    assert added.status_code == 201, added.text
    member = (await client.get("/api/v1" + MEMBER.format(**ids), headers=headers)).json()
    [grant] = [g for g in member["permissions"] if g["name"] == "tickets"]
    assert grant["expires_at"].startswith("2029-12-31T22:00:00")


async def test_a_repeated_key_counts_once_with_its_last_value(
    client: httpx.AsyncClient, arranged: dict[str, Any]
) -> None:
    """As in JavaScript's JSON.parse and Python's json: the last occurrence wins."""
    ids, headers = arranged["ids"], arranged["headers"]
    response = await client.patch(
        f"/api/v1/users/{ids['t']}",
        content=b'{"is_admin": true, "is_admin": false}',
        headers=headers | {"Content-Type": "application/json"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["is_admin"] is False


async def test_a_caller_without_a_token_learns_nothing_of_the_body(
    client: httpx.AsyncClient, arranged: dict[str, Any]
) -> None:
    """The types are checked where Litestar checks the rest, after the bearer token."""
    response = await client.patch(
        f"/api/v1/users/{arranged['ids']['t']}", json={"is_admin": "true"}
    )

    assert response.status_code == 401, response.text
