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
from identity.oauth.scopes import still_allowed, user_may_hold
from identity.permissions.effective import token_claims_lasting
from identity.settings import Settings
from identity.tokens.models import RefreshToken
from identity.tokens.refresh import insert_refresh_token

# An access token ends no later than the grants it carries, but never within less than this
# of its issue: a shorter one would be spent on the way to a resource server, which forgives
# as much clock skew on ``exp`` anyway (identity.resource: 30 s), and the client would come
# back for another at once. A permission whose grant ends sooner is left out; it is lost at
# most this long before its end, no more than that skew already lets a token run past its own.
SHORTEST_GRANT_BOUND_LIFETIME = timedelta(seconds=30)


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
        """When an access token issued by this request expires (its ``exp``) at the latest:
        sooner when a grant of the permissions it carries ends sooner."""
        return self.now + timedelta(seconds=self.settings.access_token_ttl)

    @property
    def shortest_access_expires_at(self) -> datetime:
        """The soonest a user's access token may expire to end with a grant it carries; a
        grant ending before this is left out of the token instead."""
        return min(self.now + SHORTEST_GRANT_BOUND_LIFETIME, self.access_expires_at)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refusal whose side effects (revocations) must be committed before it is answered."""

    error: OAuth2Error


class Grant(Protocol):
    """Authlib's grant shape: ``validate`` checks and spends the grant (or returns a
    ``Refusal``), ``respond`` issues the tokens (or returns a ``Refusal``, the grant staying
    spent); both run in one transaction.
    """

    async def validate(
        self, session: AsyncSession, ctx: GrantContext, request: TokenRequest
    ) -> Any: ...

    async def respond(
        self, session: AsyncSession, ctx: GrantContext, validated: Any
    ) -> dict[str, Any] | Refusal: ...


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
    # The browser session's ``sid`` for the ID token; None leaves the claim out.
    sid: uuid.UUID | None
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
    """The response's access token part. ``scope`` is always given, empty when nothing was
    granted: RFC 6749 §5.1 lets it be left out only when it equals what was asked for, and
    left out it would claim everything asked for (node-oidc-provider always gives it)."""
    return {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": int((issued.expires_at - ctx.now).total_seconds()),
        "scope": scope,
    }


def issued_scope(scope: str, user: User, client: OAuthClient) -> str:
    """What an access token issued now may carry of a code's or refresh token's ``scope``:
    identity:admin only for administrators, and only scopes the client is still registered
    for. Other services read ``scope`` from the token alone, so one staff took from the
    client since the grant must not come back in a new token."""
    return still_allowed(user_may_hold(scope, is_admin=user.is_admin), client.scope)


async def issue_user_tokens(
    session: AsyncSession, ctx: GrantContext, issue: Issue
) -> dict[str, Any] | Refusal:
    """Access token, rotated refresh token (when the client has the grant) and ID token;
    a ``Refusal`` when the user has left the account the grant was for."""
    settings = ctx.settings
    # Checked at every issue, not only at the authorization request: a refresh (or a late
    # code redemption) after the user lost identity:admin, or the client a scope, must not
    # carry it on. The refresh token keeps what was granted (RFC 6749 §6).
    scope = issued_scope(issue.scope, issue.user, ctx.client)
    refresh_scope = user_may_hold(issue.refresh_scope, is_admin=issue.user.is_admin)
    account_claims = None
    expires_at = ctx.access_expires_at
    if issue.account_id is not None:
        try:
            account = await token_claims_lasting(
                session,
                issue.user.id,
                issue.account_id,
                ctx.now,
                held_past=ctx.shortest_access_expires_at,
            )
        except Forbidden:
            # Removed from the account since: nothing more is issued for it. Refused, not
            # raised, so the code or refresh token stays spent: adding the member back must
            # not make a grant already refused for them good again.
            return Refusal(InvalidGrantError("The user is no longer a member of the account."))
        account_claims = account.claims
        # A token speaks for its grants only while they last: "tickets for 14 days" ends
        # with the 14th day, not an access token's lifetime after it.
        if account.until is not None:
            expires_at = min(expires_at, account.until)
    issued = tokens.mint_access_token(
        ctx.keyset,
        issuer=settings.issuer,
        subject=str(issue.user.id),
        audience=audience(issue.resources, ctx.client.client_id),
        client_id=ctx.client.client_id,
        scope=scope,
        now=ctx.now,
        expires_at=expires_at,
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
                sid=issue.sid,
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
            sid=str(issue.sid) if issue.sid else None,
        )
    return body
