"""``identity serve`` answers an over-long request head 431 before the app or memory sees it."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest

from identity.bounded_http import MAX_HEAD_BYTES
from tests.processes import identity_server


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    # The limit lives in the HTTP layer, not the database: one embedded server serves all.
    data_dir = tmp_path_factory.mktemp("head-limit")
    with identity_server({"IDENTITY_DATA_DIR": str(data_dir)}) as server:
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
