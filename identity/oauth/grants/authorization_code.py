"""The authorization code grant (RFC 6749 §4.1.3, OIDC Core §3.1.3), with PKCE and replay
revocation: a code redeemed twice revokes what its first redemption issued (§4.1.2).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.crypto import digest
from identity.oauth import tokens
from identity.oauth.authorize import is_registered
from identity.oauth.errors import InvalidGrantError, OAuth2Error
from identity.oauth.grants.base import GrantContext, Issue, Refusal, TokenRequest, issue_user_tokens
from identity.oauth.pkce import NO_CHALLENGE, check_code_verifier
from identity.oauth.resources import granted_resources
from identity.sessions import repository as browser_sessions
from identity.tokens import codes, refresh, revocations
from identity.tokens.models import AuthorizationCode

UNREGISTERED = "redirect_uri is no longer registered for this client."


@dataclass(frozen=True, slots=True)
class RedeemedCode:
    code: AuthorizationCode
    user: User
    resources: list[str]
    access_jti: str
    sid: uuid.UUID | None


class AuthorizationCodeGrant:
    async def validate(
        self, session: AsyncSession, ctx: GrantContext, request: TokenRequest
    ) -> RedeemedCode | Refusal:
        code_hash = digest(request.require("code"))
        redirect_uri = request.require("redirect_uri")
        # The access token's id is chosen now, so the statement that spends the code also
        # records what it issues, for a replay to revoke.
        access_jti = tokens.new_jti()
        code = await codes.redeem_code(
            session, code_hash, ctx.now, access_jti, ctx.access_expires_at
        )
        verifier = request.params.get("code_verifier")
        if code is None:
            return await self.refuse_replay(session, ctx, code_hash, redirect_uri, verifier)
        # A presenter that is not the code's own (client, redirect URI, verifier, resources)
        # raises, which rolls the redemption back: the code stays unused for its app, as in
        # node-oidc-provider, where these checks run before the code is consumed.
        check_code_client(code, ctx)
        if not is_registered(code.redirect_uri, ctx.client):
            # Refused, not raised: the redemption commits, so the code stays spent. Were it
            # rolled back, staff putting the address back within the code's lifetime would
            # make a code already refused good again.
            return Refusal(InvalidGrantError(UNREGISTERED))
        if redirect_uri == code.redirect_uri and lacks_required_challenge(code, ctx):
            # Spent, though checked with the presenter: no verifier can ever redeem it while
            # the client requires PKCE, so spending it takes nothing from its app, and
            # staff relaxing the client again within its lifetime must not revive it.
            return Refusal(InvalidGrantError(NO_CHALLENGE))
        check_presenter(code, ctx, redirect_uri, verifier)
        resources = granted_resources(request.resources, code.resources, ctx.client.resources)
        # A code stands for the sign-in it came from, as in Keycloak: once that has ended (a
        # sign-out, or every session ended by a password reset), whoever still holds the code
        # must not turn it into a refresh token that outlives the sign-out.
        signed_in = await browser_sessions.hold_signed_in(session, code.session_id, code.user_id)
        if signed_in is None:
            # Spent, as for an unregistered redirect URI: enabling the user again within
            # the code's lifetime must not revive a code refused for them.
            return Refusal(InvalidGrantError("The code is invalid, expired or already used."))
        return RedeemedCode(code, signed_in.user, resources, access_jti, signed_in.sid)

    async def refuse_replay(
        self,
        session: AsyncSession,
        ctx: GrantContext,
        code_hash: str,
        redirect_uri: str,
        verifier: str | None,
    ) -> Refusal:
        """Unknown and expired codes are refused; a used one also loses what it issued, when
        the request would have redeemed it unused: its client, redirect URI and PKCE
        verifier, as node-oidc-provider checks them before it revokes. A used code leaks
        easily (browser history, logs) and anyone may call as a public client, but only the
        app holds the verifier: a replay without it must not sign that app out."""
        used = await codes.get_consumed_code(session, code_hash, ctx.now)
        if used is not None and could_redeem(used, ctx, redirect_uri, verifier):
            await refresh.revoke_issued_from_code(session, code_hash, ctx.now)
            # A client without the refresh grant has no refresh token naming this one.
            if used.access_jti is not None and used.access_expires_at is not None:
                await revocations.revoke_access_token(
                    session, used.access_jti, used.access_expires_at, ctx.now
                )
        return Refusal(InvalidGrantError("The code is invalid, expired or already used."))

    async def respond(
        self, session: AsyncSession, ctx: GrantContext, redeemed: RedeemedCode
    ) -> dict[str, Any] | Refusal:
        code = redeemed.code
        return await issue_user_tokens(
            session,
            ctx,
            Issue(
                user=redeemed.user,
                scope=code.scope,
                resources=redeemed.resources,
                auth_time=code.auth_time,
                amr=list(code.amr),
                family_id=uuid.uuid4(),
                code_hash=code.code_hash,
                session_id=code.session_id,
                sid=redeemed.sid,
                refresh_scope=code.scope,
                refresh_resources=list(code.resources),
                nonce=code.nonce,
                account_id=code.account_id,
                access_jti=redeemed.access_jti,
            ),
        )


def check_presenter(
    code: AuthorizationCode, ctx: GrantContext, redirect_uri: str, verifier: str | None
) -> None:
    """The code's own client (checked first) presents it at its redirect URI (RFC 6749
    §4.1.3: the same as in the authorization request, exactly) with the verifier of its
    challenge."""
    if redirect_uri != code.redirect_uri:
        raise InvalidGrantError("redirect_uri does not match the authorization request.")
    check_code_verifier(
        verifier,
        code.code_challenge,
        code.code_challenge_method,
        required=pkce_required(ctx),
    )


def pkce_required(ctx: GrantContext) -> bool:
    """The client's setting now, which may have changed since the code was issued."""
    return ctx.client.require_pkce or ctx.client.is_public


def lacks_required_challenge(code: AuthorizationCode, ctx: GrantContext) -> bool:
    """Whether the code was issued without a challenge to a client that now requires PKCE."""
    return code.code_challenge is None and pkce_required(ctx)


def could_redeem(
    code: AuthorizationCode, ctx: GrantContext, redirect_uri: str, verifier: str | None
) -> bool:
    """Whether this request would have redeemed the code unused: its client, at a redirect
    URI still registered (as Keycloak and node-oidc-provider check at redemption), as its
    presenter."""
    try:
        check_code_client(code, ctx)
        check_presenter(code, ctx, redirect_uri, verifier)
    except OAuth2Error:
        return False
    return is_registered(code.redirect_uri, ctx.client)


def check_code_client(code: AuthorizationCode, ctx: GrantContext) -> None:
    if code.client_id != ctx.client.client_id:
        raise InvalidGrantError("The code is invalid, expired or already used.")
