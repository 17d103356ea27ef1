"""A real SMTP server (aiosmtpd) on a free local port, keeping what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.processes import free_port


class Inbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"


@contextmanager
def smtp_server(
    port: int | None = None, inbox: Inbox | None = None, **options: Any
) -> Iterator[tuple[int, Inbox]]:
    """``options`` go to aiosmtpd: ``ssl_context`` for TLS from the start, ``tls_context``
    and ``require_starttls`` for STARTTLS."""
    inbox = inbox or Inbox()
    port = port or free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


@contextmanager
def trickling_smtp_server(seconds_per_byte: float = 0.1, opening: bytes = b"") -> Iterator[int]:
    """A mail server that greets one byte at a time and never ends the line: every read
    succeeds within any per-read timeout, so only a deadline ends the conversation.
    ``opening`` is sent at once first: a TLS record's header, to trickle a TLS handshake."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)

    def trickle(connection: socket.socket) -> None:
        with connection:
            connection.sendall(opening)
            while not stop.wait(seconds_per_byte):
                try:
                    connection.sendall(b"2")
                except OSError:
                    return  # the client hung up

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=trickle, args=(connection,), daemon=True).start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()


class SilentServer:
    """What a mail server that accepts connections and then says nothing (``hang_up`` False)
    or hangs up at once (``hang_up`` True) was asked: how many connections."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connections = 0


@contextmanager
def silent_smtp_server(hang_up: bool = False) -> Iterator[SilentServer]:
    """A listener that takes every connection and never greets: the client's wait for the
    greeting ends only at its timeout, or at once when ``hang_up`` closes the connection."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    server = SilentServer(listener.getsockname()[1])
    held: list[socket.socket] = []

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            server.connections += 1
            if hang_up:
                connection.close()
            else:
                held.append(connection)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        stop.set()
        acceptor.join()
        for connection in held:
            connection.close()
        listener.close()
