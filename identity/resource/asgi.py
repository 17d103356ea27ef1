"""Plain ASGI middleware: any Python web service can demand our bearer tokens.

Every HTTP request and WebSocket handshake must carry a valid token; the middleware answers
401 (and 403 when a :class:`PathPermission` rule is not met) itself, so the wrapped app only
sees authenticated requests, but for CORS preflights, which browsers send without
credentials: those reach the app as they came, for its CORS layer to answer, and its answer
is forwarded only when that layer gave it. The validated
:class:`AccessToken` is put in ``scope["auth"]`` and ``scope["state"]["access_token"]``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from identity.resource.claims import AccessToken
from identity.resource.decisions import check_permission
from identity.resource.errors import (
    BearerTokenError,
    IssuerUnavailable,
    error_response,
    websocket_close_code,
)
from identity.resource.server import ResourceServer
from identity.resource.validator import token_required

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SLASHES = re.compile(r"/{2,}")


@dataclass(frozen=True, slots=True)
class PathPermission:
    """Requests whose path matches ``pattern`` (from its start) need ``permission`` in the
    account its named group ``account_id`` captures, e.g.
    ``PathPermission(r"/accounts/(?P<account_id>[^/]+)/invoices", "invoices")``. The path is
    the one the app routes on: what follows the ``root_path`` it is served under.
    """

    pattern: str
    permission: str
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = re.compile(self.pattern)
        if "account_id" not in compiled.groupindex:
            raise ValueError("the pattern needs a named group account_id")
        object.__setattr__(self, "_compiled", compiled)

    def check(self, token: AccessToken, path: str) -> None:
        match = self._compiled.match(path)
        if match is not None:
            check_permission(token, self.permission, match["account_id"])


class BearerAuthMiddleware:
    def __init__(
        self, app: ASGIApp, server: ResourceServer, *, rules: Sequence[PathPermission] = ()
    ) -> None:
        self.app = app
        self.server = server
        self.rules = tuple(rules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if _is_preflight(scope):
            await self.app(scope, receive, _only_cors_answers(scope, send))
            return
        try:
            token = await self.server.authenticate(_authorization(scope))
            path = _route_path(scope)
            for rule in self.rules:
                rule.check(token, path)
        except (BearerTokenError, IssuerUnavailable) as exc:
            await _refuse(scope, send, exc)
            return
        # ASGI: a middleware changes a copy of the scope, never the one it was given.
        state = {**scope.get("state", {}), "access_token": token}
        await self.app({**scope, "auth": token, "state": state}, receive, send)


def _route_path(scope: Scope) -> str:
    """The path within the app. ASGI's ``path`` includes the ``root_path`` an app is served
    under (a proxy's prefix, a Mount), and frameworks route on what follows it, as
    Starlette's ``get_route_path`` does: a rule matched against the whole path would never
    apply there, and let every token through. Runs of ``/`` count as one, as Litestar's router
    skips empty segments: ``/accounts//A/invoices`` reaches account A's route there."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) :][:1] in ("", "/"):
        path = path[len(root_path) :]
    return _SLASHES.sub("/", path)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _authorization(scope: Scope) -> str | None:
    return _header(scope, b"authorization")


def _is_preflight(scope: Scope) -> bool:
    """A CORS preflight (Fetch standard): ``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``. Browsers never attach credentials to one, so it cannot
    carry a token; it asks only whether the real request may be sent, and that request is
    checked as any other. A plain ``OPTIONS`` is no preflight and stays protected."""
    return (
        scope["type"] == "http"
        and scope.get("method") == "OPTIONS"
        and _header(scope, b"origin") is not None
        and _header(scope, b"access-control-request-method") is not None
    )


def _only_cors_answers(scope: Scope, send: Send) -> Send:
    """Forward the app's answer to a preflight only if its CORS layer gave it (it allows an
    origin); anything else is refused as a request without a token. Anyone can send a
    preflight's two headers: a handler that does not look at the method, in an app with no
    CORS layer in front of it, would otherwise serve its data to a request without a token."""
    forwarded = False

    async def send_if_cors(message: Message) -> None:
        nonlocal forwarded
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            forwarded = any(name.lower() == b"access-control-allow-origin" for name, _ in headers)
            if not forwarded:
                await _refuse(scope, send, token_required())
        if forwarded:
            await send(message)

    return send_if_cors


async def _refuse(scope: Scope, send: Send, exc: BearerTokenError | IssuerUnavailable) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": websocket_close_code(exc)})
        return
    status, headers, body = error_response(exc)
    raw_headers = [(name.encode(), value.encode()) for name, value in headers.items()]
    raw_headers += [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
