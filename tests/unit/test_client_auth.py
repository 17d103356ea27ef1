"""Parsing client credentials (RFC 6749 §2.3) and checking secrets, without the app."""

from __future__ import annotations

import base64

import pytest

from identity.clients.models import OAuthClient
from identity.crypto import digest
from identity.oauth.client_auth import (
    ClientAuthenticationFailed,
    ClientCredentials,
    check_client_secret,
    parse_basic,
    parse_client_credentials,
)
from identity.oauth.errors import InvalidRequestError


def basic(raw: str) -> str:
    return "Basic " + base64.b64encode(raw.encode()).decode()


def test_basic_is_form_decoded() -> None:
    assert parse_basic(basic("my%20app:s%3Ac+r%2Bt")) == ("my app", "s:c r+t")


def test_secret_may_contain_colons() -> None:
    assert parse_basic(basic("app:a:b")) == ("app", "a:b")


@pytest.mark.parametrize(
    "header", ["Basic", "Basic !!", "Bearer abc", basic("no-colon"), "Basic " + "w6k=", ""]
)
def test_malformed_basic_is_invalid_client(header: str) -> None:
    with pytest.raises(ClientAuthenticationFailed):
        parse_basic(header)


def test_method_is_told_by_where_the_secret_is() -> None:
    assert parse_client_credentials(basic("a:s"), {}).method == "client_secret_basic"
    post = parse_client_credentials(None, {"client_id": "a", "client_secret": "s"})
    assert post == ClientCredentials("a", "s", "client_secret_post")
    assert parse_client_credentials(None, {"client_id": "a"}).method == "none"


def test_two_methods_or_two_ids_is_invalid_request() -> None:
    with pytest.raises(InvalidRequestError):
        parse_client_credentials(basic("a:s"), {"client_secret": "s"})
    with pytest.raises(InvalidRequestError):
        parse_client_credentials(basic("a:s"), {"client_id": "b"})


def test_no_credentials_or_unprintable_id_is_invalid_client() -> None:
    with pytest.raises(ClientAuthenticationFailed):
        parse_client_credentials(None, {})
    with pytest.raises(ClientAuthenticationFailed):
        parse_client_credentials(None, {"client_id": "a" * 65})


def make_client(*, public: bool, secret: str | None = None) -> OAuthClient:
    return OAuthClient(
        client_id="app",
        name="App",
        is_public=public,
        secret_hash=digest(secret) if secret else None,
    )


def test_secret_is_checked_against_the_digest() -> None:
    client = make_client(public=False, secret="s3cret")
    assert check_client_secret(ClientCredentials("app", "s3cret", "client_secret_post"), client)
    with pytest.raises(ClientAuthenticationFailed):
        check_client_secret(ClientCredentials("app", "wrong", "client_secret_post"), client)
    with pytest.raises(ClientAuthenticationFailed):
        check_client_secret(ClientCredentials("app", None, "none"), client)


def test_public_client_authenticates_by_name_only() -> None:
    client = make_client(public=True)
    assert check_client_secret(ClientCredentials("app", None, "none"), client) is client
    with pytest.raises(ClientAuthenticationFailed):
        check_client_secret(ClientCredentials("app", "x", "client_secret_basic"), client)


def test_unknown_client_fails_like_a_wrong_secret() -> None:
    with pytest.raises(ClientAuthenticationFailed) as unknown:
        check_client_secret(ClientCredentials("x", "s", "client_secret_basic"), None)
    status, body, headers = unknown.value()
    assert status == 401
    assert body == {"error": "invalid_client", "error_description": "Client authentication failed."}
    assert dict(headers)["WWW-Authenticate"].startswith("Basic ")
