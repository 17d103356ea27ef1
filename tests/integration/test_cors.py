"""CORS, as node-oidc-provider does it by default: discovery and the JWKS are open to every
origin; the token, revocation and userinfo endpoints answer any preflight, and then serve a
browser app only from the origin of one of its client's redirect URIs (at the token and
revocation endpoints, only a public client's)."""

from __future__ import annotations

import uuid

import httpx
import pytest

from identity.runtime import Runtime
from tests.integration.oauth_helpers import (
    REDIRECT_URI,
    RegisteredClient,
    fresh_code,
    is_active,
    make_client,
    signed_in_tokens,
)

APP_ORIGIN = "https://app.example.com"  # the origin of REDIRECT_URI
OTHER_ORIGIN = "https://elsewhere.example.net"
OPEN_PATHS = ("/.well-known/openid-configuration", "/jwks.json")
CLIENT_BASED = {"/token": "POST", "/revoke": "POST", "/userinfo": "GET, POST"}
# Litestar serves "/token/" as "/token": the same CORS must come with it.
OPEN_PATHS_AS_ROUTED = (*OPEN_PATHS, *(f"{path}/" for path in OPEN_PATHS))
CLIENT_BASED_AS_ROUTED = [
    (f"{path}{slash}", methods) for path, methods in CLIENT_BASED.items() for slash in ("", "/")
]


def preflight(method: str, origin: str = OTHER_ORIGIN, headers: str = "") -> dict[str, str]:
    asked = {"Origin": origin, "Access-Control-Request-Method": method}
    return asked | ({"Access-Control-Request-Headers": headers} if headers else {})


def bearer(token: str, origin: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} | ({"Origin": origin} if origin else {})


def vary(response: httpx.Response) -> set[str]:
    return {v.strip().lower() for v in response.headers.get("vary", "").split(",") if v.strip()}


def assert_allowed_answer(response: httpx.Response, origin: str) -> None:
    assert response.headers["access-control-allow-origin"] == origin
    assert "origin" in vary(response)
    exposed = response.headers["access-control-expose-headers"].lower()
    assert "www-authenticate" in exposed
    assert "access-control-allow-credentials" not in response.headers


def assert_refused(response: httpx.Response, client: RegisteredClient, origin: str) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"
    description = response.json()["error_description"]
    assert origin in description and client.client_id in description
    assert "access-control-allow-origin" not in response.headers


# --- open endpoints ---------------------------------------------------------------------


@pytest.mark.parametrize("path", OPEN_PATHS)
async def test_open_documents_are_readable_from_any_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    from_a_page = await client.get(path, headers={"Origin": OTHER_ORIGIN})
    without_origin = await client.get(path)
    head = await client.head(path, headers={"Origin": OTHER_ORIGIN})
    revalidated = await client.get(
        path, headers={"Origin": OTHER_ORIGIN, "If-None-Match": from_a_page.headers["etag"]}
    )

    for response in (from_a_page, without_origin, head, revalidated):
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers
    assert revalidated.status_code == 304


@pytest.mark.parametrize("path", OPEN_PATHS_AS_ROUTED)
async def test_open_documents_answer_a_preflight(client: httpx.AsyncClient, path: str) -> None:
    response = await client.options(path, headers=preflight("GET", headers="if-none-match"))

    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.headers["access-control-allow-methods"] == "GET"
    assert response.headers["access-control-max-age"] == "3600"
    assert "if-none-match" in response.headers["access-control-allow-headers"].lower()


# --- preflights at the client-based endpoints -------------------------------------------


@pytest.mark.parametrize(("path", "methods"), CLIENT_BASED_AS_ROUTED)
async def test_client_based_endpoints_answer_a_preflight_from_any_origin(
    client: httpx.AsyncClient, path: str, methods: str
) -> None:
    """A preflight carries no body and no credentials: the client cannot be known yet."""
    response = await client.options(
        path, headers=preflight("POST", headers="authorization,content-type")
    )

    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == OTHER_ORIGIN
    assert "origin" in vary(response)
    assert response.headers["access-control-allow-methods"] == methods
    allowed_headers = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert {"authorization", "content-type"} <= allowed_headers
    assert "dpop" not in allowed_headers
    assert response.headers["access-control-max-age"] == "3600"
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("path", ["/introspect", "/authorize", "/login", "/api/v1/users"])
async def test_other_endpoints_never_allow_a_browser_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    answered = await client.options(path, headers=preflight("POST"))
    posted = await client.post(path, headers={"Origin": OTHER_ORIGIN})

    for response in (answered, posted):
        assert not any(h.startswith("access-control-") for h in response.headers)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/users", f"/api/v1/accounts/{uuid.UUID(int=1)}/members", "/api/v1/authz/check"],
)
@pytest.mark.parametrize("asked", [{}, preflight("POST")], ids=["plain", "preflight"])
async def test_the_management_api_answers_options_without_a_token_and_without_cors(
    client: httpx.AsyncClient, path: str, asked: dict[str, str]
) -> None:
    """A browser sends a preflight without credentials, and a client asking which methods a
    route takes has no reason to send one: OPTIONS was 401. It gets Litestar's answer for
    the route, 204 with Allow, and no CORS header: the API is for servers.

    Allow is not compared whole: Litestar 2.25 keeps the OPTIONS handler of a path's first
    handler when it adds the others (Router.add_route_handler), so it names only that one's
    methods ("OPTIONS, POST" at /api/v1/users)."""
    answered = await client.options(path, headers=asked)

    assert answered.status_code == 204, answered.text
    assert {"OPTIONS", "POST"} <= set(answered.headers["allow"].split(", "))
    assert "www-authenticate" not in answered.headers
    assert not any(h.startswith("access-control-") for h in answered.headers)
    # Only OPTIONS: every other method still needs the token.
    assert (await client.get(path)).status_code in (401, 405)


# --- token endpoint ---------------------------------------------------------------------


async def test_public_client_exchanges_a_code_from_its_redirect_uris_origin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))

    response = await fresh.redeem(client, origin=APP_ORIGIN)

    assert response.status_code == 200, response.text
    assert_allowed_answer(response, APP_ORIGIN)


async def test_public_client_is_refused_from_another_origin_and_its_code_kept(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))

    refused = await fresh.redeem(client, origin=OTHER_ORIGIN)
    later = await fresh.redeem(client)

    assert_refused(refused, fresh.client, OTHER_ORIGIN)
    # Refused before the grant ran: the code was not spent.
    assert later.status_code == 200, later.text
    assert "access-control-allow-origin" not in later.headers


async def test_an_opaque_origin_never_matches(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """A sandboxed page or a file sends ``Origin: null``; so would a custom-scheme redirect
    URI's origin serialise, in a browser's URL parser."""
    app = await make_client(runtime, public=True, redirect_uris=["com.example.app:/callback"])
    fresh = await fresh_code(runtime, app)

    response = await client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": fresh.code,
            "redirect_uri": "com.example.app:/callback",
            "code_verifier": fresh.verifier,
            "client_id": app.client_id,
        },
        headers={"Origin": "null"},
    )

    assert_refused(response, app, "null")


async def test_a_default_port_in_the_redirect_uri_is_the_same_origin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    uri = "https://APP.example.com:443/callback"
    app = await make_client(runtime, public=True, redirect_uris=[uri])
    fresh = await fresh_code(runtime, app, redirect_uri=uri)

    response = await fresh.redeem(client, redirect_uri=uri, origin=APP_ORIGIN)

    assert response.status_code == 200, response.text
    assert_allowed_answer(response, APP_ORIGIN)


async def test_confidential_client_is_refused_from_a_browser_origin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Its secret has no place in a browser; node-oidc-provider refuses it too."""
    fresh = await fresh_code(runtime)

    refused = await fresh.redeem(client, origin=APP_ORIGIN)
    later = await fresh.redeem(client)

    assert_refused(refused, fresh.client, APP_ORIGIN)
    assert later.status_code == 200, later.text


@pytest.mark.parametrize("path", ["/token", "/token/"])
async def test_an_error_before_the_client_is_known_is_readable(
    client: httpx.AsyncClient, path: str
) -> None:
    """The page learns why (an unknown client, a malformed request), as from any server."""
    response = await client.post(
        path,
        data={"grant_type": "authorization_code", "client_id": "nobody"},
        headers={"Origin": OTHER_ORIGIN},
    )

    assert response.status_code == 401
    assert_allowed_answer(response, OTHER_ORIGIN)


async def test_a_grant_error_of_an_allowed_client_is_readable(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    fresh = await fresh_code(runtime, await make_client(runtime, public=True))
    assert (await fresh.redeem(client)).status_code == 200

    again = await fresh.redeem(client, origin=APP_ORIGIN)

    assert again.json()["error"] == "invalid_grant"
    assert_allowed_answer(again, APP_ORIGIN)


async def test_requests_without_an_origin_get_no_cors_headers(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)

    info = await client.get("/userinfo", headers=bearer(tokens["access_token"]))
    revoked = await client.post(
        "/revoke", data={"token": tokens["access_token"]}, headers=app.basic
    )

    for response in (info, revoked):
        assert response.status_code == 200
        assert not any(h.startswith("access-control-") for h in response.headers)


# --- revocation -------------------------------------------------------------------------


async def revoke_from(
    http: httpx.AsyncClient, app: RegisteredClient, token: str, origin: str
) -> httpx.Response:
    data = {"token": token, "client_id": app.client_id}
    return await http.post("/revoke", data=data, headers={"Origin": origin})


async def test_public_client_revokes_from_its_origin_and_not_from_another(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, public=True)
    tokens = await signed_in_tokens(client, runtime, app)
    service = await make_client(runtime, name="Resource server")

    refused = await revoke_from(client, app, tokens["access_token"], OTHER_ORIGIN)
    still_active = await is_active(client, service, tokens["access_token"])
    allowed = await revoke_from(client, app, tokens["access_token"], APP_ORIGIN)

    assert_refused(refused, app, OTHER_ORIGIN)
    assert still_active
    assert allowed.status_code == 200
    assert_allowed_answer(allowed, APP_ORIGIN)
    assert not await is_active(client, service, tokens["access_token"])


async def test_confidential_client_cannot_revoke_from_a_browser_origin(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    tokens = await signed_in_tokens(client, runtime, app)

    response = await client.post(
        "/revoke",
        data={"token": tokens["refresh_token"]},
        headers=app.basic | {"Origin": APP_ORIGIN},
    )

    assert_refused(response, app, APP_ORIGIN)


# --- userinfo ---------------------------------------------------------------------------


@pytest.mark.parametrize("public", [True, False])
async def test_userinfo_serves_the_tokens_clients_origin(
    client: httpx.AsyncClient, runtime: Runtime, public: bool
) -> None:
    """At userinfo the bearer token is the credential, so any client's token serves its own
    origin."""
    app = await make_client(runtime, public=public)
    tokens = await signed_in_tokens(client, runtime, app)

    by_get = await client.get("/userinfo", headers=bearer(tokens["access_token"], APP_ORIGIN))
    by_post = await client.post("/userinfo", headers=bearer(tokens["access_token"], APP_ORIGIN))

    for response in (by_get, by_post):
        assert response.status_code == 200, response.text
        assert_allowed_answer(response, APP_ORIGIN)


async def test_userinfo_refuses_another_origin_with_a_bearer_challenge(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime, public=True)
    tokens = await signed_in_tokens(client, runtime, app)

    response = await client.get("/userinfo", headers=bearer(tokens["access_token"], OTHER_ORIGIN))

    assert_refused(response, app, OTHER_ORIGIN)
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


async def test_userinfo_bearer_errors_are_readable_by_the_page(client: httpx.AsyncClient) -> None:
    """A browser app must see ``invalid_token`` to know its token expired and refresh it."""
    response = await client.get("/userinfo", headers=bearer("a.b.c", OTHER_ORIGIN))

    assert response.status_code == 401
    assert_allowed_answer(response, OTHER_ORIGIN)
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_redirect_uri_origin_is_exact(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """Scheme, host and port: a sibling host, plain http or another port is another origin."""
    app = await make_client(runtime, public=True)
    tokens = await signed_in_tokens(client, runtime, app)

    for origin in (
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://evil.app.example.com",
        REDIRECT_URI,
        APP_ORIGIN + "/",
    ):
        response = await client.get("/userinfo", headers=bearer(tokens["access_token"], origin))
        assert response.status_code == 400, origin
        assert "access-control-allow-origin" not in response.headers
