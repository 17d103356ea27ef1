"""The refresh token grant (RFC 6749 §6) with rotation on every use (RFC 9700 §4.14.2):
presenting a token that was already rotated revokes its whole family.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.clients.models import OAuthClient
from identity.crypto import digest
from identity.oauth.errors import InvalidGrantError
from identity.oauth.grants.base import GrantContext, Issue, Refusal, TokenRequest, issue_user_tokens
from identity.oauth.resources import granted_resources
from identity.oauth.scopes import narrow_scope
from identity.tokens import refresh
from identity.tokens.models import RefreshToken
from identity.tokens.subjects import active_user

INVALID = "The refresh token is invalid, expired or revoked."


@dataclass(frozen=True, slots=True)
class RotatedToken:
    previous: RefreshToken
    user: User
    scope: str
    resources: list[str]


async def continued(
    session: AsyncSession, client: OAuthClient, previous: RefreshToken, request: TokenRequest
) -> RotatedToken:
    """What a refresh with the live token ``previous`` goes on with, as ``request`` asks:
    raises the OAuth error that refuses it. Introspection asks this too (with a request
    for nothing narrower), so it calls a refresh token active exactly when a refresh with
    it would be answered."""
    scope = narrow_scope(request.params.get("scope"), previous.scope)
    resources = granted_resources(request.resources, previous.resources, client.resources)
    user = await active_user(session, previous.user_id) if previous.user_id else None
    if user is None:
        raise InvalidGrantError(INVALID)
    return RotatedToken(previous, user, scope, resources)


class RefreshTokenGrant:
    async def validate(
        self, session: AsyncSession, ctx: GrantContext, request: TokenRequest
    ) -> RotatedToken | Refusal:
        token_hash = digest(request.require("refresh_token"))
        previous = await refresh.rotate_refresh_token(
            session, token_hash, ctx.client.client_id, ctx.now
        )
        if previous is None:
            return await self.refuse_reuse(session, ctx, token_hash)
        return await continued(session, ctx.client, previous, request)

    async def refuse_reuse(
        self, session: AsyncSession, ctx: GrantContext, token_hash: str
    ) -> Refusal:
        """A rotated token coming back means it leaked: nobody in its family may go on."""
        found = await refresh.find_refresh_token(session, token_hash, ctx.now)
        if (
            found is not None
            and found.client_id == ctx.client.client_id
            and found.rotated_at is not None
        ):
            await refresh.revoke_family(session, found.family_id, ctx.now)
        return Refusal(InvalidGrantError(INVALID))

    async def respond(
        self, session: AsyncSession, ctx: GrantContext, rotated: RotatedToken
    ) -> dict[str, Any] | Refusal:
        previous = rotated.previous
        return await issue_user_tokens(
            session,
            ctx,
            Issue(
                user=rotated.user,
                scope=rotated.scope,
                resources=rotated.resources,
                auth_time=previous.auth_time,
                amr=list(previous.amr),
                family_id=previous.family_id,
                code_hash=previous.code_hash,
                session_id=previous.session_id,
                # The session that granted the family (or, once the user signed in again in
                # that browser, the one that continued it, which keeps its sid): its ID
                # tokens name it as the first one did, even once the session is deleted.
                sid=previous.sid,
                # RFC 6749 §6: the new refresh token keeps the scope of the one it replaces.
                refresh_scope=previous.scope,
                refresh_resources=list(previous.resources),
                account_id=previous.account_id,
            ),
        )
