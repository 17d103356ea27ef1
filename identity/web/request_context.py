"""ASGI middleware: a request id for every request, one access-log line each, and the
headers every answer carries."""

from __future__ import annotations

import random
import re
import time

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from identity.logs import log_request, request_id_var

# An incoming X-Request-ID is kept (it ties our logs to the proxy's) only when it is short
# and plain, so it cannot forge log lines or bloat them.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Request ids only correlate log lines (a caller may choose its own), so they need to be
# unique, not unpredictable: 128 bits from the module's PRNG (reseeded after a fork) spare
# the getrandom system call that uuid4 makes per request.


# On every answer, JSON, static files and errors included, not only pages: no browser may
# read one as another type than it is sent as.
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# Over https, every answer tells the browser to use nothing else for a year (HSTS): a visitor
# who types the bare host name is not sent a plain-http sign-in page that someone on the
# network could rewrite. Not includeSubDomains: the issuer's host may not own its siblings'.
_HSTS = (b"strict-transport-security", b"max-age=31536000")
# Set in a request's scope state when the client hung up before its body was whole.
CLIENT_GONE = "client_gone"


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SAFE_ID.match(text) else None
    return None


def request_context_middleware(app: ASGIApp, *, https: bool = False) -> ASGIApp:
    """``https``: browsers reach the service over https (``Settings.https``)."""
    always = [_NOSNIFF, _HSTS] if https else [_NOSNIFF]

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or f"{random.getrandbits(128):032x}"
        added = [(b"x-request-id", request_id.encode()), *always]
        token = request_id_var.set(request_id)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def receive_noting_disconnect() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect":
                state[CLIENT_GONE] = True
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), *added]}
            await send(message)

        try:
            await app(scope, receive_noting_disconnect, send_with_id)
        finally:
            duration_ms = round((time.perf_counter() - started) * 1000, 2)
            log_request(request_id, scope["method"], scope["path"], status, duration_ms)
            request_id_var.reset(token)

    return middleware
