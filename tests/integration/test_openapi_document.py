"""The OpenAPI document says what the API really does: who needs a token, and what may fail."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from identity.runtime import Runtime
from identity.web.problems import PROBLEM_JSON
from tests.integration.account_helpers import make_account, make_user, staff_headers, user_headers

# Password policy, check and generator, and forgotten passwords: for people not signed in.
PUBLIC = {
    ("get", "/api/v1/password/policy"),
    ("post", "/api/v1/password/check"),
    ("get", "/api/v1/password/generate"),
    ("post", "/api/v1/password/forgot"),
    ("post", "/api/v1/password/reset"),
}


@pytest.fixture
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/schema/openapi.json")).json()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _bearer_scheme(document: dict[str, Any]) -> str:
    schemes = document["components"]["securitySchemes"]
    (name,) = (n for n, s in schemes.items() if s["type"] == "http" and s["scheme"] == "bearer")
    return name


def test_the_bearer_scheme_names_the_scopes_it_takes(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"][_bearer_scheme(document)]
    assert scheme["bearerFormat"] == "JWT"
    for scope in ("identity:accounts", "identity:admin", "identity:authz"):
        assert scope in scheme["description"]


def test_every_operation_but_the_public_ones_requires_the_bearer_token(
    document: dict[str, Any],
) -> None:
    name = _bearer_scheme(document)
    assert "security" not in document  # no requirement by default: the public ones take none
    for method, path, operation in _operations(document):
        expected = None if (method, path) in PUBLIC else [{name: []}]
        assert operation.get("security") == expected, f"{method} {path}"


async def test_what_the_document_secures_refuses_a_request_without_a_token(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    # The requirement is true, both ways: every secured operation answers 401 to a request
    # that carries no token, and no public one does.
    for method, path, operation in _operations(document):
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.request(method, url, json={})
        assert (response.status_code == 401) == ("security" in operation), f"{method} {path}"


async def test_a_secured_operation_documents_the_400_of_a_bearer_header_without_a_token(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    for method, path, operation in _operations(document):
        if "security" not in operation:
            continue
        url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
        response = await client.request(method, url, json={}, headers={"Authorization": "Bearer"})
        assert response.status_code == 400, f"{method} {path}"
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
        assert "WWW-Authenticate" in operation["responses"]["400"]["headers"], f"{method} {path}"


def _errors(operation: dict[str, Any]) -> set[str]:
    return {status for status in operation["responses"] if status[0] in "45"}


def test_an_account_id_documents_a_missing_token_a_refusal_and_a_hidden_account(
    document: dict[str, Any],
) -> None:
    responses = document["paths"]["/api/v1/accounts/{account_id}"]["get"]["responses"]
    for status in ("401", "403", "404", "503"):
        assert list(responses[status]["content"]) == [PROBLEM_JSON], status
    assert "WWW-Authenticate" in responses["401"]["headers"]


def test_every_operation_documents_the_errors_its_kind_gives(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        expected = {"503"}
        expected |= {"400", "401", "403"} if "security" in operation else set()
        expected |= {"404"} if "{" in path else set()
        expected |= {"413"} if "requestBody" in operation else set()
        assert expected <= _errors(operation), f"{method} {path}"
        for status in _errors(operation):
            content = operation["responses"][status]["content"]
            assert list(content) == [PROBLEM_JSON], f"{method} {path} {status}"


def _assert_documented(
    document: dict[str, Any], method: str, path: str, response: httpx.Response, status: int
) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert str(status) in document["paths"][path][method]["responses"], f"{method} {path}"


async def test_errors_that_random_requests_seldom_reach_are_documented(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    # The schemathesis sweep (tests/e2e) checks every status it meets; these take a state
    # or a count it does not arrange.
    staff = await staff_headers(runtime)
    roles = "/api/v1/roles"
    await client.post(roles, json={"name": "Auditors"}, headers=staff)
    twice = await client.post(roles, json={"name": "Auditors"}, headers=staff)
    _assert_documented(document, "post", roles, twice, 409)

    account = await make_account(runtime, await make_user(runtime))
    hand_over = "/api/v1/accounts/{account_id}/ownership-transfer"
    url = hand_over.format(account_id=account.id)
    by_staff = await client.post(url, json={"to_user_id": str(uuid.uuid4())}, headers=staff)
    _assert_documented(document, "post", hand_over, by_staff, 403)

    check = "/api/v1/password/check"
    as_text = await client.post(check, content=b"{}", headers={"content-type": "text/plain"})
    _assert_documented(document, "post", check, as_text, 415)

    generate = "/api/v1/password/generate"
    for _ in range(30):
        assert (await client.get(generate)).status_code == 200
    _assert_documented(document, "get", generate, await client.get(generate), 429)


async def test_refusals_of_staff_user_recovery_are_documented(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    staff = await staff_headers(runtime)
    user, other = await make_user(runtime), await make_user(runtime)
    disable = "/api/v1/users/{user_id}/disable"
    blank = await client.post(disable.format(user_id=user.id), json={"reason": " "}, headers=staff)
    _assert_documented(document, "post", disable, blank, 422)

    email = "/api/v1/users/{user_id}/email"
    taken = await client.post(
        email.format(user_id=user.id), json={"email": other.email, "reason": "r"}, headers=staff
    )
    _assert_documented(document, "post", email, taken, 409)


async def test_refusals_of_staff_user_creation_are_documented(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    staff, user = await staff_headers(runtime), await make_user(runtime)
    users = "/api/v1/users"
    taken = await client.post(users, json={"email": user.email}, headers=staff)
    _assert_documented(document, "post", users, taken, 409)
    invalid = await client.post(users, json={"email": "not an address"}, headers=staff)
    _assert_documented(document, "post", users, invalid, 422)


async def test_refusals_of_enabling_a_user_are_documented(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    staff, user = await staff_headers(runtime), await make_user(runtime)
    enable = "/api/v1/users/{user_id}/enable"
    blank = await client.post(enable.format(user_id=user.id), json={"reason": " "}, headers=staff)
    _assert_documented(document, "post", enable, blank, 422)


async def test_refusals_of_editing_a_user_are_documented(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    admin = await make_user(runtime, is_admin=True)
    staff = await user_headers(runtime, admin, "identity:admin")
    one = "/api/v1/users/{user_id}"
    bad_name = await client.patch(
        one.format(user_id=admin.id), json={"name": "A\nB"}, headers=staff
    )
    _assert_documented(document, "patch", one, bad_name, 422)
    last = await client.patch(one.format(user_id=admin.id), json={"is_admin": False}, headers=staff)
    _assert_documented(document, "patch", one, last, 409)
    disable = "/api/v1/users/{user_id}/disable"
    last_one_off = await client.post(
        disable.format(user_id=admin.id), json={"reason": "Leaving"}, headers=staff
    )
    _assert_documented(document, "post", disable, last_one_off, 409)


def _objects_in(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """Every object schema a request body's schema is made of, following references."""
    found: list[dict[str, Any]] = []
    pending, seen = [schema], set()
    while pending:
        node = pending.pop()
        if "$ref" in node:
            name = node["$ref"].rpartition("/")[2]
            if name not in seen:
                seen.add(name)
                pending.append(document["components"]["schemas"][name])
            continue
        if node.get("type") == "object":
            found.append(node)
        pending += list(node.get("properties", {}).values())
        pending += [node["items"]] if isinstance(node.get("items"), dict) else []
        pending += node.get("oneOf", []) + node.get("anyOf", [])
    return found


async def test_every_request_body_documents_that_unknown_fields_are_refused(
    client: httpx.AsyncClient, runtime: Runtime, document: dict[str, Any]
) -> None:
    # The management API refuses a field it does not know (400); a document that left this
    # out let a client generated from it, or a schema-driven test, send extra fields it
    # believed were fine. (The public password routes ignore them, as the document says.)
    for method, path, operation in _operations(document):
        if "requestBody" not in operation or "security" not in operation:
            continue
        (body,) = operation["requestBody"]["content"].values()
        for schema in _objects_in(document, body["schema"]):
            assert schema.get("additionalProperties") is False, (method, path, schema["title"])
    staff, user = await staff_headers(runtime), await make_user(runtime)
    one = "/api/v1/users/{user_id}"
    unknown = await client.patch(
        one.format(user_id=user.id), json={"nickname": "Ada"}, headers=staff
    )
    assert unknown.status_code == 400 and "400" in document["paths"][one]["patch"]["responses"]


def test_a_member_documents_whether_staff_disabled_them(document: dict[str, Any]) -> None:
    members = "/api/v1/accounts/{account_id}/members"
    for path in (members, members + "/{user_id}"):
        (body,) = document["paths"][path]["get"]["responses"]["200"]["content"].values()
        (member,) = [
            o for o in _objects_in(document, body["schema"]) if "joined_at" in o["properties"]
        ]
        assert member["properties"].get("disabled", {}).get("type") == "boolean", path
        assert "disabled" in member["required"], path
