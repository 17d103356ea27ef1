"""Tokens at the largest their caps allow still fit where they are sent: an access token for
the client itself (no resource) in an ``Authorization`` header, an ID token in an
``id_token_hint``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.accounts.models import User
from identity.clients.service import MAX_SCOPE
from identity.keys.service import SUPPORTED_ALGS, KeySet, generate_key
from identity.oauth.authorize import MAX_HINT_LENGTH, MAX_VALUE_LENGTH, parse
from identity.oauth.tokens import MAX_ACCESS_TOKEN_BYTES, mint_access_token, mint_id_token
from identity.permissions.catalogue import MAX_CATALOGUE


def _largest_catalogue() -> list[str]:
    names: list[str] = []
    while len(json.dumps([*names, f"svc:{len(names):05d}"], separators=(",", ":"))) <= (
        MAX_CATALOGUE
    ):
        names.append(f"svc:{len(names):05d}")
    return names


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_largest_token_for_the_client_itself_fits_in_a_header(alg: str) -> None:
    key = generate_key(alg)
    now = datetime.now(UTC)
    client_id = "c" * 64  # the column's longest; generated ids are shorter
    scope = " ".join(["s" * 100] * 10 + ["t" * 14])
    assert len(scope) == MAX_SCOPE

    issued = mint_access_token(
        KeySet(key, alg, {key.kid: key}, {}),
        issuer="https://identity.example.com/auth",
        subject=str(uuid.uuid4()),
        audience=client_id,
        client_id=client_id,
        scope=scope,
        now=now,
        expires_at=now + timedelta(minutes=10),
        auth_time=now,
        account_claims={
            "account_id": str(uuid.uuid4()),
            "permissions": _largest_catalogue(),
            "account_owner": True,
        },
    )

    assert len(issued.token) <= MAX_ACCESS_TOKEN_BYTES


def _longest_nonce_of(character: str) -> str:
    """The longest run of ``character`` /authorize takes as a nonce."""
    count = MAX_VALUE_LENGTH
    while "nonce" in parse([("nonce", character * count)]).too_long:
        count -= 1
    return character * count


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
# Four bytes in UTF-8; a quote and a backslash, two each as JSON escapes them in the token.
@pytest.mark.parametrize("nonce_character", ["\U0001f600", '"', "\\"])
def test_largest_id_token_still_fits_in_an_id_token_hint(alg: str, nonce_character: str) -> None:
    key = generate_key(alg)
    now = datetime.now(UTC)
    widest = "\U0001f600"  # four bytes in UTF-8, as the token carries it
    user = User(
        id=uuid.uuid4(),
        name=widest * 200,  # the longest name a user may have
        email=widest * 308 + "@example.com",  # the longest email, 320 characters
        email_verified=True,
        locale="es-419",
        updated_at=now,
    )

    token = mint_id_token(
        KeySet(key, alg, {key.kid: key}, {}),
        issuer="https://identity.example.com/auth",
        user=user,
        client_id="c" * 64,
        scope=["openid", "profile", "email"],
        now=now,
        ttl=3600,
        auth_time=now,
        amr=["pwd", "otp"],
        access_token="a" * MAX_ACCESS_TOKEN_BYTES,
        nonce=_longest_nonce_of(nonce_character),
        sid=str(uuid.uuid4()),
    )

    assert len(token) <= MAX_HINT_LENGTH
