"""The read timeout of identity/bounded_http.py times the client's sending, never the app."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import socket
from collections.abc import AsyncIterator

import pytest
import uvicorn
from litestar.types import ASGIApp, Receive, Scope, Send

from identity.bounded_http import BoundedProtocol
from tests.processes import free_port

READ_TIMEOUT = 1
KEEP_ALIVE = 1


async def _sleepy_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers ``GET /<seconds>`` after sleeping that long."""
    await asyncio.sleep(float(scope["path"].strip("/")))
    body = scope["path"].encode()
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


@contextlib.asynccontextmanager
async def _serving(app: ASGIApp) -> AsyncIterator[uvicorn.Server]:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        port=free_port(),
        lifespan="off",
        log_level="warning",
        timeout_keep_alive=KEEP_ALIVE,
        http=functools.partial(BoundedProtocol, read_timeout=READ_TIMEOUT),  # type: ignore[arg-type]
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    yield server
    server.should_exit = True
    await serving


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with _serving(_sleepy_app) as server:
        yield server.config.port


async def _answers(port: int, requests: bytes, expected: int, later: bytes = b"") -> bytes:
    """Send ``requests`` in one write (pipelined), ``later`` a moment after, and read until
    ``expected`` answers came or the server hung up."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(requests)
    await asyncio.sleep(0.2)
    writer.write(later)
    await writer.drain()
    received = b""
    while len(re.findall(rb"HTTP/1.1 \d+ .*?\r\n\r\n/[\d.]+", received, re.S)) < expected:
        data = await asyncio.wait_for(reader.read(65536), READ_TIMEOUT * 5)
        if not data:
            break
        received += data
    writer.close()
    return received


def _get(seconds: float) -> bytes:
    return b"GET /%s HTTP/1.1\r\nHost: x\r\n\r\n" % str(seconds).encode()


async def test_an_app_slower_than_the_read_timeout_still_answers(port: int) -> None:
    answer = await _answers(port, _get(READ_TIMEOUT * 1.5), 1)
    assert answer.startswith(b"HTTP/1.1 200 ")


async def test_a_request_pipelined_behind_a_slow_one_is_not_timed_out(port: int) -> None:
    # The second request's body is not read until the app has answered the first: it is
    # not the client that keeps it waiting.
    post = b"POST /0 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfive."
    answer = await _answers(port, _get(READ_TIMEOUT * 1.5) + post, 2, later=b"more.")
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer
    assert b"408" not in answer


async def test_a_connection_answered_before_its_body_ended_still_goes_idle(port: int) -> None:
    # The app answers without reading the body; the rest of it arrives after the answer, and
    # then nothing more: the keep-alive timer must still close the connection.
    post = b"POST /0 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfive."
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post)
    answer = await asyncio.wait_for(reader.readuntil(b"/0"), READ_TIMEOUT * 5)
    assert answer.startswith(b"HTTP/1.1 200 ")
    writer.write(b"more.")
    await writer.drain()
    try:
        assert await asyncio.wait_for(reader.read(), (KEEP_ALIVE + READ_TIMEOUT) * 3) == b""
    finally:
        writer.close()


async def test_the_keep_alive_timer_does_not_close_the_next_request(port: int) -> None:
    post = b"POST /0 HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nfive."
    # The body's end and a request the app takes longer than the keep-alive time to answer.
    answer = await _answers(port, post, 2, later=b"more." + _get(KEEP_ALIVE * 1.5))
    assert answer.count(b"HTTP/1.1 200 ") == 2, answer


async def test_line_breaks_between_requests_do_not_keep_a_connection_open(port: int) -> None:
    # A parser skips empty lines before a request line (RFC 9112 §2.2) without starting a
    # request, while any bytes received stop uvicorn's keep-alive timer: a client sending a
    # line break every so often after its first request would hold the connection for ever.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(_get(0))
    answer = await asyncio.wait_for(reader.readuntil(b"/0"), READ_TIMEOUT * 5)
    assert answer.startswith(b"HTTP/1.1 200 ")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (KEEP_ALIVE + READ_TIMEOUT) * 3
    closed = False
    try:
        while not closed and loop.time() < deadline:
            writer.write(b"\r\n")
            await writer.drain()
            try:
                closed = await asyncio.wait_for(reader.read(65536), KEEP_ALIVE / 2) == b""
            except TimeoutError:
                continue
    except ConnectionError:
        closed = True
    finally:
        writer.close()
    assert closed


# More than the kernel's buffers take on behalf of a client that reads nothing.
LARGE_BODY = 16 * 1024 * 1024


async def _large_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers every request with ``LARGE_BODY`` bytes, in one piece as our pages are sent."""
    body = b"x" * LARGE_BODY
    length = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": length})
    await send({"type": "http.response.body", "body": body})


async def test_a_client_that_stops_reading_its_answer_is_cut_off() -> None:
    # Slowloris the other way round: the answer waits in our buffer for a client that never
    # reads it, and closing the connection waits for the buffer to empty, so it never ends.
    async with _serving(_large_app) as server:
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", server.config.port))
        try:
            client.sendall(_get(0))
            loop = asyncio.get_running_loop()
            while not server.server_state.connections:  # noqa: ASYNC110 (nor for connections)
                await asyncio.sleep(0.01)
            deadline = loop.time() + (KEEP_ALIVE + READ_TIMEOUT) * 3
            while server.server_state.connections and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            assert not server.server_state.connections
        finally:
            client.close()


async def test_a_client_reading_steadily_gets_its_whole_answer() -> None:
    # Taking longer than the read timeout over the whole answer, but always taking some.
    async with _serving(_large_app) as server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.config.port, limit=LARGE_BODY
        )
        writer.write(_get(0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
            received = 0
            while received < LARGE_BODY:
                data = await asyncio.wait_for(reader.read(1024 * 1024), READ_TIMEOUT * 5)
                assert data, f"closed after {received} bytes"
                received += len(data)
                await asyncio.sleep(READ_TIMEOUT / 10)
        finally:
            writer.close()
        assert loop.time() - started > READ_TIMEOUT
