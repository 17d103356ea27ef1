"""The client credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

No refresh token (§4.4.3) and no user scopes: there is no person to describe. Nothing is
read or spent either (the client is already authenticated), so unlike the other grants
its steps are plain functions that need no session.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from identity.oauth import tokens
from identity.oauth.errors import InvalidScopeError, UnauthorizedClientError
from identity.oauth.grants.base import GrantContext, TokenRequest, access_token_response
from identity.oauth.resources import audience, check_resources
from identity.oauth.scopes import USER_SCOPES, parse_scope, requested_scope


@dataclass(frozen=True, slots=True)
class ClientGrant:
    scope: str
    resources: list[str]


class ClientCredentialsGrant:
    def validate(self, ctx: GrantContext, request: TokenRequest) -> ClientGrant:
        if ctx.client.is_public:
            raise UnauthorizedClientError("Public clients cannot use client_credentials.")
        allowed = [s for s in parse_scope(ctx.client.scope) if s not in USER_SCOPES]
        asked = requested_scope(request.params.get("scope"))
        if asked is None:
            asked = allowed
        if not set(asked) <= set(allowed):
            raise InvalidScopeError("scope is not allowed for this client.")
        resources = check_resources(request.resources, ctx.client.resources)
        return ClientGrant(" ".join(asked), resources)

    def respond(self, ctx: GrantContext, granted: ClientGrant) -> dict[str, Any]:
        client_id = ctx.client.client_id
        issued = tokens.mint_access_token(
            ctx.keyset,
            issuer=ctx.settings.issuer,
            # RFC 9068 §2.2: with no resource owner, the subject is the client itself.
            subject=client_id,
            audience=audience(granted.resources, client_id),
            client_id=client_id,
            scope=granted.scope,
            now=ctx.now,
            expires_at=ctx.access_expires_at,
        )
        return access_token_response(ctx, issued, granted.scope)
