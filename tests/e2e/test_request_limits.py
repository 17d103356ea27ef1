"""``identity serve`` bounds what a client sends: a head over 32 KiB gets 431, a request not
received whole within ``IDENTITY_REQUEST_READ_TIMEOUT`` gets 408, and the connection closes."""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from identity.bounded_http import MAX_HEAD_BYTES
from tests.processes import identity_server

READ_TIMEOUT = 2


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    # The limits live in the HTTP layer, not the database: one embedded server serves all.
    data_dir = tmp_path_factory.mktemp("request-limits")
    env = {"IDENTITY_DATA_DIR": str(data_dir), "IDENTITY_REQUEST_READ_TIMEOUT": str(READ_TIMEOUT)}
    with identity_server(env) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        yield host, int(port)


def _head(path: str = "/health/live", padding: int = 0, extra: str = "") -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: x\r\n"
    if padding:
        head += f"X-Padding: {'a' * padding}\r\n"
    return (head + extra + "\r\n").encode()


def _exchange(address: tuple[str, int], *chunks: bytes) -> bytes:
    """Send the chunks and read the answers until the server closes the connection."""
    with socket.create_connection(address, timeout=10) as conn:
        for chunk in chunks:
            conn.sendall(chunk)
        conn.shutdown(socket.SHUT_WR)
        received = b""
        while data := conn.recv(65536):
            received += data
        return received


def _statuses(answer: bytes) -> list[int]:
    return [int(line.split()[1]) for line in answer.split(b"\r\n") if line.startswith(b"HTTP/1.1 ")]


def test_a_head_within_the_limit_is_served(address: tuple[str, int]) -> None:
    answer = _exchange(address, _head(padding=MAX_HEAD_BYTES - 200))
    assert _statuses(answer) == [200]


def test_a_header_beyond_the_limit_in_one_piece_gets_431(address: tuple[str, int]) -> None:
    answer = _exchange(address, _head(padding=MAX_HEAD_BYTES + 1))
    assert _statuses(answer) == [431]
    assert answer.endswith(b"Request line and headers are too long.")


def test_an_endless_header_is_cut_off_without_being_read(address: tuple[str, int]) -> None:
    sent = 0
    with socket.create_connection(address, timeout=10) as conn:
        conn.sendall(b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Padding: ")
        # 8 MB in 64 KiB pieces: the server hangs up long before the end. (Its 431 may be
        # lost: a close with our bytes still unread reaches us as a reset.)
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(128):
                conn.sendall(b"a" * 65536)
                sent += 65536
    # What the kernel buffers on both sides, not what the server read.
    assert sent < 4 * 1024 * 1024


def test_many_small_headers_count_together(address: tuple[str, int]) -> None:
    many = "".join(f"X-H{i}: {'b' * 100}\r\n" for i in range(MAX_HEAD_BYTES // 100))
    assert _statuses(_exchange(address, _head(extra=many))) == [431]


def test_a_long_url_counts_too(address: tuple[str, int]) -> None:
    answer = _exchange(address, _head(path="/health/live?x=" + "c" * MAX_HEAD_BYTES))
    assert _statuses(answer) == [431]


def test_each_request_on_a_connection_has_its_own_allowance(address: tuple[str, int]) -> None:
    # Three heads of two thirds of the limit each, one after the other on one connection.
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        statuses = []
        first = None
        for _ in range(3):
            conn.request(
                "GET", "/health/live", headers={"X-Padding": "a" * (MAX_HEAD_BYTES * 2 // 3)}
            )
            answer = conn.getresponse()
            answer.read()
            statuses.append(answer.status)
            first = first or conn.sock
        assert statuses == [200, 200, 200]
        assert first is conn.sock  # kept alive throughout
    finally:
        conn.close()


def test_a_body_is_not_counted_as_head(address: tuple[str, int]) -> None:
    body = b"grant_type=client_credentials&pad=" + b"d" * (MAX_HEAD_BYTES * 3 // 2)
    request = (
        b"POST /token HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    # Head and body in one piece: the server reads the body and the app answers it.
    assert _statuses(_exchange(address, request)) == [401]


def _answer_after_silence(address: tuple[str, int], *trickle: bytes) -> tuple[bytes, float]:
    """Send ``trickle`` a piece every quarter second, then wait: what the server says, and
    when it hung up."""
    with socket.create_connection(address, timeout=READ_TIMEOUT * 5) as conn:
        started = time.monotonic()
        for piece in trickle:
            conn.sendall(piece)
            time.sleep(0.25)
        received = b""
        while data := conn.recv(65536):
            received += data
        return received, time.monotonic() - started


def test_a_connection_that_sends_nothing_is_closed(address: tuple[str, int]) -> None:
    answer, after = _answer_after_silence(address)
    assert _statuses(answer) == [408]
    # The server's clock starts as it accepts, a moment before ours.
    assert READ_TIMEOUT - 0.5 <= after < READ_TIMEOUT + 2


def test_a_head_sent_a_byte_at_a_time_is_cut_off(address: tuple[str, int]) -> None:
    # Still sending when the time is up: a byte every quarter second.
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "[: READ_TIMEOUT * 4 - 1]
    answer, after = _answer_after_silence(address, *(bytes([b]) for b in head))
    assert _statuses(answer) == [408]
    assert answer.endswith(b"The request was not received in time.")
    assert after < READ_TIMEOUT + 2


def test_a_body_that_never_ends_is_cut_off(address: tuple[str, int]) -> None:
    head = (
        b"POST /token HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    answer, after = _answer_after_silence(address, head, b"grant_type=")
    assert _statuses(answer) == [408]
    assert after < READ_TIMEOUT + 2


def test_each_request_on_a_connection_has_its_own_time(address: tuple[str, int]) -> None:
    conn = http.client.HTTPConnection(*address, timeout=10)
    try:
        statuses = []
        # Together longer than the read timeout, each request well within it.
        for _ in range(4):
            conn.request("GET", "/health/live")
            answer = conn.getresponse()
            answer.read()
            statuses.append(answer.status)
            time.sleep(READ_TIMEOUT / 3)
        assert statuses == [200] * 4
    finally:
        conn.close()


def _logged(printed: str) -> list[dict[str, Any]]:
    """The JSON log lines printed whole: the last may still be being written."""
    return [json.loads(line) for line in printed.split("\n")[:-1] if line.startswith("{")]


def _posts(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("method") == "POST"]


def test_a_body_cut_short_is_the_clients_failure_not_ours(tmp_path: Path) -> None:
    env = {"IDENTITY_DATA_DIR": str(tmp_path), "IDENTITY_REQUEST_READ_TIMEOUT": "1"}
    with identity_server(env) as server:
        host, port = server.base_url.removeprefix("http://").split(":")
        for path in ("/login", "/password/forgot", "/authorize"):
            head = (
                f"POST {path} HTTP/1.1\r\nHost: x\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
            )
            answer, _ = _answer_after_silence((host, int(port)), head.encode(), b"flow=")
            assert _statuses(answer) == [408]
        # The app's side of each is logged after the hang-up, by when is the server's affair.
        deadline = time.monotonic() + 10
        while len(_posts(_logged(server.printed()))) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = _logged(server.output())
    cut_short = _posts(lines)
    assert [(line["path"], line["status"]) for line in cut_short] == [
        ("/login", 400),
        ("/password/forgot", 400),
        ("/authorize", 400),
    ]
    assert not [line for line in lines if line["level"] in ("error", "critical")]
