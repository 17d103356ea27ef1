"""Regressions found by the security sweep (schemathesis and fuzzing), one test each."""

from __future__ import annotations

import httpx


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
