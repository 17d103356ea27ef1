"""Token endpoint grants, in Authlib's shape (a validate step, then a respond step) but async.

``exchange`` runs: client authentication → the browser origin allowed → grant type
allowed → the grant's checks → issue. Everything from the grant's checks to issuing is one
transaction, so a code or refresh token is spent only together with the tokens that replace
it, or with a ``Refusal`` that must keep it spent; client_credentials spends nothing and
reads nothing, so it runs without one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients import repository as clients_repository
from identity.clients.cache import ClientCache
from identity.clients.models import OAuthClient
from identity.db.engine import Database
from identity.keys.service import KeySet
from identity.oauth import client_auth
from identity.oauth.client_auth import (
    ClientAuthenticationFailed,
    ClientCredentials,
    authenticate_client,
)
from identity.oauth.errors import OAuth2Error, UnauthorizedClientError, UnsupportedGrantTypeError
from identity.oauth.grants.authorization_code import AuthorizationCodeGrant
from identity.oauth.grants.base import Grant, GrantContext, Refusal, TokenRequest
from identity.oauth.grants.client_credentials import ClientCredentialsGrant
from identity.oauth.grants.refresh_token import RefreshTokenGrant, RotatedToken, continued
from identity.oauth.origins import check_origin
from identity.settings import Settings
from identity.tokens import refresh

# The token request's parameters, of every grant; any other is ignored (RFC 6749 §3.2).
# ``resource`` alone may repeat (RFC 8707 §2).
PARAMETERS = client_auth.PARAMETERS | {
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "scope",
}
REPEATABLE = frozenset({"resource"})

GRANTS: dict[str, Grant | ClientCredentialsGrant] = {
    "authorization_code": AuthorizationCodeGrant(),
    "refresh_token": RefreshTokenGrant(),
    "client_credentials": ClientCredentialsGrant(),
}


def check_grant_type(client: OAuthClient, grant_type: str) -> None:
    """RFC 6749 §5.2 ``unauthorized_client`` unless ``client`` is registered for the grant
    type now. Staff may take one away at any time: what the client holds of that grant (its
    refresh tokens) is refused from then on, and introspection calls it inactive, until
    the grant type is given back."""
    if grant_type not in client.grant_types:
        raise UnauthorizedClientError("The client may not use this grant type.")


async def refresh_now(
    session: AsyncSession, client: OAuthClient, token_hash: str, now: datetime
) -> RotatedToken | None:
    """What a refresh by ``client`` with the token ``token_hash`` would go on with now,
    asking for nothing narrower; None where the token endpoint would refuse it. RFC 7662
    §2.2 calls a token active only while it is usable: introspection asks this, which
    runs the token endpoint's own checks (``exchange`` and the refresh grant) without
    spending the token."""
    try:
        check_grant_type(client, "refresh_token")
    except UnauthorizedClientError:
        return None
    token = await refresh.live_refresh_token(session, token_hash, client.client_id, now)
    if token is None:
        return None
    try:
        return await continued(session, client, token, TokenRequest({}))
    except OAuth2Error:
        return None


async def exchange(
    db: Database,
    clients: ClientCache,
    settings: Settings,
    keyset: KeySet,
    credentials: ClientCredentials,
    request: TokenRequest,
    now: datetime,
    origin: str | None = None,
) -> dict[str, Any]:
    """The token endpoint's steps in order; raises the OAuth error that stopped them.

    ``origin``: the ``Origin`` of a browser's request, refused before anything is spent
    unless the client's app is served from it."""
    grant_type = request.require("grant_type")
    grant = GRANTS.get(grant_type)
    if grant is None:
        raise UnsupportedGrantTypeError(grant_type[:50])
    client = await authenticate_client(db, clients, credentials)
    check_origin(client, origin)
    check_grant_type(client, grant_type)
    ctx = GrantContext(settings, keyset, client, now)
    if isinstance(grant, ClientCredentialsGrant):
        return grant.respond(ctx, grant.validate(ctx, request))
    async with db.write_transaction() as session:
        # The client comes from the cache, read maybe before a disable or delete committed:
        # tokens issued after one would escape its deny list and live to their expiry.
        if not await clients_repository.hold_enabled(session, client.client_id):
            raise ClientAuthenticationFailed()
        validated = await grant.validate(session, ctx, request)
        answer = (
            validated
            if isinstance(validated, Refusal)
            else await grant.respond(session, ctx, validated)
        )
        if not isinstance(answer, Refusal):
            return answer
    raise answer.error
