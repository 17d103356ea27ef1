"""Access-token validation against a real local issuer serving discovery and JWKS."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import pytest

from identity.resource import (
    BearerTokenError,
    ResourceServer,
    ResourceServerConfig,
    TokenValidator,
    bearer_token,
)
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    LocalIssuer,
    ec_key,
    issuer_fixture,  # noqa: F401 - the issuer fixture
    rsa_key,
    unsigned,
)


@pytest.fixture
async def server(issuer: LocalIssuer) -> AsyncIterator[ResourceServer]:
    async with ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE)) as kit:
        yield kit


async def refusal(server: ResourceServer, token: str) -> BearerTokenError:
    with pytest.raises(BearerTokenError) as caught:
        await server.validate(token)
    assert caught.value.error == "invalid_token"
    assert caught.value.status_code == 401
    return caught.value


async def test_a_valid_token_yields_its_claims(issuer: LocalIssuer, server: ResourceServer) -> None:
    token = await server.validate(issuer.token(sub="user-1", scope="openid profile"))
    assert token.subject == "user-1"
    assert token.client_id == "portal"
    assert token.scopes == {"openid", "profile"}
    assert token.account_id == ACCOUNT_ID
    assert token.permissions == {"invoices", "tickets"}
    assert token.account_owner is False


async def test_an_es256_token_is_accepted(issuer: LocalIssuer, server: ResourceServer) -> None:
    issuer.published = [rsa_key(0), ec_key(0)]
    token = await server.validate(issuer.token(ec_key(0), sub="user-2"))
    assert token.subject == "user-2"


async def test_a_token_without_account_claims_is_valid_but_has_no_account(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    token = await server.validate(
        issuer.token(account_id=None, permissions=None, account_owner=None)
    )
    assert token.account_id is None
    assert token.permissions == frozenset()


async def test_an_expired_token_is_refused(issuer: LocalIssuer, server: ResourceServer) -> None:
    now = int(time.time())
    error = await refusal(server, issuer.token(iat=now - 700, exp=now - 100))
    assert error.www_authenticate == (
        'Bearer error="invalid_token", error_description="The access token has expired."'
    )


async def test_a_token_expired_within_the_clock_skew_is_accepted(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    now = int(time.time())
    await server.validate(issuer.token(iat=now - 600, exp=now - 10))


async def test_a_token_not_yet_valid_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    error = await refusal(server, issuer.token(nbf=int(time.time()) + 300))
    assert error.description == "The access token is not valid yet."


async def test_a_token_issued_in_the_future_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    await refusal(server, issuer.token(iat=int(time.time()) + 300))


async def test_a_tampered_payload_is_refused(issuer: LocalIssuer, server: ResourceServer) -> None:
    header, _, signature = issuer.token().split(".")
    forged_claims = unsigned({}, issuer.claims(permissions=["invoices", "admin"])).split(".")[1]
    error = await refusal(server, f"{header}.{forged_claims}.{signature}")
    assert error.description == "The access token's signature is invalid."


async def test_a_token_signed_by_another_key_under_a_published_kid_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    forged = issuer.token(rsa_key(1), header={"kid": rsa_key(0).kid})
    await refusal(server, forged)


async def test_a_token_signed_by_an_unpublished_key_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    error = await refusal(server, issuer.token(rsa_key(1)))
    assert error.description == "The access token's signing key is unknown."


async def test_an_es256_header_on_an_rsa_kid_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    await refusal(server, issuer.token(ec_key(0), header={"kid": rsa_key(0).kid}))


async def test_a_token_from_another_issuer_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    error = await refusal(server, issuer.token(iss="https://evil.example"))
    assert error.description == "The access token comes from another issuer."


async def test_a_token_for_another_audience_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    error = await refusal(server, issuer.token(aud="https://tickets.example.test"))
    assert error.description == "The access token is not meant for this service."


async def test_a_token_naming_our_audience_among_others_is_accepted(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    await server.validate(issuer.token(aud=["https://tickets.example.test", AUDIENCE]))


async def test_without_a_configured_audience_any_audience_is_accepted(
    issuer: LocalIssuer,
) -> None:
    async with ResourceServer(ResourceServerConfig(issuer.issuer)) as kit:
        await kit.validate(issuer.token(aud="portal"))


def _audience_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.levelno == logging.WARNING and "audience" in record.getMessage()
    ]


async def test_a_kit_without_an_audience_warns_once_that_any_audience_passes(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    # Left unset, a token any client got for any other service was accepted here, silently.
    with caplog.at_level(logging.WARNING, logger="identity.resource"):
        async with ResourceServer(ResourceServerConfig(issuer.issuer)) as kit:
            await kit.validate(issuer.token(aud="portal"))
            await kit.validate(issuer.token(aud="https://tickets.example.test"))
    assert len(_audience_warnings(caplog)) == 1


async def test_a_kit_with_an_audience_does_not_warn(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="identity.resource"):
        async with ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE)) as kit:
            await kit.validate(issuer.token())
    assert _audience_warnings(caplog) == []


async def test_an_alg_none_token_is_refused_without_fetching_keys(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    token = unsigned({"alg": "none", "typ": "at+jwt", "kid": rsa_key(0).kid}, issuer.claims())
    error = await refusal(server, token)
    assert error.description == "The access token's signing algorithm is not accepted."
    assert issuer.jwks_fetches() == 0


@pytest.mark.parametrize("alg", [["RS256"], {"RS256": True}])
async def test_a_non_string_alg_is_refused_not_raised(
    issuer: LocalIssuer, server: ResourceServer, alg: object
) -> None:
    """A forger controls the header: an ``alg`` that is not a string is junk, not a crash."""
    token = unsigned({"alg": alg, "typ": "at+jwt", "kid": rsa_key(0).kid}, issuer.claims())
    error = await refusal(server, token + "c2ln")
    assert error.description == "The access token's signing algorithm is not accepted."


async def test_hs256_token_signed_with_the_public_key_is_refused(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    await server.validate(issuer.token())  # the keys are loaded: only the algorithm stops it
    error = await refusal(server, issuer.hs256_with_public_key(rsa_key(0)))
    assert error.description == "The access token's signing algorithm is not accepted."


def test_hmac_algorithms_cannot_be_allowed(issuer: LocalIssuer) -> None:
    with pytest.raises(ValueError, match="algorithms"):
        TokenValidator(
            ResourceServer(ResourceServerConfig(issuer.issuer)).keys,
            issuer=issuer.issuer,
            algorithms=("RS256", "HS256"),
        )


async def test_a_token_without_typ_is_refused(issuer: LocalIssuer, server: ResourceServer) -> None:
    error = await refusal(server, issuer.token(header={"typ": None}))
    assert error.description == "The token is not an access token."


async def test_an_id_token_typ_is_refused(issuer: LocalIssuer, server: ResourceServer) -> None:
    await refusal(server, issuer.token(header={"typ": "JWT"}))


@pytest.mark.parametrize("typ", ["AT+JWT", "application/at+jwt", "Application/AT+JWT"])
async def test_typ_is_matched_case_insensitively_with_or_without_the_media_prefix(
    issuer: LocalIssuer, server: ResourceServer, typ: str
) -> None:
    await server.validate(issuer.token(header={"typ": typ}))


async def test_an_oversized_token_is_refused_before_parsing(
    issuer: LocalIssuer, server: ResourceServer
) -> None:
    token = issuer.token(permissions=[f"permission-{n}" for n in range(1000)])
    assert len(token) > 8192
    error = await refusal(server, token)
    assert error.description == "The access token is too large."
    assert issuer.jwks_fetches() == 0


@pytest.mark.parametrize(
    "garbage",
    ["", "abc", "a.b", "a.b.c", "!!!.???.***", "e30.e30.", "W10.e30.x", "a.b.c.d.e", "tökén.x.y"],
)
async def test_garbage_is_refused_as_an_invalid_token(server: ResourceServer, garbage: str) -> None:
    await refusal(server, garbage)


@pytest.mark.parametrize("claim", ["iss", "sub", "aud", "exp", "iat", "jti", "client_id"])
async def test_a_token_missing_a_required_claim_is_refused(
    issuer: LocalIssuer, server: ResourceServer, claim: str
) -> None:
    await refusal(server, issuer.token(**{claim: None}))


@pytest.mark.parametrize(
    "claims",
    [
        {"permissions": "invoices"},
        {"permissions": [1, 2]},
        {"account_id": "not-a-uuid"},
        {"account_owner": "yes"},
        {"scope": ["openid"]},
    ],
)
async def test_malformed_account_claims_are_refused(
    issuer: LocalIssuer, server: ResourceServer, claims: dict[str, object]
) -> None:
    error = await refusal(server, issuer.token(**claims))
    assert error.description == "The access token has malformed claims."


@pytest.mark.parametrize("header", [None, "", "Basic dXNlcjpwYXNz"])
def test_a_request_without_a_bearer_token_gets_a_bare_challenge(header: str | None) -> None:
    with pytest.raises(BearerTokenError) as caught:
        bearer_token(header)
    assert caught.value.error is None
    assert caught.value.www_authenticate == "Bearer"


@pytest.mark.parametrize("header", ["Bearer", "Bearer  ", "bearer"])
def test_the_bearer_scheme_without_a_token_is_an_invalid_request(header: str) -> None:
    # RFC 6750 §3.1: a malformed request is 400 invalid_request, as the issuer's own
    # userinfo and /api/v1 answer it; there is no token to call invalid.
    with pytest.raises(BearerTokenError) as caught:
        bearer_token(header)
    assert (caught.value.error, caught.value.status_code) == ("invalid_request", 400)
    assert caught.value.www_authenticate == (
        'Bearer error="invalid_request", '
        'error_description="The Authorization header names Bearer but no token."'
    )


def test_a_token_with_a_space_in_it_is_an_invalid_token() -> None:
    with pytest.raises(BearerTokenError) as caught:
        bearer_token("Bearer one two")
    assert (caught.value.error, caught.value.status_code) == ("invalid_token", 401)


def test_the_bearer_scheme_is_case_insensitive() -> None:
    assert bearer_token("bearer abc.def.ghi") == "abc.def.ghi"
