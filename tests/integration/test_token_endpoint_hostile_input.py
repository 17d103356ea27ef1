"""Malformed and hostile requests to the token side get spec errors, never a 500."""

from __future__ import annotations

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.oauth_helpers import fresh_code, make_client

GARBAGE = [
    "",
    " ",
    "\u202e\u0000",
    "%00",
    "' OR 1=1 --",
    "x" * 10_000,
    "é" * 500,
    "eyJ.eyJ.sig",
    "\ud800",
    "../../etc/passwd",
]
FIELDS = [
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "resource",
]


async def test_wrong_content_type_is_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    for body, content_type in (
        (b'{"grant_type": "client_credentials"}', "application/json"),
        (b"grant_type=client_credentials", "text/plain"),
        (b"grant_type=client_credentials", ""),
        (b"--b\r\n", "multipart/form-data; boundary=b"),
    ):
        response = await client.post(
            "/token", content=body, headers=app.basic | {"Content-Type": content_type}
        )
        assert response.status_code == 400
        assert response.json()["error"] == "invalid_request"
        assert response.headers["cache-control"] == "no-store"


async def test_repeated_parameter_is_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    body = "grant_type=client_credentials&grant_type=client_credentials"

    response = await client.post(
        "/token",
        content=body,
        headers=app.basic | {"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.json()["error"] == "invalid_request"


async def test_unrecognized_parameters_are_ignored_even_repeated(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6749 §3.2 and RFC 7009/7662: the server MUST ignore parameters it does not
    recognize; only its own may not repeat (node-oidc-provider's reject_dupes looks only at
    the parameters it reads)."""
    app = await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="api"
    )
    form = app.basic | {"Content-Type": "application/x-www-form-urlencoded"}
    extensions = "audience=a&audience=b&trace=%01"

    issued = await client.post(
        "/token", content=f"grant_type=client_credentials&{extensions}", headers=form
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    introspected = await client.post(
        "/introspect", content=f"token={token}&{extensions}", headers=form
    )
    assert introspected.status_code == 200, introspected.text
    assert introspected.json()["active"] is True
    revoked = await client.post("/revoke", content=f"token={token}&{extensions}", headers=form)
    assert revoked.status_code == 200, revoked.text


async def test_missing_parameters_are_named_errors(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime)
    app = fresh.client

    no_grant = await client.post("/token", data={}, headers=app.basic)
    no_code = await client.post(
        "/token", data={"grant_type": "authorization_code"}, headers=app.basic
    )
    no_redirect = await client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": fresh.code,
            "code_verifier": fresh.verifier,
        },
        headers=app.basic,
    )

    assert [r.json()["error"] for r in (no_grant, no_code, no_redirect)] == ["invalid_request"] * 3
    assert (await fresh.redeem(client)).status_code == 200


@pytest.mark.parametrize("field", FIELDS)
async def test_garbage_in_any_field_is_a_spec_error(
    client: httpx.AsyncClient, runtime: Runtime, field: str
) -> None:
    app = await make_client(runtime)
    base = {"grant_type": "authorization_code", "code": "c", "redirect_uri": "https://x.example"}
    for value in GARBAGE:
        data = base | {field: value.encode("utf-8", "surrogatepass").decode("latin-1")}
        response = await client.post("/token", data=data, headers=app.basic)
        assert response.status_code in (400, 401), (field, value[:20], response.text)
        assert response.json()["error"] in {
            "invalid_request",
            "invalid_client",
            "invalid_grant",
            "unsupported_grant_type",
            "invalid_scope",
            "invalid_target",
        }


async def test_undecodable_body_is_invalid_request(client: httpx.AsyncClient) -> None:
    for body in (b"grant_type=%ff%fe", b"\xff\xfe=1", b"a=" + b"%" * 100):
        response = await client.post(
            "/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert response.status_code in (400, 401)
        assert response.json()["error"] in {"invalid_request", "invalid_client"}


async def test_huge_body_is_invalid_request_not_a_crash(client: httpx.AsyncClient) -> None:
    response = await client.post("/token", data={"grant_type": "x" * 200_000})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_too_many_fields_is_invalid_request(client: httpx.AsyncClient) -> None:
    body = "&".join(f"f{i}=1" for i in range(500))

    response = await client.post(
        "/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )

    assert response.json()["error"] == "invalid_request"


async def test_hostile_input_to_introspection_and_revocation(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    for path in ("/introspect", "/revoke"):
        for value in GARBAGE:
            data = {"token": value.encode("utf-8", "surrogatepass").decode("latin-1")}
            response = await client.post(path, data=data, headers=app.basic)
            assert response.status_code in (200, 400), (path, value[:20], response.text)
        wrong_type = await client.post(
            path,
            content=b'{"token": "x"}',
            headers=app.basic | {"Content-Type": "application/json"},
        )
        assert wrong_type.json()["error"] == "invalid_request"


async def test_get_on_the_token_endpoint_is_405(client: httpx.AsyncClient) -> None:
    assert (await client.get("/token")).status_code == 405
