"""uvicorn's httptools protocol with a bound on a request's head (request line and headers).

httptools keeps a head of any size in memory until it ends, so one client could make a
server process hold megabytes per connection (an 8 MB header reached the app). Like Node
(16 KiB) and nginx (4 x 8 KiB), a head longer than ``MAX_HEAD_BYTES`` is answered 431 and
its connection closed, before the app runs.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Ample for our cookies and the longest authorization request we accept.
MAX_HEAD_BYTES = 32 * 1024

_MESSAGE = b"Request line and headers are too long."
_REFUSAL = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\n"
    b"connection: close\r\n"
    b"\r\n%s"
) % (len(_MESSAGE), _MESSAGE)


class _HeadTooLarge(Exception):
    pass


class BoundedHeadProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Bytes received since the current head began; None while a body is read.
        self._head_bytes: int | None = 0
        self._head_too_large = False

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # A head still unfinished after this many bytes can only be too long.
        if self._head_bytes is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse()

    def on_headers_complete(self) -> None:
        # A whole head can arrive in one read: measure what the parser collected.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._head_too_large = True
            # httptools stops parsing and uvicorn answers its parse error (send_400_response).
            raise _HeadTooLarge
        self._head_bytes = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _refuse(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(_REFUSAL)
            self.transport.close()
