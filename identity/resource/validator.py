"""Validation of RFC 9068 JWT access tokens against the issuer's published keys.

Order matters: everything that needs neither a key nor a network request (size, shape, ``alg``,
``typ``, ``kid``) is checked first, so junk costs no fetch and no signature operation. The
algorithm comes from our allow-list, never from the token: a token claiming ``none`` or
``HS256`` (the classic attack: an HMAC keyed with the RSA public key) is refused before any key
is looked up.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from joserfc import jws
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError, MissingClaimError
from joserfc.jwk import Key
from joserfc.jws import JWSRegistry
from joserfc.jwt import JWTClaimsRegistry

from identity.resource.audience import warn_if_any_audience
from identity.resource.claims import AccessToken
from identity.resource.errors import BearerTokenError

SUPPORTED_ALGORITHMS = frozenset({"RS256", "ES256"})
# RFC 9068 §2.1; RFC 8725 §3.11 and RFC 7515 §4.1.9 let "application/" be left out or not.
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})
# Our tokens are about 1 KB; 8 KB leaves room for long permission lists.
DEFAULT_MAX_TOKEN_BYTES = 8192


_CLAIM_FAILURES = {
    "iss": "The access token comes from another issuer.",
    "aud": "The access token is not meant for this service.",
    "nbf": "The access token is not valid yet.",
    "iat": "The access token was issued in the future.",
}


class KeySource(Protocol):
    async def key(self, kid: str) -> Key | None: ...


def invalid(description: str) -> BearerTokenError:
    return BearerTokenError("invalid_token", description)


def refuse_oversized(token: str, max_token_bytes: int) -> None:
    """Refused unread, validated or introspected: a token longer than any we issue is not
    worth parsing, nor sending on to the issuer on every request."""
    if len(token) > max_token_bytes:
        raise invalid("The access token is too large.")


def token_required() -> BearerTokenError:
    """A request without a bearer token: a bare challenge, no error code (RFC 6750 §3.1)."""
    return BearerTokenError(None, "A bearer access token is required.")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 §2.1). §3.1: no credentials
    (or another scheme's) get the bare challenge; the Bearer scheme with no token after it is
    a malformed request, ``invalid_request`` (400), as the issuer answers it at userinfo and
    /api/v1 (identity.web.oauth, which this kit cannot import: it is the issuer's app)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise token_required()
    token = token.strip()
    if not token:
        raise BearerTokenError(
            "invalid_request", "The Authorization header names Bearer but no token."
        )
    if " " in token:
        raise invalid("The Authorization header is malformed.")
    return token


class TokenValidator:
    """Checks an access token and returns its claims as an :class:`AccessToken`.

    ``audience``: this service's own identifier (the RFC 8707 ``resource`` clients ask tokens
    for). When set, a token must name it in ``aud``; when unset, ``aud`` is not checked, so a
    token issued for any other service passes too: a warning says so once, when the validator
    is made.
    ``leeway``: seconds of clock skew forgiven on ``exp``, ``nbf`` and ``iat``.
    """

    def __init__(
        self,
        keys: KeySource,
        *,
        issuer: str,
        audience: str | None = None,
        algorithms: Collection[str] = ("RS256", "ES256"),
        leeway: int = 30,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        now: Callable[[], float] = time.time,
    ) -> None:
        unsupported = set(algorithms) - SUPPORTED_ALGORITHMS
        if unsupported or not algorithms:
            raise ValueError(f"algorithms must be among {sorted(SUPPORTED_ALGORITHMS)}")
        self._keys = keys
        self._algorithms = frozenset(algorithms)
        # Built once: the JWS registry is also joserfc's own check that ``alg`` is allowed,
        # and the claims registry reads the time on each use.
        self._registry = JWSRegistry(algorithms=sorted(self._algorithms))
        self._max_token_bytes = max_token_bytes
        aud: dict[str, Any] = {"essential": True}
        if audience is not None:
            aud["value"] = audience
        warn_if_any_audience(audience, issuer, "token validator")
        self._claims = JWTClaimsRegistry(
            now=lambda: int(now()),
            leeway=leeway,
            iss={"essential": True, "value": issuer},
            aud=aud,  # type: ignore[arg-type]
            exp={"essential": True},
            iat={"essential": True},
            sub={"essential": True},
            jti={"essential": True},
            client_id={"essential": True},
        )

    async def validate(self, token: str) -> AccessToken:
        refuse_oversized(token, self._max_token_bytes)
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=self._registry)
        except (JoseError, ValueError):
            raise invalid("The access token is not a signed JWT.") from None
        header = signed.headers()
        alg = header.get("alg")
        # The header is the forger's: a list or object here is unhashable in a set look-up.
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise invalid("The access token's signing algorithm is not accepted.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise invalid("The token is not an access token.")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise invalid("The access token names no signing key.")
        key = await self._keys.key(kid)
        if key is None:
            raise invalid("The access token's signing key is unknown.")
        # joserfc also refuses a key of the wrong type, curve, use or pinned ``alg`` here.
        try:
            verified = jws.validate_compact(signed, key, registry=self._registry)
        except (JoseError, ValueError, TypeError):
            verified = False
        if not verified:
            raise invalid("The access token's signature is invalid.")
        try:
            claims = json.loads(signed.payload or b"")
        except ValueError:
            raise invalid("The access token is not a signed JWT.") from None
        if not isinstance(claims, dict):
            raise invalid("The access token is not a signed JWT.")
        self._check_claims(claims)
        return AccessToken.from_claims(claims)

    def _check_claims(self, claims: dict[str, Any]) -> None:
        try:
            self._claims.validate(claims)
        except ExpiredTokenError:
            raise invalid("The access token has expired.") from None
        except MissingClaimError:
            raise invalid("The access token lacks required claims.") from None
        except ClaimError as exc:
            described = _CLAIM_FAILURES.get(exc.claim, "The access token has malformed claims.")
            raise invalid(described) from None
