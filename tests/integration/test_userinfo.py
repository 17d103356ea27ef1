"""Userinfo: bearer header (or a POST's form body), GET or POST, claims by scope, 401 with a
Bearer challenge."""

from __future__ import annotations

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.account_helpers import bearer
from tests.integration.oauth_helpers import (
    BILLING,
    make_client,
    make_user,
    service_client,
    service_token,
    signed_in_tokens,
    verify_with_jwks,
)


async def test_userinfo_by_get_and_post_releases_claims_by_scope(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    user = await make_user(runtime, email="grace@example.com", name="Grace Hopper")
    tokens = await signed_in_tokens(client, runtime, app, user=user, scope="openid email")

    by_get = await client.get("/userinfo", headers=bearer(tokens["access_token"]))
    by_post = await client.post("/userinfo", headers=bearer(tokens["access_token"]))

    assert by_get.status_code == by_post.status_code == 200
    assert by_get.json() == by_post.json()
    assert by_get.json() == {
        "sub": str(user.id),
        "email": "grace@example.com",
        "email_verified": True,
    }


async def test_a_post_may_carry_the_token_in_its_form_body(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """OIDC Core §5.3.1 sends the token "per Section 2 of RFC 6750", whose §2.2 is the
    access_token field of a form-encoded POST body (as node-oidc-provider accepts it)."""
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, scope="openid email")

    in_body = await client.post("/userinfo", data={"access_token": tokens["access_token"]})
    in_header = await client.get("/userinfo", headers=bearer(tokens["access_token"]))

    assert in_body.status_code == 200, in_body.text
    assert in_body.json() == in_header.json()


async def test_a_token_sent_two_ways_at_once_is_an_invalid_request(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6750 §2: a client MUST NOT send the token by more than one method; §3.1 answers
    such a request with 400 invalid_request, in a Bearer challenge too (§3)."""
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)
    token = tokens["access_token"]

    for headers in (bearer(token), bearer("another"), {"Authorization": "Basic eDp5"}):
        response = await client.post("/userinfo", data={"access_token": token}, headers=headers)

        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_request"
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
        assert response.headers["cache-control"] == "no-store"


async def test_a_malformed_form_body_is_an_invalid_request_with_a_challenge(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    token = (await signed_in_tokens(client, runtime, app))["access_token"]
    form = {"Content-Type": "application/x-www-form-urlencoded"}

    for body in (f"access_token={token}&access_token={token}", "access_token=a%00b"):
        response = await client.post("/userinfo", content=body, headers=form)

        assert response.status_code == 400, response.text
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


async def test_a_post_body_that_is_no_form_is_not_read_for_a_token(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6750 §2.2: only an application/x-www-form-urlencoded body carries a token; any
    other is no credential, so the header alone counts."""
    app = await make_client(runtime)
    token = (await signed_in_tokens(client, runtime, app))["access_token"]

    with_header = await client.post(
        "/userinfo", json={"access_token": "ignored"}, headers=bearer(token)
    )
    without = await client.post("/userinfo", json={"access_token": token})

    assert with_header.status_code == 200, with_header.text
    assert without.status_code == 401
    assert without.headers["www-authenticate"] == "Bearer"


async def test_profile_scope_releases_the_name(client: httpx.AsyncClient, runtime: Runtime) -> None:
    app = await make_client(runtime)
    user = await make_user(runtime, name="Grace Hopper")
    tokens = await signed_in_tokens(client, runtime, app, user=user, scope="openid profile")

    body = (await client.get("/userinfo", headers=bearer(tokens["access_token"]))).json()

    assert body["name"] == "Grace Hopper"
    assert "email" not in body


async def test_a_user_without_a_name_gets_no_empty_name_claim(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # OIDC Core §5.3.2: an unset claim is omitted, not sent as "" (the interop test saw it).
    app = await make_client(runtime)
    user = await make_user(runtime, name="")
    tokens = await signed_in_tokens(client, runtime, app, user=user, scope="openid profile")

    body = (await client.get("/userinfo", headers=bearer(tokens["access_token"]))).json()
    id_token = (await verify_with_jwks(client, tokens["id_token"])).claims

    assert "name" not in body
    assert "name" not in id_token
    assert "updated_at" in body


async def test_bad_token_is_401_with_bearer_challenge(client: httpx.AsyncClient) -> None:
    for headers in (bearer("garbage"), bearer("a.b.c")):
        response = await client.get("/userinfo", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
        assert response.json()["error"] == "invalid_token"


async def test_request_without_a_bearer_token_gets_the_bare_challenge(
    client: httpx.AsyncClient,
) -> None:
    """RFC 6750 §3.1: with no credentials (or another scheme's) the challenge names no error,
    and the body agrees with it, as the resource kit's and /api/v1's do."""
    for headers in ({}, {"Authorization": "Basic eDp5"}):
        response = await client.get("/userinfo", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {"error_description": "An access token is required."}


@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "bearer    "])
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_the_bearer_scheme_without_a_token_is_a_malformed_request(
    client: httpx.AsyncClient, authorization: str, method: str
) -> None:
    """RFC 6750 §3.1: naming the Bearer scheme and sending no token is a malformed request,
    400 invalid_request, not the bare challenge of a request that carried no credentials."""
    response = await client.request(method, "/userinfo", headers={"Authorization": authorization})
    assert response.status_code == 400, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')
    assert response.json()["error"] == "invalid_request"


async def test_id_token_is_not_an_access_token(client: httpx.AsyncClient, runtime: Runtime) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)

    response = await client.get("/userinfo", headers=bearer(tokens["id_token"]))

    assert response.status_code == 401


async def test_token_for_a_resource_server_is_refused(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, resources=[BILLING])
    tokens = await signed_in_tokens(client, runtime, app, resources=[BILLING])

    response = await client.get("/userinfo", headers=bearer(tokens["access_token"]))

    assert response.status_code == 401


async def test_client_credentials_token_has_no_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    token = await service_token(client, await service_client(runtime))

    response = await client.get("/userinfo", headers=bearer(token))

    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"


async def test_token_without_openid_is_403_with_an_insufficient_scope_challenge(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """RFC 6750 §3: a token that does not enable access gets a WWW-Authenticate challenge."""
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app, scope="profile")

    response = await client.get("/userinfo", headers=bearer(tokens["access_token"]))

    assert response.status_code == 403
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="insufficient_scope"')
    assert 'scope="openid"' in challenge
