"""Conditional GET (RFC 9110 §13.1.2): a request whose If-None-Match names the current ETag is
answered 304 Not Modified, without the content the client holds already.

The published documents (discovery, JWKS) ask ``etag_matches`` themselves, with their
prebuilt ETags; static files get their ETag from Litestar only as the answer starts, so
``not_modified_middleware`` turns that answer into a 304 on its way out.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send

# What a 200 says about its content, which a 304 leaves out (RFC 9110 §15.4.5: the ETag,
# Cache-Control, Vary and the like stay; Last-Modified adds nothing beside the ETag).
_CONTENT_HEADERS = frozenset(
    {b"content-length", b"content-type", b"content-disposition", b"last-modified"}
)


def etag_matches(scope: Scope, etag: bytes) -> bool:
    """Whether the request's If-None-Match names ``etag`` (weakly, as §13.1.2 compares: a
    ``W/`` before it counts too) or is ``*``."""
    return any(
        name == b"if-none-match" and (etag in value or value.strip() == b"*")
        for name, value in scope["headers"]
    )


def not_modified_middleware(app: ASGIApp) -> ASGIApp:
    """A 200 with an ETag the request names becomes a 304 with no body."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        # A HEAD arrives as a GET (identity.web.head_requests).
        if scope["type"] != "http" or scope["method"] != "GET":
            await app(scope, receive, send)
            return
        not_modified = False

        async def send_conditionally(message: Message) -> None:
            nonlocal not_modified
            if message["type"] == "http.response.start" and message["status"] == 200:
                headers = [(name.lower(), value) for name, value in message["headers"]]
                etag = next((value for name, value in headers if name == b"etag"), None)
                if etag is not None and etag_matches(scope, etag):
                    not_modified = True
                    kept = [(n, v) for n, v in headers if n not in _CONTENT_HEADERS]
                    message = {**message, "status": 304, "headers": kept}
            elif message["type"] == "http.response.body" and not_modified:
                # The file is read all the same; only its last (empty) chunk is sent.
                if message.get("more_body", False):
                    return
                message = {**message, "body": b""}
            await send(message)

        await app(scope, receive, send_conditionally)

    return middleware
