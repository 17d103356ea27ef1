"""The OpenAPI document says what the API really does: who needs a token, and what may fail."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

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
