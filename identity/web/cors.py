"""ASGI middleware: the CORS headers that let a browser app on another origin call us.

As node-oidc-provider does by default. The published documents (discovery, JWKS) are
public: any page may read them, with or without an ``Origin``. The token, revocation and
userinfo endpoints answer any preflight (it carries neither body nor credentials, so the
client is not known yet), then echo a browser request's ``Origin`` unless the endpoint
refused it for its client (``identity.oauth.origins``), which it marks with ``refuse``.
Answers that stop before the client is known (a malformed request, a failed client
authentication, an expired token) keep the origin, so the page can read why: they say
nothing a page on any origin could not learn from a server of its own.

Nothing else gets CORS: the authorization endpoint and hosted pages are navigated to, not
fetched; introspection and the management API are for servers. No answer allows
credentials: none of these endpoints reads a cookie. Litestar's ``CORSConfig`` applies one
static list of origins to the whole app, so it can express neither rule.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from identity.oauth import metadata

# Every document we publish; GET (HEAD arrives as one, identity.web.head_requests). Their
# handler (identity.web.oauth.send_published) sends this header itself, with its prebuilt
# others, on the busiest path of all; this middleware answers only their preflights.
OPEN_PATHS = frozenset({metadata.DISCOVERY_PATH, metadata.JWKS_PATH})
OPEN_TO_EVERY_ORIGIN = (b"access-control-allow-origin", b"*")
CLIENT_BASED: dict[str, bytes] = {
    metadata.TOKEN_PATH: b"POST",
    metadata.REVOCATION_PATH: b"POST",
    metadata.USERINFO_PATH: b"GET, POST",
}
# What these endpoints read from a request; DPoP is not among them.
CLIENT_BASED_HEADERS = b"Authorization, Content-Type"
# So that a page can read the Bearer challenge of a refused token.
EXPOSED_HEADERS = b"WWW-Authenticate"
MAX_AGE = b"3600"
# Set in a request's scope state when its endpoint refused its origin for its client.
REFUSED = "cors_refused"


def refuse(scope: Scope) -> None:
    """Leave this answer without CORS headers: the page's origin may not read it."""
    scope.setdefault("state", {})[REFUSED] = True


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value  # type: ignore[no-any-return]
    return None


def _endpoint(scope: Scope) -> str:
    # Litestar routes "/token/" to "/token": the same endpoint gets the same CORS.
    path: str = scope.get("path", "")
    return path[:-1] if len(path) > 1 and path.endswith("/") else path


def _preflight_headers(path: str, scope: Scope, origin: bytes) -> list[tuple[bytes, bytes]]:
    if path in OPEN_PATHS:
        headers = [OPEN_TO_EVERY_ORIGIN, (b"access-control-allow-methods", b"GET")]
        # Any header a page adds to fetching a public document (If-None-Match, say) is fine.
        requested = _header(scope, b"access-control-request-headers")
        if requested:
            headers.append((b"access-control-allow-headers", requested))
    else:
        headers = [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-allow-methods", CLIENT_BASED[path]),
            (b"access-control-allow-headers", CLIENT_BASED_HEADERS),
        ]
    return [*headers, (b"access-control-max-age", MAX_AGE)]


def cors_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        path = _endpoint(scope)
        if scope["type"] != "http" or (path not in OPEN_PATHS and path not in CLIENT_BASED):
            await app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            origin = _header(scope, b"origin")
            if origin is None or _header(scope, b"access-control-request-method") is None:
                await app(scope, receive, send)  # not a preflight
                return
            scope["path_template"] = path  # the metrics' route label: a fixed path
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": _preflight_headers(path, scope, origin),
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        origin = None if path in OPEN_PATHS else _header(scope, b"origin")
        if origin is None:  # an open document, which says so itself; or a server: not CORS
            await app(scope, receive, send)
            return
        added = [
            (b"access-control-allow-origin", origin),
            (b"vary", b"Origin"),
            (b"access-control-expose-headers", EXPOSED_HEADERS),
        ]

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start" and not scope.get("state", {}).get(REFUSED):
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        await app(scope, receive, send_with_cors)

    return middleware
