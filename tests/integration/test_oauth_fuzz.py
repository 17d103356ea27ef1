"""Generated malformed requests to /authorize and /token: a spec error each, never a 500.
(The hosted forms' fuzz tests are test_hosted_forms_fuzz.py's.)

Hypothesis mixes valid values with garbage (control characters, huge and non-ASCII text,
repeated and unknown parameters) for every parameter of the two endpoints. Litestar's
synchronous test client runs the app on its own loop, so Hypothesis can drive it directly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from identity.app import create_app
from identity.audit.service import Actor
from identity.clients.service import ClientSpec, register_client
from identity.crypto import Encryptor
from identity.db.engine import Database
from identity.keys.service import create_key
from identity.settings import Settings
from tests.backends import TEST_SECRET_KEY
from tests.integration.fuzz_helpers import FUZZ, garbage
from tests.integration.oauth_helpers import REDIRECT_URI, pkce_pair

TOKEN_ERRORS = {
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_target",
}
AUTHORIZE_ERRORS = TOKEN_ERRORS - {"invalid_client", "invalid_grant", "unsupported_grant_type"} | {
    "unsupported_response_type",
    "access_denied",
    "login_required",
    "consent_required",
    "interaction_required",
    "account_selection_required",
    "request_not_supported",
    "request_uri_not_supported",
    "registration_not_supported",
}


def _param(valid: list[str]) -> st.SearchStrategy[str | None]:
    """Left out, valid, or garbage."""
    return st.one_of(st.none(), st.sampled_from(valid), garbage)


@pytest.fixture
def fuzzed(database: Settings) -> Iterator[tuple[TestClient[Any], str, str]]:
    async def register() -> dict[str, str]:
        db = Database.from_settings(database)
        try:
            async with db.transaction() as session:
                await create_key(session, Encryptor(TEST_SECRET_KEY, "signing-keys"), "RS256")
                return await register_client(
                    session,
                    Actor(),
                    ClientSpec(
                        name="Fuzzed",
                        redirect_uris=[REDIRECT_URI],
                        grant_types=["authorization_code", "refresh_token", "client_credentials"],
                        scope="openid profile email",
                    ),
                )
        finally:
            await db.dispose()

    shown = asyncio.run(register())
    with TestClient(create_app(database)) as http:
        yield http, shown["client_id"], shown["client_secret"]


@FUZZ
@given(
    data=st.data(),
    extra=st.dictionaries(st.text(min_size=1, max_size=10), garbage, max_size=3),
    repeat=st.booleans(),
)
def test_malformed_authorize_requests_get_spec_errors(
    fuzzed: tuple[TestClient[Any], str, str],
    data: st.DataObject,
    extra: dict[str, str],
    repeat: bool,
) -> None:
    http, client_id, _ = fuzzed
    _, challenge = pkce_pair()
    valid = {
        "client_id": [client_id],
        "redirect_uri": [REDIRECT_URI],
        "response_type": ["code", "token", "code id_token"],
        "scope": ["openid", "openid profile", "bogus"],
        "state": ["s"],
        "nonce": ["n"],
        "code_challenge": [challenge],
        "code_challenge_method": ["S256", "plain"],
        "prompt": ["none", "login", "consent", "select_account"],
        "max_age": ["0", "-1", "99999999999999999999"],
        "resource": ["https://billing.example/", "not a uri"],
        "ui_locales": ["es", "xx"],
        "request": ["eyJ.eyJ.sig"],
    }
    pairs = [(name, value) for name, values in valid.items()
             if (value := data.draw(_param(values), label=name)) is not None]  # fmt: skip
    pairs += list(extra.items())
    if repeat and pairs:
        pairs.append(pairs[0])
    response = http.get("/authorize?" + urlencode(pairs), follow_redirects=False)
    assert response.status_code != 500, response.text
    if response.status_code in (302, 303):
        location = response.headers["location"]
        if location.startswith(REDIRECT_URI):
            # Only to the registered URI, with a spec error code or, if all was well, a code;
            # in the fragment for a client that reads its answer there (response_type=token).
            parts = urlsplit(location)
            answer = parse_qs(parts.fragment or parts.query)
            assert answer.get("error", ["?"])[0] in AUTHORIZE_ERRORS or "code" in answer
        else:
            assert location.startswith(("/login", "/consent")), location
    else:
        # Before the redirect URI is proven, an error page, never a redirect elsewhere.
        assert response.status_code in (400, 200), response.status_code
        assert response.headers["content-type"].startswith("text/html")


@FUZZ
@given(
    data=st.data(),
    content_type=st.sampled_from(
        [
            "application/x-www-form-urlencoded",
            "application/json",
            "text/plain",
            "",
            "multipart/form-data",
        ]
    ),
    authenticate=st.sampled_from(["basic", "post", "wrong", "none"]),
)
def test_malformed_token_requests_get_spec_errors(
    fuzzed: tuple[TestClient[Any], str, str],
    data: st.DataObject,
    content_type: str,
    authenticate: str,
) -> None:
    http, client_id, secret = fuzzed
    valid = {
        "grant_type": [
            "authorization_code", "refresh_token", "client_credentials", "password", "",
            "urn:ietf:params:oauth:grant-type:device_code",
        ],
        "code": ["abc"],
        "redirect_uri": [REDIRECT_URI],
        "code_verifier": ["x" * 43],
        "refresh_token": ["abc"],
        "scope": ["openid", "bogus"],
        "resource": ["https://billing.example/", "not a uri"],
    }  # fmt: skip
    pairs = [(name, value) for name, values in valid.items()
             if (value := data.draw(_param(values), label=name)) is not None]  # fmt: skip
    headers = {"Content-Type": content_type} if content_type else {}
    auth = None
    if authenticate == "basic":
        auth = (client_id, secret)
    elif authenticate == "wrong":
        auth = (client_id, secret + "x")
    elif authenticate == "post":
        pairs += [("client_id", client_id), ("client_secret", secret)]
    response = http.post("/token", content=urlencode(pairs), headers=headers, auth=auth)
    assert response.status_code != 500, response.text
    if response.status_code == 200:
        assert "access_token" in response.json()
        return
    assert response.status_code in (400, 401), (response.status_code, response.text)
    assert response.json()["error"] in TOKEN_ERRORS
    assert response.headers["cache-control"] == "no-store"
