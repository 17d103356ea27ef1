"""``id_token_hint`` (OIDC Core §3.1.2.1, RP-Initiated Logout §2): an ID token we issued.

Its signature must be ours (any key still published), its issuer us, and its type not an
access token's (both are signed with the same keys). Its expiry does not matter: a hint
often comes after the token expired.
"""

from __future__ import annotations

from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key

from identity.keys.service import SUPPORTED_ALGS, KeySet
from identity.oauth.errors import InvalidRequestError

_ID_TOKEN_TYPES = (None, "JWT")


def verify_id_token_hint(token: str, keyset: KeySet, issuer: str) -> dict[str, Any]:
    """The hint's claims; ``invalid_request`` when it is not an ID token issued here."""
    rejected = InvalidRequestError("The id_token_hint is not an ID token issued here.")

    def key_for(guest: GuestProtocol) -> Key:
        key = keyset.by_kid.get(str(guest.headers().get("kid")))
        if key is None:
            raise rejected
        return key

    try:
        decoded = jwt.decode(token, key_for, algorithms=SUPPORTED_ALGS)
    except (JoseError, ValueError, TypeError):
        raise rejected from None
    claims = decoded.claims
    if (
        decoded.header.get("typ") not in _ID_TOKEN_TYPES
        or claims.get("iss") != issuer
        or not isinstance(claims.get("sub"), str)
    ):
        raise rejected
    return claims
