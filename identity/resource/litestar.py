"""Litestar integration: a plugin, a guard per permission, and an ``access_token`` dependency.

    server = ResourceServer(ResourceServerConfig(issuer=..., audience=...))
    app = Litestar([invoices], plugins=[ResourceServerPlugin(server)])

    @get("/accounts/{account_id:uuid}/invoices", guards=[require_permission("invoices")])
    async def invoices(account_id: FromPath[UUID], access_token: AccessTokenDep) -> ...: ...

Refusals become 401/403 with ``WWW-Authenticate`` (RFC 6750 §3); an unreachable issuer 503.
The token is validated once per request and kept in ``scope["auth"]`` (``request.auth``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

from litestar import Request, Response
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import WebSocketException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins import InitPluginProtocol
from litestar.types import Guard

from identity.resource.claims import AccessToken
from identity.resource.decisions import check_permission
from identity.resource.errors import (
    BearerTokenError,
    IssuerUnavailable,
    error_response,
    websocket_close_code,
)
from identity.resource.server import ResourceServer

_STATE_KEY = "identity_resource_server"

# A handler parameter ``access_token: AccessTokenDep`` receives the request's validated token.
AccessTokenDep: TypeAlias = NamedDependency[AccessToken]


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> AccessToken:
    """The request's validated access token (validated on first use, then kept)."""
    token = connection.scope.get("auth")
    if isinstance(token, AccessToken):
        return token
    server: ResourceServer = connection.app.state[_STATE_KEY]
    token = await server.authenticate(connection.headers.get("authorization"))
    connection.scope["auth"] = token
    return token


@contextmanager
def _closing_websockets(connection: ASGIConnection[Any, Any, Any, Any]) -> Iterator[None]:
    """On a WebSocket, a refusal closes the handshake (1008, or 1013 while the issuer cannot
    be reached): Litestar closes one with any exception but ``WebSocketException`` as 4500
    Internal Server Error, which made a bad token look like our crash."""
    try:
        yield
    except (BearerTokenError, IssuerUnavailable) as exc:
        if connection.scope["type"] != ScopeType.WEBSOCKET:
            raise
        # The description is fixed text of ours; what failed at the issuer is not the caller's.
        reason = exc.description if isinstance(exc, BearerTokenError) else "Try again later."
        raise WebSocketException(detail=reason, code=websocket_close_code(exc)) from None


def require_permission(permission: str, account_param: str = "account_id") -> Guard:
    """A guard: the bearer needs ``permission`` in the account named by a path parameter."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        with _closing_websockets(connection):
            token = await authenticate(connection)
            check_permission(token, permission, str(connection.path_params[account_param]))

    return guard


async def provide_access_token(request: ASGIConnection[Any, Any, Any, Any]) -> AccessToken:
    """The ``access_token`` dependency, for HTTP and WebSocket routes alike. ``request`` is
    the reserved name Litestar 2 injects the connection under; typed ``ASGIConnection`` (what
    both ``Request`` and ``WebSocket`` are), it is also the type Litestar 3 resolves it by,
    where ``Request`` would stop resolving on a WebSocket route."""
    with _closing_websockets(request):
        return await authenticate(request)


def _refusal(
    _: Request[Any, Any, Any], exc: BearerTokenError | IssuerUnavailable
) -> Response[bytes]:
    status, headers, body = error_response(exc)
    return Response(body, status_code=status, headers=headers, media_type="application/json")


class ResourceServerPlugin(InitPluginProtocol):
    """Registers the server, the ``access_token`` dependency and the refusal responses, and
    closes the server's HTTP client when the app shuts down."""

    def __init__(self, server: ResourceServer) -> None:
        self.server = server

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        app_config.state[_STATE_KEY] = self.server
        app_config.dependencies["access_token"] = Provide(provide_access_token)
        app_config.exception_handlers[BearerTokenError] = _refusal
        app_config.exception_handlers[IssuerUnavailable] = _refusal
        app_config.on_shutdown.append(self.server.aclose)
        return app_config
