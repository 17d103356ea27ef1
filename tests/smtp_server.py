"""A real SMTP server (aiosmtpd) on a free local port, keeping what it receives."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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
def _listening(handle: Callable[[socket.socket, threading.Event], None]) -> Iterator[int]:
    """A listener on a free local port, its port, handing each connection to ``handle``
    with the event set when the block ends."""
    stop = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)

    def accept() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            handle(connection, stop)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        acceptor.join()
        listener.close()


@contextmanager
def trickling_smtp_server(seconds_per_byte: float = 0.1, opening: bytes = b"") -> Iterator[int]:
    """A mail server that greets one byte at a time and never ends the line: every read
    succeeds within any per-read timeout, so only a deadline ends the conversation.
    ``opening`` is sent at once first: a TLS record's header, to trickle a TLS handshake."""

    def trickle(connection: socket.socket, stop: threading.Event) -> None:
        with connection:
            connection.sendall(opening)
            while not stop.wait(seconds_per_byte):
                try:
                    connection.sendall(b"2")
                except OSError:
                    return  # the client hung up

    def handle(connection: socket.socket, stop: threading.Event) -> None:
        threading.Thread(target=trickle, args=(connection, stop), daemon=True).start()

    with _listening(handle) as port:
        yield port


@dataclass
class SilentServer:
    """What a mail server that accepts connections and then says nothing (``hang_up`` False)
    or hangs up at once (``hang_up`` True) was asked: its connections."""

    port: int
    accepted: list[socket.socket] = field(default_factory=list)

    @property
    def connections(self) -> int:
        return len(self.accepted)


@contextmanager
def silent_smtp_server(hang_up: bool = False) -> Iterator[SilentServer]:
    """A listener that takes every connection and never greets: the client's wait for the
    greeting ends only at its timeout, or at once when ``hang_up`` closes the connection."""
    accepted: list[socket.socket] = []

    def handle(connection: socket.socket, _: threading.Event) -> None:
        accepted.append(connection)
        if hang_up:
            connection.close()

    with _listening(handle) as port:
        try:
            yield SilentServer(port, accepted)
        finally:
            for connection in accepted:
                connection.close()
