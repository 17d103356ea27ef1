"""Our own addresses in ``Location`` headers, under the issuer's path.

With ``IDENTITY_ISSUER=https://host/auth`` a reverse proxy publishes the service under
``/auth`` and takes that off each request, so the routes, and every redirect the handlers
write (``/login?flow=…``, a created resource's ``/api/v1/…``), know nothing of it. A
browser sent to ``/login`` would leave the service; here the path is put back, in one
place. Absolute addresses (a client's redirect URI) are left as they are.
"""

from __future__ import annotations

from litestar.types import ASGIApp, Message, Receive, Scope, Send


def public_path_middleware(app: ASGIApp, path: str) -> ASGIApp:
    if not path:
        return app
    prefix = path.encode()

    def published(name: bytes, value: bytes) -> tuple[bytes, bytes]:
        # "//host/…" is another site's address (scheme-relative), not one of our paths.
        if name.lower() == b"location" and value.startswith(b"/") and value[1:2] != b"/":
            return name, prefix + value
        return name, value

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_published(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [published(name, value) for name, value in message.get("headers", ())]
                message = {**message, "headers": headers}
            await send(message)

        await app(scope, receive, send_published if scope["type"] == "http" else send)

    return middleware
