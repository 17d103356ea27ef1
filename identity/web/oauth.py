"""Thin Litestar handlers for the token side of OAuth 2.0 / OpenID Connect.

Each handler parses the HTTP request, calls ``identity.oauth``, and renders the result;
OAuth errors leave as RFC 6749 §5.2 JSON, anything unexpected as ``server_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request, Response, asgi, post, route
from litestar.exceptions import HTTPException, MethodNotAllowedException
from litestar.response.base import ASGIResponse
from litestar.types import ExceptionHandlersMap, Receive, Scope, Send
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient
from identity.clock import utcnow
from identity.crypto import digest
from identity.db.engine import DatabaseUnavailable
from identity.oauth import client_auth, grants, metadata
from identity.oauth.client_auth import (
    ClientAuthenticationFailed,
    authenticate_client,
    parse_client_credentials,
)
from identity.oauth.errors import (
    InsufficientScopeError,
    InvalidBearerRequestError,
    InvalidRequestError,
    InvalidTokenError,
    MissingTokenError,
    OAuth2Error,
    ServerError,
    TemporarilyUnavailableError,
)
from identity.oauth.grants import TokenRequest, exchange, refresh_now
from identity.oauth.grants.base import issued_scope
from identity.oauth.metadata import Published
from identity.oauth.origins import OriginNotAllowed, check_origin
from identity.oauth.parameters import CONTROL_CHARACTER
from identity.oauth.tokens import user_claims, verify_access_token
from identity.runtime import Runtime
from identity.store.base import StoreUnavailable
from identity.tokens import refresh, revocations
from identity.web import cors
from identity.web.conditional import etag_matches
from identity.web.dependencies import RuntimeDep
from identity.web.retry_after import UNAVAILABLE
from identity.web.token_standing import standing

log = logging.getLogger(__name__)

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
DISCOVERY_CACHE = b"public, max-age=3600"
# Short, so that a retired key leaves relying parties' caches soon after it leaves ours.
JWKS_CACHE = b"public, max-age=300"
MAX_FIELDS = 50


# --- rendering ------------------------------------------------------------------------


def oauth_error_response(request: Request[Any, Any, Any], exc: OAuth2Error) -> Response[Any]:
    if isinstance(exc, OriginNotAllowed):
        cors.refuse(request.scope)
    status, body, headers = exc()
    extra = {k: v for k, v in headers if k.lower() != "content-type"}
    return Response(body, status_code=status, headers=NO_STORE | extra)


class NoContent(Response[bytes]):
    """200 with no content, and so no Content-Type: Litestar types every 200 (JSON unless told
    otherwise), and a JSON type over no bytes announces a document no JSON parser accepts."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(b"", status_code=200, headers=headers)

    def to_asgi_response(self, *args: Any, **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(*args, **kwargs)
        response.headers.pop("content-type", None)
        return response


def unavailable_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("dependency unavailable: %s", type(exc).__name__)
    response = oauth_error_response(request, TemporarilyUnavailableError())
    response.headers["Retry-After"] = UNAVAILABLE
    return response


def unexpected_error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.exception("unhandled error in an OAuth endpoint", exc_info=exc)
    return oauth_error_response(request, ServerError())


OAUTH_ERRORS: ExceptionHandlersMap = {
    OAuth2Error: oauth_error_response,
    DatabaseUnavailable: unavailable_response,
    StoreUnavailable: unavailable_response,
    Exception: unexpected_error_response,
}


async def send_published(
    scope: Scope, send: Send, document: Published, cache_control: bytes
) -> None:
    """Serve prebuilt bytes straight over ASGI: no request object, no serialisation.

    These two documents are the most fetched of all (every relying party and resource
    server polls them), so they skip Litestar's per-request machinery.
    """
    # A HEAD arrives as a GET (identity.web.head_requests) and leaves without the body.
    if scope["method"] != "GET":
        raise MethodNotAllowedException(headers={"Allow": "GET, HEAD"})
    etag = document.etag.encode()
    headers = [(b"etag", etag), (b"cache-control", cache_control), cors.OPEN_TO_EVERY_ORIGIN]
    status, body = (304, b"") if etag_matches(scope, etag) else (200, document.body)
    if status == 200:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- request parsing ------------------------------------------------------------------


def is_form(request: Request[Any, Any, Any]) -> bool:
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return content_type == FORM


async def read_form(
    request: Request[Any, Any, Any], known: Collection[str], repeatable: Collection[str] = ()
) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The ``known`` parameters of the form body as single values, plus the values of the
    ``repeatable`` ones.

    RFC 6749 §3.1-3.2: form-encoded, parameters without a value count as omitted, those
    the endpoint does not recognize are ignored, and none it reads may be repeated; a
    control character has no business in any of them.
    """
    if not is_form(request):
        raise InvalidRequestError("The body must be application/x-www-form-urlencoded.")
    try:
        body = await request.body()
    except HTTPException:
        raise InvalidRequestError("The request body is too large.") from None
    try:
        pairs = parse_qsl(
            body.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS
        )
    except ValueError:
        raise InvalidRequestError("The body is not valid form data.") from None
    single: dict[str, str] = {}
    multiple: dict[str, list[str]] = {}
    for name, value in pairs:
        if name not in known and name not in repeatable:
            continue
        if CONTROL_CHARACTER.search(value):
            raise InvalidRequestError("A parameter holds a control character.")
        if not value:
            continue
        if name in repeatable:
            multiple.setdefault(name, []).append(value)
        elif name in single:
            raise InvalidRequestError("A parameter is repeated.")
        else:
            single[name] = value
    return single, multiple


def bearer_token(request: Request[Any, Any, Any]) -> str:
    """RFC 6750 §2.1: the access token from ``Authorization: Bearer``. §3.1: no credentials
    (or another scheme's) get the bare challenge; the Bearer scheme with no token after it is
    a malformed request, ``invalid_request``."""
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer":
        raise MissingTokenError("An access token is required.")
    if not token.strip():
        raise InvalidBearerRequestError("The Authorization header names Bearer but no token.")
    return token.strip()


async def presented_access_token(request: Request[Any, Any, Any]) -> str:
    """The access token from ``Authorization: Bearer`` or, in a POST's form body, from the
    ``access_token`` field (RFC 6750 §2.2), which OIDC Core §5.3.1 lets clients use at
    userinfo. §2 forbids sending it both ways (or beside another scheme's credentials): that
    ambiguity is refused, never settled by picking one."""
    in_body = None
    if request.method == "POST" and is_form(request):
        try:
            form, _ = await read_form(request, {"access_token"})
        except InvalidRequestError as exc:
            raise InvalidBearerRequestError(exc.description) from None
        in_body = form.get("access_token")
    if in_body is None:
        return bearer_token(request)
    if "authorization" in request.headers:
        raise InvalidBearerRequestError("Send the access token one way, not two.")
    return in_body


# --- discovery and keys ---------------------------------------------------------------


def _runtime(scope: Scope) -> Runtime:
    """The runtime without dependency injection, which costs the busiest endpoints (token,
    introspection, discovery, JWKS) a signature model and a ``State`` on every request.
    """
    return scope["litestar_app"].state.runtime  # type: ignore[no-any-return]


@asgi(metadata.DISCOVERY_PATH, include_in_schema=False, copy_scope=False)
async def discovery(scope: Scope, receive: Receive, send: Send) -> None:
    await send_published(scope, send, _runtime(scope).published.discovery, DISCOVERY_CACHE)


@asgi(metadata.JWKS_PATH, include_in_schema=False, copy_scope=False)
async def jwks(scope: Scope, receive: Receive, send: Send) -> None:
    runtime = _runtime(scope)
    keyset = await runtime.keyset()
    await send_published(scope, send, runtime.published.jwks(keyset), JWKS_CACHE)


# --- token ----------------------------------------------------------------------------


@post(
    metadata.TOKEN_PATH, include_in_schema=False, exception_handlers=OAUTH_ERRORS, status_code=200
)
async def token(request: Request[Any, Any, Any]) -> Response[Any]:
    runtime = _runtime(request.scope)
    form, repeated = await read_form(request, grants.PARAMETERS, grants.REPEATABLE)
    credentials = parse_client_credentials(request.headers.get("authorization"), form)
    # A user's token lists the permissions of their roles: roles.toml edited before this
    # process started must have reached the stored templates first (and ended the refresh
    # tokens of holders it narrowed), not wait for a request to the Users page or /api/v1.
    await runtime.catalogue.ensure_templates(runtime.db)
    body = await exchange(
        runtime.db,
        runtime.clients,
        runtime.settings,
        await runtime.keyset(),
        credentials,
        TokenRequest(form, tuple(repeated.get("resource", ()))),
        utcnow(),
        request.headers.get("origin"),
    )
    return Response(body, headers=NO_STORE)


# --- userinfo -------------------------------------------------------------------------


@route(
    metadata.USERINFO_PATH,
    http_method=["GET", "POST"],
    include_in_schema=False,
    exception_handlers=OAUTH_ERRORS,
    status_code=200,
)
async def userinfo(request: Request[Any, Any, Any], runtime: RuntimeDep) -> Response[Any]:
    """OIDC Core §5.3: the claims the access token's scopes release about its user."""
    now = utcnow()
    claims = verify_access_token(
        await runtime.keyset(),
        await presented_access_token(request),
        issuer=runtime.settings.issuer,
        now=now,
    )
    # Only tokens meant for this client's own use (no resource indicator) reach userinfo.
    if claims["aud"] != claims["client_id"]:
        raise InvalidTokenError("The access token is meant for another audience.")
    live = await standing(runtime, claims, now)
    if live is None:
        raise InvalidTokenError()
    check_origin(live.client, request.headers.get("origin"), bearer=True)
    if "openid" not in live.scope:
        raise InsufficientScopeError("The access token lacks the openid scope.", scope="openid")
    if live.user is None:
        raise InvalidTokenError("The access token has no user.")
    return Response(user_claims(live.user, live.scope), headers=NO_STORE)


# --- introspection and revocation -----------------------------------------------------


# What introspection (RFC 7662 §2.1) and revocation (RFC 7009 §2.1) read; others are ignored.
TOKEN_PARAMETERS = client_auth.PARAMETERS | {"token", "token_type_hint"}


def _required_token(form: dict[str, str]) -> str:
    """The ``token`` parameter, read only once the caller is authenticated: RFC 7009 §2.1
    validates the client first, so a stranger learns nothing about its request."""
    presented = form.get("token")
    if presented is None:
        raise InvalidRequestError("token is required.")
    return presented


def _looks_like_jwt(value: str) -> bool:
    return value.count(".") == 2


@post(
    metadata.INTROSPECTION_PATH,
    include_in_schema=False,
    exception_handlers=OAUTH_ERRORS,
    status_code=200,
)
async def introspect(request: Request[Any, Any, Any]) -> Response[Any]:
    """RFC 7662, for confidential clients: any of our access tokens, and the caller's own
    refresh tokens. Anything not live answers ``{"active": false}`` and nothing more.
    """
    runtime = _runtime(request.scope)
    form, _ = await read_form(request, TOKEN_PARAMETERS)
    credentials = parse_client_credentials(request.headers.get("authorization"), form)
    client = await authenticate_client(runtime.db, runtime.clients, credentials)
    if client.is_public:
        raise ClientAuthenticationFailed("Public clients cannot introspect tokens.")
    presented = _required_token(form)
    settings, now = runtime.settings, utcnow()
    keyset = await runtime.keyset()
    answer: dict[str, Any] = {"active": False}
    if _looks_like_jwt(presented):
        try:
            claims = verify_access_token(keyset, presented, issuer=settings.issuer, now=now)
        except InvalidTokenError:
            claims = None
        # Only a token that verifies and is unexpired costs a look at how it stands.
        live = None if claims is None else await standing(runtime, claims, now)
        if live is not None:
            answer = {"active": True, "token_type": "Bearer"} | live.claims
        return Response(answer, headers=NO_STORE)
    async with runtime.db.transaction() as session:
        live = await _refresh_token_now(session, client, presented, settings.issuer, now)
    return Response(live or answer, headers=NO_STORE)


async def _refresh_token_now(
    session: AsyncSession, client: OAuthClient, presented: str, issuer: str, now: datetime
) -> dict[str, Any] | None:
    """The caller's own refresh token as a refresh would take it now, with the scope that
    refresh would issue (the row keeps what was granted, RFC 6749 §6); None when the token
    endpoint would refuse it."""
    live = await refresh_now(session, client, digest(presented), now)
    if live is None:
        return None
    found = live.previous
    answer = {
        "active": True,
        "token_type": "refresh_token",
        "iss": issuer,
        "client_id": found.client_id,
        "scope": issued_scope(live.scope, live.user, client),
        "sub": str(live.user.id),
        "iat": int(found.created_at.timestamp()),
        "exp": int(found.expires_at.timestamp()),
    }
    if found.account_id is not None:
        answer["account_id"] = str(found.account_id)
    return answer


def _issued_to(caller: OAuthClient, owner: str) -> bool:
    """Whether ``caller`` may revoke a token issued to client ``owner`` (RFC 7009 §2.1).

    Another client's token is never revoked. A confidential client is refused with an
    error, as §2.1 asks; a public client, which anyone can call as, gets the answer an
    unknown token gets, lest the endpoint tell anyone which stolen tokens are live.
    """
    if owner == caller.client_id:
        return True
    if caller.is_public:
        return False
    raise InvalidRequestError("The token was not issued to this client.")


@post(
    metadata.REVOCATION_PATH,
    include_in_schema=False,
    exception_handlers=OAUTH_ERRORS,
    status_code=200,
)
async def revoke(request: Request[Any, Any, Any]) -> Response[Any]:
    """RFC 7009: 200 whether or not the token was known (§2.2); only the client a token was
    issued to can revoke it (``_issued_to``). A refresh token takes its whole family with it.
    """
    runtime = _runtime(request.scope)
    form, _ = await read_form(request, TOKEN_PARAMETERS)
    credentials = parse_client_credentials(request.headers.get("authorization"), form)
    client = await authenticate_client(runtime.db, runtime.clients, credentials)
    check_origin(client, request.headers.get("origin"))
    presented = _required_token(form)
    settings, now = runtime.settings, utcnow()
    keyset = await runtime.keyset()
    async with runtime.db.transaction() as session:
        if _looks_like_jwt(presented):
            try:
                claims = verify_access_token(keyset, presented, issuer=settings.issuer, now=now)
            except InvalidTokenError:
                claims = None
            if claims is not None and _issued_to(client, claims["client_id"]):
                expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
                await revocations.revoke_access_token(session, claims["jti"], expires_at, now)
        else:
            found = await refresh.find_refresh_token(session, digest(presented), now)
            if found is not None and _issued_to(client, found.client_id):
                await refresh.revoke_family(session, found.family_id, now)
    # RFC 7009 §2.2 gives the answer no content; node-oidc-provider sends none either.
    return NoContent(NO_STORE)


ROUTES = [discovery, jwks, token, userinfo, introspect, revoke]
