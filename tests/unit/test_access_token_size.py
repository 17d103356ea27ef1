"""The caps on what an access token lists keep one for the client itself (no resource)
within what services accept, at the largest the caps allow."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from identity.clients.service import MAX_SCOPE
from identity.keys.service import SUPPORTED_ALGS, KeySet, generate_key
from identity.oauth.tokens import MAX_ACCESS_TOKEN_BYTES, mint_access_token
from identity.permissions.service import MAX_CATALOGUE


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
