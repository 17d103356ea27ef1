"""ASGI middleware: HEAD answered by the GET handler, with the body left out.

RFC 9110 §9.3.2: a HEAD gets the status and headers a GET would, and no content; §9.1:
every general-purpose server MUST support it. Litestar routes HEAD only to handlers that
name it, so without this every page and document answered load balancers, uptime monitors
and link checkers with 405. The handler sees a GET: a HEAD does exactly what a GET does.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send


def head_as_get_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await app(scope, receive, send)
            return

        async def send_without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                # Content-Length stays the GET's, as §9.3.2 allows; the server sends none.
                message = {**message, "body": b""}
            await send(message)

        # A copy: the server reads its own scope, which must still say HEAD. What the router
        # writes into the copy (the matched route, for the metrics) goes back out.
        as_get = {**scope, "method": "GET"}
        try:
            await app(as_get, receive, send_without_body)
        finally:
            scope.update({k: v for k, v in as_get.items() if k not in scope})

    return middleware
