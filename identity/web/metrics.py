"""``/metrics`` for Prometheus, and the ASGI middleware that counts and times every request.

Requests are labelled by Litestar's route template (``/api/v1/users/{user_id}``), never
by the raw path, so an id in a URL cannot grow the number of series without bound; a
request no route matched is labelled ``unmatched``.

The middleware runs on every request, including the pre-serialised discovery and JWKS
answers that take well under a millisecond, so it keeps its work small: the labelled
children of a (method, route, status) are looked up once and kept, and a request costs a
dict lookup and one histogram observation.
"""

from __future__ import annotations

import time

from litestar import Response, get
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Histogram

from identity.metrics import REQUESTS, exposition

UNMATCHED = "unmatched"

# (method, route, status) -> its histogram; bounded by the routes we have.
_children: dict[tuple[str, str, int], Histogram] = {}


def _observe(method: str, route: str, status: int, seconds: float) -> None:
    key = (method, route, status)
    child = _children.get(key)
    if child is None:
        child = _children[key] = REQUESTS.labels(method, route, str(status))
    child.observe(seconds)


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_with_status)
        finally:
            # Litestar's router writes the matched route's template into the scope.
            route = scope.get("path_template") or UNMATCHED
            _observe(scope["method"], route, status, time.perf_counter() - started)

    return middleware


# On a thread: the text takes ~0.3 ms of CPU per series (a route and status is a histogram of
# 17 lines), several times that when it sums the workers' files, so a scrape of a busy server
# took tens of milliseconds, which on the event loop held up every request in flight.
@get("/metrics", include_in_schema=False, cache=False, sync_to_thread=True)
def metrics() -> Response[bytes]:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
