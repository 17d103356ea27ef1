"""The discovery document: every endpoint and capability, truthfully; cached with an ETag."""

from __future__ import annotations

import httpx

EXPECTED_ENDPOINTS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/token",
    "userinfo_endpoint": "/userinfo",
    "jwks_uri": "/jwks.json",
    "end_session_endpoint": "/logout",
    "introspection_endpoint": "/introspect",
    "revocation_endpoint": "/revoke",
}


async def test_discovery_advertises_every_endpoint_under_the_issuer(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/.well-known/openid-configuration")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["issuer"] == "http://testserver.local"
    for name, path in EXPECTED_ENDPOINTS.items():
        assert document[name] == "http://testserver.local" + path


async def test_discovery_states_our_capabilities(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()

    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["response_types_supported"] == ["code"]
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    assert set(document["grant_types_supported"]) == {
        "authorization_code",
        "refresh_token",
        "client_credentials",
    }
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "none",
    }
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert document["scopes_supported"] == [
        "openid",
        "profile",
        "email",
        "identity:accounts",
        "identity:admin",
        "identity:authz",
    ]
    assert document["ui_locales_supported"] == ["en", "es"]
    assert document["subject_types_supported"] == ["public"]


async def test_discovery_names_sid_but_no_front_or_back_channel_logout(
    client: httpx.AsyncClient,
) -> None:
    """ID tokens carry ``sid`` for RP-initiated logout; nothing is sent to apps at sign-out,
    so neither channel (nor its session support) may be claimed."""
    document = (await client.get("/.well-known/openid-configuration")).json()

    assert "sid" in document["claims_supported"]
    assert not {
        "frontchannel_logout_supported",
        "frontchannel_logout_session_supported",
        "backchannel_logout_supported",
        "backchannel_logout_session_supported",
    } & set(document)


async def test_discovery_answers_304_to_a_matching_etag(client: httpx.AsyncClient) -> None:
    first = await client.get("/.well-known/openid-configuration")
    etag = first.headers["etag"]
    assert "max-age" in first.headers["cache-control"]

    again = await client.get("/.well-known/openid-configuration", headers={"If-None-Match": etag})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag


async def test_discovery_takes_head_and_refuses_other_methods(client: httpx.AsyncClient) -> None:
    head = await client.head("/.well-known/openid-configuration")
    post = await client.post("/.well-known/openid-configuration")

    assert head.status_code == 200 and head.content == b""
    assert post.status_code == 405
    assert "GET" in post.headers["allow"]
