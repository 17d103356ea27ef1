"""Regressions found by the security sweep (schemathesis and fuzzing), one test each."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from identity.permissions.catalogue import ANY_NAME_PATTERN, MAX_NAME
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    make_account,
    make_user,
    problem_fields,
    staff_headers,
)


async def test_an_empty_password_is_refused_not_a_server_error(client: httpx.AsyncClient) -> None:
    # zxcvbn raised IndexError on "": POST /api/v1/password/check answered 500.
    response = await client.post("/api/v1/password/check", json={"password": ""})
    assert response.status_code == 200
    assert response.json()["accepted"] is False
    assert response.json()["score"] == 0


async def test_error_answers_are_documented_as_problem_details(client: httpx.AsyncClient) -> None:
    # Litestar documents its automatic 400 as application/json in its own shape; we answer
    # application/problem+json (RFC 9457).
    document = (await client.get("/schema/openapi.json")).json()
    bad = await client.get("/api/v1/password/generate", params={"length": "x"})
    assert bad.status_code == 400
    assert bad.headers["content-type"] == "application/problem+json"
    documented = document["paths"]["/api/v1/password/generate"]["get"]["responses"]["400"]
    assert list(documented["content"]) == ["application/problem+json"]
    schema = documented["content"]["application/problem+json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/Problem"}
    assert set(document["components"]["schemas"]["Problem"]["required"]) <= set(bad.json())


async def test_a_control_character_in_an_authorize_parameter_is_refused_before_any_lookup(
    client: httpx.AsyncClient,
) -> None:
    # On PostgreSQL a client_id holding NUL reached the client lookup and failed there: 500.
    response = await client.get(
        "/authorize",
        params={"client_id": "web\x00app", "redirect_uri": "https://app.example/cb"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "Error code: invalid_request" in response.text


# Found by a deeper schemathesis run (60 examples per operation) on PostgreSQL.


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/api/v1/users?email=a%00b", None),
        ("GET", "/api/v1/audit?action=member.added%00", None),
        ("GET", "/api/v1/audit?target_id=%00", None),
        ("POST", "/api/v1/accounts", {"name": "Acme\x00", "owner_user_id": "{u}"}),
        ("POST", "/api/v1/roles", {"name": "Support\x00", "permissions": []}),
    ],
)
async def test_a_nul_character_is_refused_as_bad_input_on_every_backend(
    client: httpx.AsyncClient, runtime: Runtime, method: str, path: str, body: Any
) -> None:
    # PostgreSQL cannot hold NUL, even in a value only compared with: a 500. SQLite stored it.
    headers = await staff_headers(runtime)
    owner = await make_user(runtime)
    if body is not None:
        body = {k: str(owner.id) if v == "{u}" else v for k, v in body.items()}
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "NUL (U+0000)" in response.json()["detail"]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("since=2026-01-01T00:00:00", "since", "Give the time zone"),
        ("until=2026-01-01T09:30:00.5", "until", "Give the time zone"),
        ("since=0001-01-01T00:00:00%2B23:00", "since", "out of range"),
        ("until=9999-12-31T23:59:59-23:00", "until", "out of range"),
    ],
)
async def test_an_audit_date_with_no_utc_moment_is_named(
    client: httpx.AsyncClient, runtime: Runtime, query: str, field: str, message: str
) -> None:
    # A date-time without an offset reached the UTC column as naive, and one at the edge of
    # the calendar overflowed converting to UTC: both were 500s, on both backends.
    response = await client.get(f"/api/v1/audit?{query}", headers=await staff_headers(runtime))
    assert response.status_code == 422, response.text
    assert problem_fields(response.json()) == {field}
    assert message in response.json()["detail"]


@pytest.mark.parametrize("query", ["since=2026", "until=1.5", "since=-1", "until=yesterday"])
async def test_an_audit_date_that_is_no_rfc_3339_date_time_is_named(
    client: httpx.AsyncClient, runtime: Runtime, query: str
) -> None:
    # A bare number was taken as a Unix time: since=2026 meant 1970-01-01T00:33:46Z, and
    # someone who meant a year got the wrong page, silently.
    response = await client.get(f"/api/v1/audit?{query}", headers=await staff_headers(runtime))
    assert response.status_code == 422, response.text
    assert problem_fields(response.json()) == {query.split("=")[0]}
    assert "RFC 3339 date-time" in response.json()["detail"]


async def test_audit_dates_are_documented_as_rfc_3339_date_times(client: httpx.AsyncClient) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    parameters = document["paths"]["/api/v1/audit"]["get"]["parameters"]
    dates = {p["name"]: p["schema"] for p in parameters if p["name"] in {"since", "until"}}
    for schema in dates.values():
        # On the parameter's schema or on its string alternative (the other one is null).
        formats = {schema.get("format")} | {s.get("format") for s in schema.get("oneOf", [])}
        assert "date-time" in formats, schema
    assert set(dates) == {"since", "until"}


async def test_an_audit_page_id_beyond_64_bits_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    headers = await staff_headers(runtime)
    last = await client.get(f"/api/v1/audit?before_id={2**63 - 1}", headers=headers)
    assert last.status_code == 200, last.text
    response = await client.get(f"/api/v1/audit?before_id={2**63}", headers=headers)
    assert response.status_code == 400
    assert problem_fields(response.json()) == {"before_id"}


async def test_a_grant_expiring_after_the_year_9999_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # 9999-12-31T23:59:59-23:00 is in the year 10000 in UTC: storing it overflowed, a 500.
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    grant = {"name": "tickets", "expires_at": "9999-12-31T23:59:59-23:00"}
    response = await client.post(
        f"/api/v1/accounts/{account.id}/invitations",
        json={"email": "late@example.com", "permissions": [grant]},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 422, response.text
    assert problem_fields(response.json()) == {"permissions"}
    assert "before the year 9999" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/password/forgot", "/reset-password"])
async def test_a_csrf_token_with_non_ascii_characters_is_a_failed_check(
    client: httpx.AsyncClient, path: str
) -> None:
    # hmac.compare_digest raises TypeError on a str with non-ASCII characters: with a seed
    # cookie set, such a posted token was a 500 on every form.
    page = await client.get("/password/forgot")
    assert page.status_code == 200
    assert client.cookies  # the CSRF seed the next post is checked against
    response = await client.post(path, data={"csrf_token": "é\u202e", "email": "a@example.com"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_control_character_in_a_logout_client_id_gets_the_logout_error_page(
    client: httpx.AsyncClient, method: str
) -> None:
    # Alone (no id_token_hint to fail first), a client_id holding NUL reached the client
    # lookup: on PostgreSQL, a problem+json answer where a browser expects a page.
    query = {"client_id": "web\x00app", "state": "s"}
    if method == "GET":
        response = await client.get("/logout", params=query)
    else:
        response = await client.post("/logout", data=query)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "This sign-out request is not valid" in response.text


@pytest.mark.parametrize("body", ["RoleCreate", "RoleUpdate"])
async def test_the_permission_names_a_role_takes_are_documented_as_checked(
    client: httpx.AsyncClient, runtime: Runtime, body: str
) -> None:
    # The document said only "string" for each name, so schemathesis (and a generated
    # client) sent "" as valid; the API refuses it, as the pattern it now documents says.
    document = (await client.get("/schema/openapi.json")).json()
    field = document["components"]["schemas"][body]["properties"]["permissions"]
    arrays = [s for s in field.get("oneOf", [field]) if s.get("type") == "array"]
    assert [a["items"]["pattern"] for a in arrays] == [ANY_NAME_PATTERN]
    assert arrays[0]["items"]["maxLength"] == MAX_NAME
    assert re.fullmatch(ANY_NAME_PATTERN, "") is None
    role = {"name": "Support", "permissions": [""]}
    response = await client.post("/api/v1/roles", json=role, headers=await staff_headers(runtime))
    assert response.status_code == 400, response.text
    assert problem_fields(response.json()) == {"permissions"}
