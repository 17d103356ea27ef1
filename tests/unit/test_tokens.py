"""Minting and verifying tokens (RFC 9068 access tokens, ID tokens), without the app."""

from __future__ import annotations

import dataclasses
import functools
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from identity.accounts.models import User
from identity.keys.service import KeySet, generate_key
from identity.oauth.errors import InvalidTokenError
from identity.oauth.tokens import mint_access_token, mint_id_token, verify_access_token

ISSUER = "https://id.example.com"
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@functools.cache
def keyset(alg: str) -> KeySet:
    key = generate_key(alg)
    return KeySet(
        current=key,
        current_alg=alg,
        by_kid={key.kid: key},
        public_jwks={"keys": [key.as_dict(private=False)]},
    )


def access(alg: str = "RS256", **overrides: object) -> str:
    options: dict[str, object] = {
        "issuer": ISSUER,
        "subject": "user-1",
        "audience": "app",
        "client_id": "app",
        "scope": "openid email",
        "now": NOW,
        "expires_at": NOW + timedelta(seconds=600),
        "auth_time": NOW - timedelta(minutes=1),
    } | overrides
    return mint_access_token(keyset(alg), **options).token  # type: ignore[arg-type]


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_access_token_follows_rfc_9068(alg: str) -> None:
    token = jwt.decode(access(alg), keyset(alg).current, algorithms=[alg])

    assert token.header == {"typ": "at+jwt", "alg": alg, "kid": keyset(alg).current.kid}
    claims = token.claims
    assert claims["iss"] == ISSUER and claims["sub"] == "user-1" and claims["aud"] == "app"
    assert claims["exp"] - claims["iat"] == 600
    assert claims["client_id"] == "app" and claims["scope"] == "openid email"
    assert claims["auth_time"] == int((NOW - timedelta(minutes=1)).timestamp())
    assert len(claims["jti"]) == 32
    assert isinstance(keyset(alg).current, RSAKey if alg == "RS256" else ECKey)


def test_verification_accepts_a_live_token_and_refuses_expired_or_foreign_ones() -> None:
    assert verify_access_token(keyset("RS256"), access(), issuer=ISSUER, now=NOW)["sub"] == "user-1"
    later = NOW + timedelta(seconds=601)
    for token, issuer, now in (
        (access(), ISSUER, later),
        (access(), "https://other.example.com", NOW),
        (access("ES256"), ISSUER, NOW),  # signed by a key not in this set
        (access()[:-4] + "AAAA", ISSUER, NOW),
        ("not-a-jwt", ISSUER, NOW),
    ):
        with pytest.raises(InvalidTokenError):
            verify_access_token(keyset("RS256"), token, issuer=issuer, now=now)


def test_a_token_verified_before_is_still_checked_for_expiry_and_its_key() -> None:
    token = access()
    claims = verify_access_token(keyset("RS256"), token, issuer=ISSUER, now=NOW)
    claims["sub"] = "changed by a caller"
    again = verify_access_token(keyset("RS256"), token, issuer=ISSUER, now=NOW)
    assert again["sub"] == "user-1"
    with pytest.raises(InvalidTokenError):
        verify_access_token(keyset("RS256"), token, issuer=ISSUER, now=NOW + timedelta(seconds=600))
    with pytest.raises(InvalidTokenError):
        verify_access_token(keyset("RS256"), token, issuer=ISSUER, now=NOW - timedelta(seconds=31))
    retired = dataclasses.replace(keyset("RS256"), by_kid={})
    with pytest.raises(InvalidTokenError):
        verify_access_token(retired, token, issuer=ISSUER, now=NOW)


def test_a_token_minted_on_a_machine_whose_clock_is_a_little_ahead_verifies() -> None:
    # Processes on several machines mint and verify each other's tokens, often at once
    # (userinfo right after the token endpoint): an ``iat`` a moment ahead of this clock,
    # signed by us, got 401 at userinfo and /api/v1 and "not active" from introspection.
    token = access(now=NOW + timedelta(seconds=1), expires_at=NOW + timedelta(seconds=601))
    assert verify_access_token(keyset("RS256"), token, issuer=ISSUER, now=NOW)["sub"] == "user-1"
    far_ahead = access(now=NOW + timedelta(seconds=31), expires_at=NOW + timedelta(seconds=631))
    with pytest.raises(InvalidTokenError):
        verify_access_token(keyset("RS256"), far_ahead, issuer=ISSUER, now=NOW)


def test_id_token_is_not_accepted_as_an_access_token() -> None:
    user = User(id=uuid.uuid4(), email="a@example.com", name="A", email_verified=True)
    user.updated_at = NOW
    id_token = mint_id_token(
        keyset("RS256"),
        issuer=ISSUER,
        user=user,
        client_id="app",
        scope=["openid"],
        now=NOW,
        ttl=3600,
        auth_time=NOW,
        amr=["pwd"],
        access_token="at",
    )
    with pytest.raises(InvalidTokenError):
        verify_access_token(keyset("RS256"), id_token, issuer=ISSUER, now=NOW)


def test_id_token_claims_by_scope_with_at_hash_and_nonce() -> None:
    user = User(id=uuid.uuid4(), email="a@example.com", name="Ada", email_verified=False)
    user.updated_at = NOW
    id_token = mint_id_token(
        keyset("ES256"),
        issuer=ISSUER,
        user=user,
        client_id="app",
        scope=["openid", "email"],
        now=NOW,
        ttl=3600,
        auth_time=NOW,
        amr=["pwd", "otp"],
        access_token="the-access-token",
        nonce="n1",
    )
    claims = jwt.decode(id_token, keyset("ES256").current).claims

    assert claims["sub"] == str(user.id) and claims["aud"] == "app" and claims["iss"] == ISSUER
    assert claims["email"] == "a@example.com" and claims["email_verified"] is False
    assert "name" not in claims
    assert claims["nonce"] == "n1" and claims["amr"] == ["pwd", "otp"]
    assert claims["at_hash"] == create_half_hash("the-access-token", "ES256").decode()
