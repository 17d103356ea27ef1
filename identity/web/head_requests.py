"""ASGI middleware: HEAD answered by the GET handler, with the body left out.

RFC 9110 §9.3.2: a HEAD gets the status and headers a GET would, and no content; §9.1:
every general-purpose server MUST support it. Litestar routes HEAD only to handlers that
name it, so without this every page and document answered load balancers, uptime monitors
and link checkers with 405. The handler sees a GET: a HEAD does what a GET does, except
spend what a page shows once (``asked_with_head``), as its body is never seen.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

# Set in the GET's scope when it stands for a HEAD.
_ASKED_WITH_HEAD = "identity.asked_with_head"


def asked_with_head(request: Request[Any, Any, Any]) -> bool:
    """Whether this GET is a HEAD: a handler that spends something on being asked (what a
    page shows once) must not spend it on an answer whose body nobody sees."""
    return bool(request.scope.get(_ASKED_WITH_HEAD))


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
        as_get = {**scope, "method": "GET", _ASKED_WITH_HEAD: True}
        try:
            await app(as_get, receive, send_without_body)
        finally:
            scope.update(
                {k: v for k, v in as_get.items() if k not in scope and k != _ASKED_WITH_HEAD}
            )

    return middleware
