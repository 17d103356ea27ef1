"""Where mail goes: an SMTP server when IDENTITY_SMTP_URL is set, ``.eml`` files otherwise."""

from __future__ import annotations

import asyncio
import os
import smtplib
import ssl
import tempfile
from email.message import EmailMessage
from email.policy import Policy
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from identity.mail.models import OutgoingEmail

SMTP_TIMEOUT_SECONDS = 15


class TransportError(Exception):
    """The message was not handed over; it stays queued for another attempt."""


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_message(row: OutgoingEmail, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row.to_address
    message["Subject"] = row.subject
    message["Date"] = format_datetime(row.created_at)
    # The queue row's id alone, so a resend after a crash carries the same Message-ID and
    # receiving servers can drop the duplicate (make_msgid would add the time and a random
    # number: a new id on every attempt).
    domain = sender.rpartition("@")[2].rstrip(">").strip() or "localhost"
    message["Message-ID"] = f"<{row.id.hex}@{domain}>"
    message.set_content(row.text_body)
    if row.html_body:
        message.add_alternative(row.html_body, subtype="html")
    return message


class SmtpTransport:
    """smtp:// plain, smtp+starttls:// upgraded with STARTTLS, smtps:// TLS from the start."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None

    def _send_blocking(self, message: EmailMessage) -> None:
        context = ssl.create_default_context()
        client: smtplib.SMTP
        if self._scheme == "smtps":
            client = smtplib.SMTP_SSL(
                self._host, self._port, timeout=SMTP_TIMEOUT_SECONDS, context=context
            )
        else:
            client = smtplib.SMTP(self._host, self._port, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if self._scheme == "smtp+starttls":
                client.starttls(context=context)
            if self._username:
                client.login(self._username, self._password or "")
            client.send_message(message)

    async def send(self, message: EmailMessage) -> None:
        try:
            # smtplib blocks; a slow mail server must not stall the event loop.
            await asyncio.to_thread(self._send_blocking, message)
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc


def _file_policy(message: EmailMessage) -> Policy:
    """How an ``.eml`` file writes ``message``: as smtplib sends it, in UTF-8 (RFC 6532) when
    an address is not ASCII, since an encoded word is not allowed in an address (RFC 2047
    §5) and would name another mailbox."""
    addresses = [a.addr_spec for name in ("From", "To") for a in message[name].addresses]
    ascii_only = all(address.isascii() for address in addresses)
    return message.policy if ascii_only else message.policy.clone(utf8=True)


class OutboxTransport:
    """One ``.eml`` file per message, written whole (temporary file, then rename)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _write(self, message: EmailMessage) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").partition("@")[0]
        fd, temporary = tempfile.mkstemp(dir=self._folder, prefix=".tmp-")
        with os.fdopen(fd, "wb") as handle:
            handle.write(message.as_bytes(policy=_file_policy(message)))
        os.replace(temporary, self._folder / f"{name}.eml")

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
