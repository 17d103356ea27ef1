"""Every endpoint with a body validates it and answers a problem naming the field."""

from __future__ import annotations

import uuid
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
UUID0 = "00000000-0000-0000-0000-000000000000"
CB = "https://app.example.com/cb"
# 255 characters: no mail server takes an address over 254 (RFC 5321 §4.5.3.1.3), so the
# welcome, invitation or confirmation email it was given for could never arrive.
TOO_LONG_TO_MAIL = "a" * 64 + "@" + ".".join(["b" * 63, "c" * 63, "d" * 58, "com"])

# (method, path, body, status, field): the body is wrong in exactly the field named.
CASES: list[tuple[str, str, Any, int, str]] = [
    ("POST", "/accounts", {"name": "Acme"}, 400, "owner_user_id"),
    ("POST", "/accounts", {"name": "", "owner_user_id": "{u}"}, 400, "name"),
    ("POST", "/accounts", {"name": "Acme", "owner_user_id": UUID0}, 422, "owner_user_id"),
    ("POST", "/accounts", {"name": "A", "owner_user_id": "{u}", "plan": "gold"}, 400, "plan"),
    ("PATCH", "/accounts/{a}", {"name": "x" * 201}, 400, "name"),
    ("POST", "/accounts/{a}/ownership-transfer", {"to_user_id": "me"}, 400, "to_user_id"),
    ("POST", "/accounts/{a}/members", {"user_id": "{u}", "owner": "yes"}, 400, "owner"),
    ("POST", "/accounts/{a}/members", {"user_id": UUID0}, 422, "user_id"),
    ("PATCH", MEMBER, {"permissions": [{"name": "Bad Name"}]}, 400, "permissions"),
    ("PATCH", MEMBER, {"permissions": [{"name": "nope"}]}, 422, "permissions"),
    ("PATCH", MEMBER, {"roles": [{"role_id": UUID0}]}, 422, "roles"),
    ("PATCH", MEMBER, {"all_permissions": "all"}, 400, "all_permissions"),
    (
        "POST",
        MEMBER + "/permissions",
        {"name": "tickets", "expires_at": "2030-01-01T00:00:00"},
        400,
        "expires_at",
    ),
    ("POST", MEMBER + "/permissions", {}, 400, "name"),
    ("POST", MEMBER + "/roles", {"role_id": 7}, 400, "role_id"),
    ("POST", "/accounts/{a}/invitations", {"email": "not-an-email"}, 422, "email"),
    ("POST", "/accounts/{a}/invitations", {"email": TOO_LONG_TO_MAIL}, 422, "email"),
    ("POST", "/users", {"email": TOO_LONG_TO_MAIL}, 422, "email"),
    ("POST", "/users/{t}/email", {"email": TOO_LONG_TO_MAIL, "reason": "R"}, 422, "email"),
    (
        "POST",
        "/accounts/{a}/invitations",
        {"email": "a@example.com", "locale": "fr"},
        400,
        "locale",
    ),
    ("POST", "/accounts/{a}/invitations", {"email": "a@example.com", "roles": {}}, 400, "roles"),
    ("POST", "/accounts/{a}/roles", {"permissions": []}, 400, "name"),
    ("POST", "/accounts/{a}/roles", {"name": "R", "permissions": ["nope"]}, 422, "permissions"),
    ("PATCH", "/accounts/{a}/roles/{r}", {"description": 5}, 400, "description"),
    ("POST", "/roles", {"name": "R", "permissions": "tickets"}, 400, "permissions"),
    ("PATCH", "/roles/{r}", {"name_es": "x" * 101}, 400, "name_es"),
    # Shown reversed to whoever reads it ("Trojan Source"), or as nothing at all.
    ("PATCH", "/accounts/{a}", {"name": "Acme \u202egnillib"}, 422, "name"),
    ("PATCH", "/accounts/{a}", {"name": "\u200b\u200b"}, 422, "name"),
    ("PATCH", "/accounts/{a}", {"name": "Acme\u0000"}, 422, "name"),
    ("POST", "/accounts/{a}/roles", {"name": "R\u2067x", "permissions": []}, 422, "name"),
    ("PATCH", "/roles/{r}", {"name_es": "Soporte\ncopia"}, 422, "name_es"),
    ("POST", "/permissions", {"name": "refunds", "label": {"en": "R", "es": "R"}}, 422, "name"),
    ("POST", "/permissions", {"name": "billing:refunds", "label": {"en": "R"}}, 400, "label"),
    # Spaces passed the schema's minimum length, and were stripped to an empty label.
    (
        "POST",
        "/permissions",
        {"name": "billing:refunds", "label": {"en": " ", "es": "R"}},
        422,
        "label",
    ),
    # Shown beside a checkbox on the Users page, and to staff in the API: as names are.
    (
        "POST",
        "/permissions",
        {"name": "billing:refunds", "label": {"en": "Refunds \u202eexit", "es": "R"}},
        422,
        "label",
    ),
    (
        "POST",
        "/permissions",
        {"name": "billing:refunds", "label": {"en": "R", "es": "R"}, "description": {"es": "a\0"}},
        422,
        "description",
    ),
    (
        "POST",
        "/webhooks",
        {
            "url": "https://hooks.example.com/identity",
            "event_types": ["member.removed"],
            "description": "billing\r\nX-Injected: 1",
        },
        422,
        "description",
    ),
    # Hosts and ports no connection can reach: the subscription failed every delivery.
    *(
        ("POST", "/webhooks", {"url": url, "event_types": ["member.removed"]}, 422, "url")
        for url in (
            "https://hooks example.com/identity",
            "https://%zz/identity",
            "https://hooks.example.com:0/identity",
            "https://" + "h" * 64 + ".example.com/identity",
            "https://hooks_.example.com\t/identity",
        )
    ),
    # OAuth clients: the command line's rules, each refusal naming its field.
    ("POST", "/clients", {"name": "x" * 201, "redirect_uris": [CB]}, 422, "name"),
    ("POST", "/clients", {"name": " ", "redirect_uris": [CB]}, 422, "name"),
    (
        "POST",
        "/clients",
        {"name": "A", "redirect_uris": ["http://app.example.com/cb"]},
        422,
        "redirect_uris",
    ),
    ("POST", "/clients", {"name": "A", "redirect_uris": [CB, CB]}, 422, "redirect_uris"),
    (
        "POST",
        "/clients",
        {"name": "A", "redirect_uris": ["https://user:pw@app.example.com/cb"]},
        422,
        "redirect_uris",
    ),
    ("POST", "/clients", {"name": "A", "redirect_uris": "cb"}, 400, "redirect_uris"),
    (
        "POST",
        "/clients",
        {"name": "A", "redirect_uris": [CB], "public": True, "require_pkce": False},
        422,
        "require_pkce",
    ),
    (
        "POST",
        "/clients",
        {"name": "A", "grant_types": ["client_credentials"] * 2},
        422,
        "grant_types",
    ),
    ("PATCH", "/clients/{c}", {"public": True}, 400, "public"),
    ("PATCH", "/clients/{c}", {"name": "x" * 201}, 422, "name"),
    ("PATCH", "/clients/{c}", {"name": "Portal\u202elatroP"}, 422, "name"),
    ("PATCH", "/clients/{c}", {"grant_types": ["refresh_token"]}, 422, "grant_types"),
    ("PATCH", "/clients/{c}", {"grant_types": ["password"]}, 422, "grant_types"),
    ("PATCH", "/clients/{c}", {"redirect_uris": ["https://a.example/cb#x"]}, 422, "redirect_uris"),
    (
        "PATCH",
        "/clients/{c}",
        {"post_logout_redirect_uris": ["myapp:/"]},
        422,
        "post_logout_redirect_uris",
    ),
    (
        "PATCH",
        "/clients/{c}",
        {"post_logout_redirect_uris": ["https://user@app.example.com/"]},
        422,
        "post_logout_redirect_uris",
    ),
    ("PATCH", "/clients/{c}", {"resources": ["billing"]}, 422, "resources"),
    ("PATCH", "/clients/{c}", {"scope": 'bad"scope'}, 422, "scope"),
    ("PATCH", "/clients/{c}", {"disabled": "yes"}, 400, "disabled"),
    # Null in a change was read as "leave it as it is": a manager clearing a member's
    # permissions with null got 200, and the member kept every one of them.
    ("PATCH", MEMBER, {"permissions": None}, 400, "permissions"),
    ("PATCH", MEMBER, {"roles": None}, 400, "roles"),
    ("PATCH", MEMBER, {"owner": None}, 400, "owner"),
    ("PATCH", "/users/{t}", {"name": None}, 400, "name"),
    ("PATCH", "/users/{t}", {"is_admin": None}, 400, "is_admin"),
    ("PATCH", "/clients/{c}", {"resources": None}, 400, "resources"),
    ("PATCH", "/accounts/{a}/roles/{r}", {"permissions": None}, 400, "permissions"),
    ("PATCH", "/roles/{r}", {"description": None}, 400, "description"),
    ("POST", "/authz/check", {"checks": []}, 400, "checks"),
    (
        "POST",
        "/authz/check",
        {"checks": [{"user_id": UUID0, "account_id": UUID0}]},
        400,
        "checks",
    ),
]


@pytest.fixture
async def arranged(client: httpx.AsyncClient, runtime: Runtime) -> dict[str, Any]:
    ids = await table_ids(runtime)
    staff = await staff_headers(runtime)
    role = await client.post(
        f"/api/v1/accounts/{ids['a']}/roles", json={"name": "Desk"}, headers=staff
    )
    template = await client.post("/api/v1/roles", json={"name": f"T{uuid.uuid4()}"}, headers=staff)
    return {
        "headers": staff,
        "ids": ids,
        "role": role.json()["id"],
        "template": template.json()["id"],
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    CASES,
    ids=[f"{m} {p} {f}" for m, p, _, _, f in CASES],
)
async def test_a_bad_field_is_named_in_the_problem(
    client: httpx.AsyncClient,
    arranged: dict[str, Any],
    method: str,
    path: str,
    body: Any,
    status: int,
    field: str,
) -> None:
    role = arranged["template"] if path.startswith("/roles") else arranged["role"]
    ids = arranged["ids"] | {"r": role}
    response = await client.request(
        method,
        "/api/v1" + path.format(**ids),
        json=with_ids(body, ids),
        headers=arranged["headers"],
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in problem_fields(response.json()), response.json()


async def test_malformed_json_is_a_problem(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await client.post(
        "/api/v1/accounts",
        content=b"{not json",
        headers=await staff_headers(runtime) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\ud800x", b"\\udc00"])
async def test_an_unpaired_surrogate_escape_is_called_what_it_is(
    client: httpx.AsyncClient, runtime: Runtime, escape: bytes
) -> None:
    """msgspec refuses "\\ud800" in a string as "Input data was truncated", which sends the
    caller looking for a cut-off body."""
    response = await client.post(
        "/api/v1/accounts",
        content=b'{"name": "Acme' + escape + b'"}',
        headers=await staff_headers(runtime) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "unpaired surrogate" in response.json()["detail"]
    assert "truncated" not in response.text


# Deeper than Python's recursion limit.
DEEPLY_NESTED = b'{"name": "Acme", "x": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"


async def test_json_nested_past_the_decoders_depth_is_a_problem_not_a_500(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """msgspec refuses nesting deeper than Python's recursion limit with RecursionError,
    not its DecodeError: 20 KB of brackets answered 500 (to anonymous callers too, before
    authentication came first; see test_a_caller_without_a_token_learns_nothing...)."""
    response = await client.post(
        "/api/v1/accounts",
        content=DEEPLY_NESTED,
        headers=await staff_headers(runtime) | {"Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "nested too deeply" in response.json()["detail"]


async def test_a_bad_query_parameter_is_named(client: httpx.AsyncClient, runtime: Runtime) -> None:
    response = await client.get("/api/v1/users?limit=0", headers=await staff_headers(runtime))
    assert response.status_code == 400
    assert "limit" in problem_fields(response.json())


async def test_a_refused_request_is_not_quoted_back(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Litestar's own detail read "Validation failed for GET /api/v1/users?limit=0&...": the
    query echoed whole, secrets a caller put there included. The errors name the field."""
    query = "limit=0&email=secret%3Cb%3E"
    response = await client.get(f"/api/v1/users?{query}", headers=await staff_headers(runtime))
    assert response.status_code == 400
    assert "secret" not in response.text and "/api/v1/users" not in response.text
    assert "limit" in problem_fields(response.json())


async def test_the_openapi_document_shows_request_and_response_schemas(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    invite = document["paths"]["/api/v1/accounts/{account_id}/invitations"]["post"]
    assert "requestBody" in invite
    assert "201" in invite["responses"]
    schemas = document["components"]["schemas"]
    assert {"InvitationCreate", "InvitationOut", "MemberOut", "AuthzRequest"} <= set(schemas)


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "text/json"]
)
async def test_a_body_not_sent_as_json_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, runtime: Runtime, content_type: str | None
) -> None:
    """The API takes JSON, and its OpenAPI document says so; a body sent as anything else
    was parsed as JSON all the same and acted on. 415, as the password endpoints answer."""
    ids = await table_ids(runtime)
    staff = await staff_headers(runtime)
    headers = staff | ({"Content-Type": content_type} if content_type else {})
    response = await client.patch(
        f"/api/v1/accounts/{ids['a']}", content=b'{"name": "Renamed"}', headers=headers
    )
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == "application/problem+json"
    account = await client.get(f"/api/v1/accounts/{ids['a']}", headers=staff)
    assert account.json()["name"] == "Acme"


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/merge-patch+json"],
)
async def test_json_under_any_json_media_type_is_taken(
    client: httpx.AsyncClient, runtime: Runtime, content_type: str
) -> None:
    ids = await table_ids(runtime)
    response = await client.patch(
        f"/api/v1/accounts/{ids['a']}",
        content=b'{"name": "Renamed"}',
        headers=await staff_headers(runtime) | {"Content-Type": content_type},
    )
    assert response.status_code == 200, response.text


async def test_a_request_with_no_body_needs_no_content_type(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ids = await table_ids(runtime)
    staff = await staff_headers(runtime)
    invited = await client.post(
        f"/api/v1/accounts/{ids['a']}/invitations", json={"email": "x@example.com"}, headers=staff
    )
    resend = await client.post(
        f"/api/v1/accounts/{ids['a']}/invitations/{invited.json()['id']}/resend", headers=staff
    )
    assert resend.status_code == 200, resend.text


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("text/plain", b'{"name": "Renamed"}'),
        ("application/json", b'{"name": '),
        ("application/json", DEEPLY_NESTED),
    ],
)
async def test_a_caller_without_a_token_learns_nothing_of_the_body_rules(
    client: httpx.AsyncClient, runtime: Runtime, content_type: str, body: bytes
) -> None:
    # The content type was checked (415), and the body parsed (400), before the token:
    # an unauthenticated caller could map what each endpoint takes. Authentication first.
    ids = await table_ids(runtime)
    response = await client.patch(
        f"/api/v1/accounts/{ids['a']}", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 401, response.text
    assert response.json()["type"] == "urn:identity:problem:unauthenticated"
