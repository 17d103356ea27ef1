"""Bearer authentication for /api/v1 (RFC 6750): our RFC 9068 access tokens, and nothing else.

A token is accepted when it is signed by one of our keys (by ``kid``), typed ``at+jwt``,
issued by us, unexpired, not revoked, meant for use at this server (its audience is the
client itself or our issuer, not another resource server), and carries one of our scopes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from identity.audit.service import Actor
from identity.clock import utcnow
from identity.oauth.errors import (
    InvalidBearerRequestError,
    InvalidTokenError,
    MissingTokenError,
    bearer_challenge,
)
from identity.oauth.scopes import SCOPE_ACCOUNTS, SCOPE_ADMIN, SCOPE_AUTHZ
from identity.oauth.tokens import verify_access_token
from identity.permissions.access import Caller
from identity.runtime import Runtime
from identity.web.client_ip import of_request
from identity.web.oauth import bearer_token
from identity.web.problems import problem
from identity.web.token_standing import standing


class BearerRefused(Exception):
    """No usable token (401), a malformed Authorization header (400), or a token without a
    scope this API accepts (403)."""

    def __init__(
        self,
        detail: str,
        *,
        missing: bool = False,
        malformed: bool = False,
        insufficient_scope: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.missing = missing
        self.malformed = malformed
        self.insufficient_scope = insufficient_scope


def bearer_refused_handler(
    request: Request[Any, Any, Any], exc: BearerRefused
) -> Response[dict[str, Any]]:
    if exc.insufficient_scope:
        scopes = f"{SCOPE_ACCOUNTS} {SCOPE_ADMIN} {SCOPE_AUTHZ}"
        challenge = f'Bearer error="insufficient_scope", scope="{scopes}"'
        return problem(
            403, exc.detail, code="insufficient-scope", headers={"WWW-Authenticate": challenge}
        )
    if exc.malformed:
        name, challenge = bearer_challenge(InvalidBearerRequestError(exc.detail))
        return problem(400, exc.detail, code="invalid-request", headers={name: challenge})
    # RFC 6750 §3.1: a request with no credentials gets the bare challenge, no error code.
    challenge = "Bearer" if exc.missing else 'Bearer error="invalid_token"'
    return problem(401, exc.detail, code="unauthenticated", headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True, slots=True)
class Principal:
    caller: Caller
    scopes: frozenset[str]
    ip: str
    request_id: str | None

    @property
    def actor(self) -> Actor:
        return Actor(self.caller.user_id, self.caller.client_id, self.ip, self.request_id)


def _bearer(request: Request[Any, Any, Any]) -> str:
    """The token as userinfo reads it, refused as this API answers."""
    try:
        return bearer_token(request)
    except MissingTokenError:
        raise BearerRefused(
            "Send an access token: Authorization: Bearer <token>.", missing=True
        ) from None
    except InvalidBearerRequestError as exc:
        raise BearerRefused(exc.description, malformed=True) from None


def _for_us(claims: dict[str, Any], issuer: str) -> bool:
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    return claims["client_id"] in audiences or issuer in audiences


async def authenticate(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The router's first guard. Guards run before a handler's body is parsed and before
    its dependencies: as a dependency, the token was checked after the content type (415)
    and the body (400), which told a caller without one what each endpoint takes.

    Litestar's own OPTIONS handler, the only one under /api/v1, needs none: it names the
    route's methods (as a 405's ``Allow`` does to anyone) and nothing else, and a browser's
    preflight never carries a token. It adds no CORS header (identity.web.cors), so a page
    on another origin still may not call the API."""
    if handler.http_methods == {"OPTIONS"}:
        return
    request = cast("Request[Any, Any, Any]", connection)
    connection.state.principal = await _principal(request, connection.app.state.runtime)


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """The caller ``authenticate`` accepted."""
    principal: Principal = request.state.principal
    return principal


async def _principal(request: Request[Any, Any, Any], runtime: Runtime) -> Principal:
    invalid = "The access token is invalid, expired or revoked."
    now = utcnow()
    try:
        claims = verify_access_token(
            await runtime.keyset(), _bearer(request), issuer=runtime.settings.issuer, now=now
        )
    except InvalidTokenError:
        raise BearerRefused(invalid) from None
    if not _for_us(claims, runtime.settings.issuer):
        raise BearerRefused("The access token is meant for another resource server.")
    live = await standing(runtime, claims, now)
    if live is None:
        raise BearerRefused(invalid)
    user_id = None if live.user is None else live.user.id
    # The scope as it stands: identity:admin is left to a user only while an administrator.
    scopes = frozenset(live.scope)
    is_staff = SCOPE_ADMIN in scopes
    is_service = user_id is None and SCOPE_AUTHZ in scopes
    as_user = user_id is not None and SCOPE_ACCOUNTS in scopes
    if not (is_staff or is_service or as_user):
        raise BearerRefused(
            "The access token lacks a scope this API accepts.", insufficient_scope=True
        )
    return Principal(
        caller=Caller(user_id, live.client.client_id, is_staff, is_service),
        scopes=scopes,
        ip=of_request(request, runtime.settings.trusted_proxies),
        request_id=request.scope.get("state", {}).get("request_id"),
    )
