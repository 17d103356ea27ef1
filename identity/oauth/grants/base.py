"""What every grant shares: the request, the context, a refusal, and issuing user tokens."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.clients.models import OAuthClient
from identity.crypto import digest, random_token
from identity.errors import Forbidden
from identity.keys.service import KeySet
from identity.oauth import tokens
from identity.oauth.errors import InvalidGrantError, InvalidRequestError, OAuth2Error
from identity.oauth.resources import audience
from identity.oauth.scopes import for_user
from identity.permissions.service import token_claims_for
from identity.settings import Settings
from identity.tokens.models import RefreshToken
from identity.tokens.refresh import insert_refresh_token


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """The token request's parameters: each given at most once, except ``resource``."""

    params: Mapping[str, str]
    resources: tuple[str, ...] = ()

    def require(self, name: str) -> str:
        value = self.params.get(name)
        if not value:
            raise InvalidRequestError(f"{name} is required.")
        return value


@dataclass(frozen=True, slots=True)
class GrantContext:
    settings: Settings
    keyset: KeySet
    client: OAuthClient
    now: datetime

    @property
    def access_expires_at(self) -> datetime:
        """When an access token issued by this request expires (its ``exp``)."""
        return self.now + timedelta(seconds=self.settings.access_token_ttl)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal whose side effects (revocations) must be committed before it is answered."""

    error: OAuth2Error


class Grant(Protocol):
    """Authlib's grant shape: ``validate`` checks and spends the grant (or returns a
    ``Refusal``), ``respond`` issues the tokens; both run in one transaction.
    """

    async def validate(
        self, session: AsyncSession, ctx: GrantContext, request: TokenRequest
    ) -> Any: ...

    async def respond(
        self, session: AsyncSession, ctx: GrantContext, validated: Any
    ) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Issue:
    """What a user-facing grant hands to ``issue_user_tokens``.

    ``scope`` and ``resources`` are the access token's; ``refresh_scope`` and
    ``refresh_resources`` what the refresh token keeps for later (RFC 6749 §6).
    """

    user: User
    scope: str
    resources: list[str]
    auth_time: datetime | None
    amr: list[str]
    family_id: uuid.UUID
    code_hash: str | None
    session_id: uuid.UUID | None
    refresh_scope: str
    refresh_resources: list[str]
    nonce: str | None = None
    # The customer account chosen at sign-in: its claims are recomputed at every issue.
    account_id: uuid.UUID | None = None
    # The access token's id, when the grant has recorded it already (a code's redemption).
    access_jti: str | None = None


def access_token_response(
    ctx: GrantContext, issued: tokens.IssuedAccessToken, scope: str
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": ctx.settings.access_token_ttl,
    }
    if scope:
        body["scope"] = scope
    return body


def _for_user(scope: str, user: User) -> str:
    return " ".join(for_user(scope.split(), is_admin=user.is_admin))


async def issue_user_tokens(
    session: AsyncSession, ctx: GrantContext, issue: Issue
) -> dict[str, Any]:
    """Access token, rotated refresh token (when the client has the grant) and ID token."""
    settings = ctx.settings
    # identity:admin is for administrators at every issue, not only at the authorization
    # request: a refresh (or a late code redemption) after losing it must not carry it on.
    scope = _for_user(issue.scope, issue.user)
    refresh_scope = _for_user(issue.refresh_scope, issue.user)
    account_claims = None
    if issue.account_id is not None:
        try:
            account_claims = await token_claims_for(
                session, issue.user.id, issue.account_id, ctx.now
            )
        except Forbidden:
            # Removed from the account since: nothing more is issued for it.
            raise InvalidGrantError("The user is no longer a member of the account.") from None
    issued = tokens.mint_access_token(
        ctx.keyset,
        issuer=settings.issuer,
        subject=str(issue.user.id),
        audience=audience(issue.resources, ctx.client.client_id),
        client_id=ctx.client.client_id,
        scope=scope,
        now=ctx.now,
        expires_at=ctx.access_expires_at,
        auth_time=issue.auth_time,
        account_claims=account_claims,
        jti=issue.access_jti,
    )
    body = access_token_response(ctx, issued, scope)
    if "refresh_token" in ctx.client.grant_types:
        refresh_token = random_token()
        await insert_refresh_token(
            session,
            RefreshToken(
                token_hash=digest(refresh_token),
                family_id=issue.family_id,
                client_id=ctx.client.client_id,
                user_id=issue.user.id,
                account_id=issue.account_id,
                session_id=issue.session_id,
                code_hash=issue.code_hash,
                scope=refresh_scope,
                resources=issue.refresh_resources,
                auth_time=issue.auth_time,
                amr=issue.amr,
                access_jti=issued.jti,
                access_expires_at=issued.expires_at,
                created_at=ctx.now,
                expires_at=ctx.now + timedelta(seconds=settings.refresh_token_ttl),
            ),
        )
        body["refresh_token"] = refresh_token
    scope_list = scope.split()
    if "openid" in scope_list:
        body["id_token"] = tokens.mint_id_token(
            ctx.keyset,
            issuer=settings.issuer,
            user=issue.user,
            client_id=ctx.client.client_id,
            scope=scope_list,
            now=ctx.now,
            ttl=settings.id_token_ttl,
            auth_time=issue.auth_time,
            amr=issue.amr,
            access_token=issued.token,
            nonce=issue.nonce,
        )
    return body
