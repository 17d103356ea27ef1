"""uvicorn's httptools protocol with bounds on how much and how long a client may send.

uvicorn keeps a request head (request line and headers) of any size in memory until it ends
(an 8 MB header reached the app), and waits forever for a head or a body that comes a byte at
a time, or for a first request on a connection that sends nothing: a few hundred such
connections hold every file descriptor a process has (slowloris). Like Node (16 KiB of head,
60 s for headers) and nginx (4 x 8 KiB, 60 s), a head longer than ``MAX_HEAD_BYTES`` is
answered 431, and a request not received whole within the read timeout 408, and the
connection is closed, before the app sees more of it.

The other way round, an answer the client does not read waits in the process's write buffer,
and closing the connection waits for that buffer to empty: a client that never reads would
hold the connection for ever. Like nginx's ``send_timeout``, an answer of which the client
takes nothing for the read timeout is dropped with its connection.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# Ample for our cookies and the longest authorization request we accept.
MAX_HEAD_BYTES = 32 * 1024


def _refusal(status: bytes, message: bytes) -> bytes:
    return (
        b"HTTP/1.1 %s\r\n"
        b"content-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\n"
        b"connection: close\r\n"
        b"\r\n%s"
    ) % (status, len(message), message)


_HEAD_TOO_LARGE = _refusal(
    b"431 Request Header Fields Too Large", b"Request line and headers are too long."
)
_TOO_SLOW = _refusal(b"408 Request Timeout", b"The request was not received in time.")


class _HeadTooLarge(Exception):
    pass


class BoundedProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout
        self._read_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None
        # Bytes received since the current head began; None while a body is read.
        self._head_bytes: int | None = 0
        self._head_too_large = False

    # --- how long ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # From the start: a connection that never sends a byte is also held to it.
        self._arm()
        # Writing pauses whenever the kernel leaves any of an answer to the process's buffer,
        # which starts the send deadline; the default allowance (64 KiB) would leave an answer
        # up to that size waiting untimed.
        transport.set_write_buffer_limits(high=0)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # A keep-alive timer armed in on_message_complete must not close this request.
        self._unset_keepalive_if_required()
        self._arm()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()
        self._head_bytes = 0
        cycle = self.cycle
        if cycle is not None and cycle.response_complete and not self.transport.is_closing():
            # Answered before its body ended: uvicorn armed the keep-alive timer then, and the
            # body's last bytes cancelled it. Idle from here, the connection needs it again, or
            # it stays open, timed by nothing, for as long as the client likes.
            self._unset_keepalive_if_required()
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._stop_send_deadline()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._read_deadline is None:
            self._read_deadline = self.loop.call_later(self._read_timeout, self._read_timed_out)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        cycle = self.cycle
        if self.pipeline:
            # This request was pipelined behind one the app is still answering, and uvicorn
            # reads no more of it until then: the client is not the one being slow.
            self._arm()
        elif cycle is None or cycle.response_complete or not cycle.response_started:
            self._refuse(_TOO_SLOW)
        else:
            self.transport.close()  # the app answered early and the body still trickles in

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stop_send_deadline()
        self._watch_sending(None)

    def resume_writing(self) -> None:
        self._stop_send_deadline()
        super().resume_writing()

    def _watch_sending(self, buffered_before: int | None) -> None:
        """Drop the connection if the client took nothing of the buffered answer since the
        last look, a read timeout ago. While writing is paused nothing is added to the buffer
        (uvicorn waits to send more), so a buffer no smaller means no progress."""
        buffered = self.transport.get_write_buffer_size()
        if buffered_before is not None and buffered >= buffered_before:
            self._send_deadline = None
            self.transport.abort()  # close() would wait for the buffer to empty
            return
        self._send_deadline = self.loop.call_later(
            self._read_timeout, self._watch_sending, buffered
        )

    def _stop_send_deadline(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    # --- how much ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
            cycle = self.cycle
            if cycle is None or cycle.response_complete:
                # Between requests: empty lines, which the parser skips without starting a
                # request (RFC 9112 §2.2), stop uvicorn's keep-alive timer all the same. They
                # start the next request's time instead, or a line break every few seconds
                # would hold the connection for ever.
                self._arm()
        super().data_received(data)
        # A head still unfinished after this many bytes can only be too long.
        if self._head_bytes is not None and self._head_bytes > MAX_HEAD_BYTES:
            self._refuse(_HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        # A whole head can arrive in one read: measure what the parser collected.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._head_too_large = True
            # httptools stops parsing and uvicorn answers its parse error (send_400_response).
            raise _HeadTooLarge
        self._head_bytes = None
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        if self._head_too_large:
            self._refuse(_HEAD_TOO_LARGE)
        else:
            super().send_400_response(msg)

    def _refuse(self, answer: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()
