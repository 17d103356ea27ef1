"""Signed tokens: RFC 9068 JWT access tokens and OpenID Connect ID tokens.

Access tokens carry everything a resource server needs, so a separate service can check
them with our JWKS alone; their ``jti`` is what revocation lists.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from authlib.oidc.core.util import create_half_hash
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import GuestProtocol, Key
from joserfc.jwt import JWTClaimsRegistry

from identity.accounts.models import User
from identity.keys.service import SUPPORTED_ALGS, KeySet
from identity.oauth.errors import InvalidTargetError, InvalidTokenError
from identity.resource.claims import AccessToken
from identity.resource.errors import BearerTokenError

# RFC 9068 §2.1: the type keeps an ID token from passing as an access token.
ACCESS_TOKEN_TYPE = "at+jwt"  # noqa: S105 - a media type, not a secret
# Seconds an ``iat`` may be ahead of this process's clock. Processes on several machines
# verify each other's tokens, often the moment they are issued (userinfo right after the
# token endpoint), and their clocks differ a little; the resource kit forgives as much.
ISSUED_AT_SKEW = 30
# The longest access token services can be sent: nginx's ``large_client_header_buffers``
# (8k, also what the resource kit accepts) must hold the whole header line carrying it.
# A longer token would be issued and then refused by every service behind such a proxy.
MAX_ACCESS_TOKEN_BYTES = 8192 - len("Authorization: Bearer \r\n")


@dataclass(frozen=True, slots=True)
class IssuedAccessToken:
    token: str
    jti: str
    expires_at: datetime


def _sign(keyset: KeySet, claims: dict[str, Any], typ: str) -> str:
    header = {"alg": keyset.current_alg, "kid": keyset.current.kid, "typ": typ}
    return jwt.encode(header, claims, keyset.current, algorithms=[keyset.current_alg])


def new_jti() -> str:
    return uuid.uuid4().hex


def mint_access_token(
    keyset: KeySet,
    *,
    issuer: str,
    subject: str,
    audience: str | list[str],
    client_id: str,
    scope: str,
    now: datetime,
    expires_at: datetime,
    auth_time: datetime | None = None,
    account_claims: dict[str, Any] | None = None,
    jti: str | None = None,
) -> IssuedAccessToken:
    """``expires_at``: the caller's, as it records it beside the grant (a revocation denies
    the token until then). ``account_claims``: ``account_id``, ``permissions``,
    ``account_owner`` of the account the authorization was for
    (identity.permissions.effective.token_claims_lasting). ``jti``: the token's id when the caller
    chose it beforehand (``new_jti``), else a new one."""
    jti = jti or new_jti()
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "exp": int(expires_at.timestamp()),
        "iat": int(now.timestamp()),
        "jti": jti,
        "client_id": client_id,
        "scope": scope,
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if account_claims:
        claims |= account_claims
    token = _sign(keyset, claims, ACCESS_TOKEN_TYPE)
    # The scope and the permissions are capped where they are registered so that a token
    # for the client itself always fits; resources (RFC 8707) are what a request makes grow.
    # Refused as node-oidc-provider refuses an audience it will not issue: the transaction
    # rolls back, so a code or refresh token stays usable for fewer resources.
    if len(token) > MAX_ACCESS_TOKEN_BYTES and audience != client_id:
        raise InvalidTargetError(
            "The access token for these resources would be longer than services accept"
            f" ({MAX_ACCESS_TOKEN_BYTES} bytes): ask for fewer resources."
        )
    return IssuedAccessToken(token, jti, expires_at)


def user_claims(user: User, scope: Sequence[str]) -> dict[str, Any]:
    """OIDC Core §5.4: the standard claims each scope releases, beside ``sub``."""
    claims: dict[str, Any] = {"sub": str(user.id)}
    if "profile" in scope:
        # §5.3.2: a claim with no value is left out, never sent as an empty string.
        if user.name:
            claims["name"] = user.name
        claims["updated_at"] = int(user.updated_at.timestamp())
        if user.locale:
            claims["locale"] = user.locale
    if "email" in scope:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims


def mint_id_token(
    keyset: KeySet,
    *,
    issuer: str,
    user: User,
    client_id: str,
    scope: Sequence[str],
    now: datetime,
    ttl: int,
    auth_time: datetime | None,
    amr: Sequence[str],
    access_token: str,
    nonce: str | None = None,
    sid: str | None = None,
) -> str:
    """OIDC Core §2 and §3.1.3.6: the claims of an ID token issued at the token endpoint,
    with the browser session's ``sid`` (OIDC Front-Channel Logout §3) when it has one."""
    claims = user_claims(user, scope) | {
        "iss": issuer,
        "aud": client_id,
        "exp": int((now + timedelta(seconds=ttl)).timestamp()),
        "iat": int(now.timestamp()),
        "at_hash": create_half_hash(access_token, keyset.current_alg).decode(),
    }
    if auth_time is not None:
        claims["auth_time"] = int(auth_time.timestamp())
    if amr:
        claims["amr"] = list(amr)
    if nonce is not None:
        claims["nonce"] = nonce
    if sid is not None:
        claims["sid"] = sid
    return _sign(keyset, claims, "JWT")


@dataclass(frozen=True, slots=True)
class _Verified:
    key: Key
    kid: str
    verified_at: int
    expires_at: int
    claims: dict[str, Any]


# Access tokens that passed ``verify_access_token``, by token and issuer. Resource servers
# introspect the same token for every call they serve, and checking its signature and
# claims again cost as much as the rest of an introspection. A token's bytes cannot change,
# so what a hit re-checks is what can: the clock (not expired, and no earlier than the
# first check, so ``iat`` still holds; earlier is a miss, checked in full) and that the
# very key object that verified it is still in the key set (a retired key, or a reloaded
# key set, is a miss). Revocation is not cached here: callers ask the database every time.
# Only tokens that verified enter, so garbage cannot fill it; it is emptied when full.
_VERIFIED: dict[tuple[str, str], _Verified] = {}
_VERIFIED_MAX = 10_000


def verify_access_token(
    keyset: KeySet, token: str, *, issuer: str, now: datetime
) -> dict[str, Any]:
    """The claims of an access token we issued that has not expired; else ``invalid_token``.

    Revocation is the caller's next step: it needs the database.
    """
    at = int(now.timestamp())
    hit = _VERIFIED.get((token, issuer))
    fresh = hit is not None and hit.verified_at <= at < hit.expires_at
    if hit is not None and fresh and keyset.by_kid.get(hit.kid) is hit.key:
        return dict(hit.claims)
    used: list[Key] = []

    def key_for(guest: GuestProtocol) -> Key:
        key = keyset.by_kid.get(str(guest.headers().get("kid")))
        if key is None:
            raise InvalidTokenError()
        used.append(key)
        return key

    try:
        decoded = jwt.decode(token, key_for, algorithms=SUPPORTED_ALGS)
        if decoded.header.get("typ") != ACCESS_TOKEN_TYPE:
            raise InvalidTokenError()
        registry = JWTClaimsRegistry(
            now=at,
            iss={"essential": True, "value": issuer},
            exp={"essential": True},
            jti={"essential": True},
            sub={"essential": True},
            client_id={"essential": True},
        )
        # ``exp`` is held to this clock exactly; only ``iat`` gets the skew.
        registry.validate({name: v for name, v in decoded.claims.items() if name != "iat"})
        if "iat" in decoded.claims:
            JWTClaimsRegistry(now=at, leeway=ISSUED_AT_SKEW).validate_iat(decoded.claims["iat"])
        # Shaped as the tokens we issue, by the rule our resource servers apply: a token
        # signed with our key but carrying, say, an account id that is no UUID is one we
        # never issued, and every reader of its claims would otherwise meet it unprepared.
        AccessToken.from_claims(decoded.claims)
    except (JoseError, ValueError, TypeError, BearerTokenError):
        raise InvalidTokenError() from None
    if len(_VERIFIED) >= _VERIFIED_MAX:
        _VERIFIED.clear()
    _VERIFIED[token, issuer] = _Verified(
        used[0], str(decoded.header["kid"]), at, int(decoded.claims["exp"]), dict(decoded.claims)
    )
    return decoded.claims
