"""``id_token_hint`` (OIDC Core §3.1.2.1, RP-Initiated Logout §2): an ID token we issued.

Its signature must be ours (any key still published), its issuer us, its type not an access
token's (both are signed with the same keys), and it must name the client it was issued to.
Its expiry does not matter: a hint often comes after the token expired.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key

from identity.keys.service import SUPPORTED_ALGS, KeySet
from identity.oauth.errors import InvalidRequestError

_ID_TOKEN_TYPES = (None, "JWT")


def issued_to(claims: Mapping[str, Any]) -> str | None:
    """The client an ID token was issued to (OIDC Core §2): its ``azp``, which must be among
    its audiences, else its one audience; None when the claims name no such client."""
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    party = claims.get("azp", audiences[0] if len(audiences) == 1 else None)
    return party if isinstance(party, str) and party in audiences else None


def verify_id_token_hint(
    token: str, keyset: KeySet, issuer: str, *, client_id: str | None = None
) -> dict[str, Any]:
    """The hint's claims; ``invalid_request`` when it is not an ID token issued here, or,
    given ``client_id``, not one issued to that client: Core §3.1.2.1 makes it a hint about
    the user's session "with the Client" asking, as node-oidc-provider checks it."""
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
        or issued_to(claims) is None
    ):
        raise rejected
    if client_id is not None and issued_to(claims) != client_id:
        raise InvalidRequestError("The id_token_hint was issued to another client.")
    return claims
