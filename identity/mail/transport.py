"""Where mail goes: an SMTP server when IDENTITY_SMTP_URL is set, ``.eml`` files otherwise."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import smtplib
import socket
import ssl
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import Policy, default
from email.utils import format_datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from identity.mail.models import OutgoingEmail
from identity.uris import ascii_host

SMTP_TIMEOUT_SECONDS = 15
# smtplib's timeout bounds each read and write, so a server trickling a byte at a time could
# hold one send, and the sender's loop, for ever. The conversation is cut at this deadline,
# well inside the dispatcher's lease: no other process may take the message while it goes.
SMTP_DEADLINE_SECONDS = 60


# Bodies that are not ASCII (every Spanish one) encoded as quoted-printable or base64, not sent
# as 8-bit data: smtplib does not declare BODY=8BITMIME, without which RFC 6152 forbids 8-bit
# data, and a relay may strip the eighth bit or convert the body, breaking its DKIM signature.
_SEVEN_BIT = default.clone(cte_type="7bit")


class TransportError(Exception):
    """The message was not handed over: it stays queued for another attempt unless the
    refusal was ``permanent``. ``unreachable``: the server could not be reached or stopped
    answering, which every other message would meet alike."""

    def __init__(self, message: str, *, permanent: bool = False, unreachable: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.unreachable = unreachable


class Transport(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def build_message(row: OutgoingEmail, sender: str) -> EmailMessage:
    message = EmailMessage(policy=_SEVEN_BIT)
    message["From"] = sender
    to = _ascii_domain(row.to_address)
    message["To"] = to
    # The header parser decodes an encoded word even inside an address (RFC 2047 forbids one
    # there), and smtplib takes the envelope from the result: an address spelled as one, stored
    # before such addresses were refused, would be sent to the mailbox it decodes to.
    if [address.addr_spec for address in message["To"].addresses] != [to]:
        raise ValueError(f"the address {row.to_address!r} reads as another one in a message")
    message["Subject"] = _literal(row.subject)
    message["Date"] = format_datetime(row.created_at)
    # The queue row's id alone, so a resend after a crash carries the same Message-ID and
    # receiving servers can drop the duplicate (make_msgid would add the time and a random
    # number: a new id on every attempt).
    # The sender's domain as the header parser reads it: a comment after the address is no
    # part of it (IDENTITY_MAIL_FROM has exactly one address, with a domain).
    domain = message["From"].addresses[0].domain
    message["Message-ID"] = f"<{row.id.hex}@{domain}>"
    message.set_content(row.text_body)
    if row.html_body:
        message.add_alternative(row.html_body, subtype="html")
    return message


def _ascii_domain(address: str) -> str:
    """``address`` with its domain in IDNA form when the rest is ASCII: the same mailbox
    (RFC 5890), which a server takes without SMTPUTF8. Addresses are stored so
    (``identity.accounts.emails``), but messages queued by releases before that hold the
    Unicode domain. A local part that is not ASCII has no such form: the address goes as it
    is, to a server offering SMTPUTF8 only."""
    local, at, domain = address.rpartition("@")
    if not local.isascii():
        return address
    try:
        return f"{local}{at}{ascii_host(domain)}"
    except UnicodeError:  # no IDNA form: as it is, as a Unicode local part goes
        return address


def _literal(text: str) -> str:
    """``text`` as a header shows it, with no RFC 2047 encoded word (``=?charset?q?...?=``) to
    decode. Subjects name people and accounts, and a name spelled as an encoded word holds
    whatever it encodes, line breaks too: the email package decodes it as the header is set
    and writes the result out, so a name could add headers, or a body, to the message. A space
    after every ``=`` that starts one leaves the text readable and nothing to decode."""
    return text.replace("=?", "= ?")


class SmtpTransport:
    """smtp:// plain, smtp+starttls:// upgraded with STARTTLS, smtps:// TLS from the start."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._scheme = parts.scheme
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (465 if parts.scheme == "smtps" else 25)
        self._username = unquote(parts.username) if parts.username else None
        self._password = unquote(parts.password) if parts.password else None
        self._tls = ssl.create_default_context()
        # A thread of its own: in asyncio's shared pool a conversation could wait behind
        # unrelated work (webhook deliveries resolving host names) for longer than a lease.
        # The sender hands over one message at a time, so one thread never keeps it waiting.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="smtp")

    def _client(self) -> smtplib.SMTP:
        """A client not yet connected, so the deadline's watchdog can reach its socket while
        it waits for the greeting (``SMTP(host)`` would connect before returning)."""
        client: smtplib.SMTP
        if self._scheme == "smtps":
            client = _WatchedSMTP_SSL(timeout=SMTP_TIMEOUT_SECONDS, context=self._tls)
        else:
            client = smtplib.SMTP(timeout=SMTP_TIMEOUT_SECONDS)
        # What SMTP(host) sets: the name TLS checks the server's certificate against.
        client._host = self._host
        return client

    def _send_blocking(self, message: EmailMessage, session: _Session, deadline: float) -> None:
        client = self._client()  # here, not on the event loop: it looks up this host's name
        left = deadline - time.monotonic()
        if left <= 0:
            # The deadline passed before this thread took the message up: another sender may
            # hold it by now, and nothing may reach the server.
            raise TimeoutError(f"the conversation could not begin within {SMTP_DEADLINE_SECONDS} s")
        watchdog = _Watchdog(client, left)
        try:
            code, greeting = client.connect(self._host, self._port)
            watchdog.check()
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            if self._scheme == "smtp+starttls":
                client.starttls(context=self._tls)
            if self._username:
                client.login(self._username, self._password or "")
            session.at_message = True
            try:
                client.send_message(message)
            except smtplib.SMTPNotSupportedError as exc:
                # send_message raises it only for SMTPUTF8 (STARTTLS and AUTH are asked for
                # before). A recipient this server will never take; a sender that is not
                # ASCII is a setting, the same for every message, and is retried.
                if message["From"].addresses[0].addr_spec.isascii():
                    raise SmtpUtf8NotOffered from exc
                raise
        except Exception as exc:
            watchdog.cancel()
            client.close()
            if watchdog.fired:
                raise TimeoutError(f"the mail server took over {SMTP_DEADLINE_SECONDS} s") from exc
            raise
        # The server has taken the message: a goodbye that fails must not send it again. QUIT
        # without quit()'s close: the socket is closed only once the watchdog is stopped.
        with contextlib.suppress(smtplib.SMTPException, OSError, ValueError):
            client.docmd("QUIT")
        watchdog.cancel()
        client.close()

    async def send(self, message: EmailMessage) -> None:
        session = _Session()
        # The deadline runs from here, just after the dispatcher took its lease, not from
        # when a thread begins the conversation: the message is handed over within the lease
        # or not at all.
        deadline = time.monotonic() + SMTP_DEADLINE_SECONDS
        try:
            # smtplib blocks; a slow mail server must not stall the event loop.
            await asyncio.get_running_loop().run_in_executor(
                self._thread, self._send_blocking, message, session, deadline
            )
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(
                f"{type(exc).__name__}: {exc}",
                permanent=_final(exc),
                # Once the server has greeted, let us in and been handed this message, what
                # ends the session is about the message (one it cannot take), not the server,
                # unless the server says it is closing down.
                unreachable=_closing(exc) or (not session.at_message and _down(exc)),
            ) from exc


@dataclass
class _Session:
    """How far a delivery went: ``at_message`` once the server was ready for the message."""

    at_message: bool = False


class SmtpUtf8NotOffered(smtplib.SMTPException):
    """The recipient's address is not ASCII and the server does not offer SMTPUTF8."""

    def __init__(self) -> None:
        super().__init__(
            "the recipient's address is not ASCII and needs SMTPUTF8 (RFC 6531), "
            "which the mail server does not offer"
        )


def _final(exc: Exception) -> bool:
    """Whether the server refused this message for good: a 5xx answer to its recipient or to
    its content (RFC 5321 §4.2.1: not to be asked again), or an address it cannot take at
    all. A refused sender or sign-in is the same for every message, a setting an operator
    can fix while the queue waits: retried."""
    if isinstance(exc, SmtpUtf8NotOffered):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    return isinstance(exc, smtplib.SMTPDataError) and exc.smtp_code >= 500


def _down(exc: OSError) -> bool:
    """Whether the server itself failed, before it was handed the message: refused or dropped the
    connection, never greeted (a 421 greeting among them), timed out (a socket's timeout or the
    deadline) or failed TLS. The other messages of a run need not each wait out the same
    timeout to learn it. Every other answer of the server (an SMTPException, itself an
    OSError) is about this message or a setting, and comes at once."""
    if isinstance(exc, smtplib.SMTPServerDisconnected | smtplib.SMTPConnectError):
        return True
    return not isinstance(exc, smtplib.SMTPException)


def _closing(exc: OSError) -> bool:
    """Whether the server said it is closing down (421, RFC 5321 §3.8) before it had the
    message's content: to EHLO, STARTTLS, AUTH, the sender or a recipient, a 421 is about the
    service, which every other message of the run would meet too (smtplib reports one to a
    recipient as that recipient refused). A 421 to the content itself may be over that
    message alone (a content filter ending the session), so the others still go."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return any(code == 421 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPDataError):
        return False
    return isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code == 421


class _WatchedSMTP_SSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> ssl.SSLSocket:
        """smtplib's, with ``sock`` set before the TLS handshake, not after it: the watchdog
        then cuts a server trickling the handshake as it does one trickling its greeting."""
        plain = smtplib.SMTP._get_socket(self, host, port, timeout)
        self.sock = self.context.wrap_socket(
            plain, server_hostname=self._host, do_handshake_on_connect=False
        )
        self.sock.do_handshake()
        return self.sock


class _Watchdog:
    """Cuts a client's connection once ``seconds`` have passed since it was made."""

    def __init__(self, client: smtplib.SMTP, seconds: float) -> None:
        self._client = client
        self.fired = False
        # Firing and cancelling exclude each other, and the sender cancels before it closes
        # the socket: a shutdown must never reach a descriptor number reused meanwhile.
        self._lock = threading.Lock()
        self._cancelled = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if self._cancelled:
                return
            self.fired = True
            sock = self._client.sock
            if sock is not None:
                # The plain socket's shutdown: it wakes a thread blocked reading or writing
                # this socket (close would not), and on TLS leaves that thread's SSL object.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)

    def check(self) -> None:
        """Raise if the deadline passed while connecting, before the socket could be cut."""
        if self.fired:
            raise TimeoutError("connecting took the whole deadline")

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
        self._timer.cancel()


def _file_policy(message: EmailMessage) -> Policy:
    """How an ``.eml`` file writes ``message``: as smtplib sends it, in UTF-8 (RFC 6532) when
    an address is not ASCII, since an encoded word is not allowed in an address (RFC 2047
    §5) and would name another mailbox."""
    addresses = [a.addr_spec for name in ("From", "To") for a in message[name].addresses]
    ascii_only = all(address.isascii() for address in addresses)
    return message.policy if ascii_only else message.policy.clone(utf8=True)


def _sync_folder(folder: Path) -> None:
    """Put the folder's entries on the disk: a renamed file's new name is held there."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # A file system that cannot sync a folder (some network ones) keeps its entries as
        # it may: failing every message over it would only give them all up.
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


class OutboxTransport:
    """One ``.eml`` file per message, written whole (temporary file, then rename)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder

    def _write(self, message: EmailMessage) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        name = message["Message-ID"].strip("<>").partition("@")[0]
        fd, temporary = tempfile.mkstemp(dir=self._folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes(policy=_file_policy(message)))
                # On the disk before it takes its name and the message is recorded as sent: a
                # power cut could otherwise leave an empty file, never written again.
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self._folder / f"{name}.eml")
            _sync_folder(self._folder)
        except BaseException:
            # A full disk would otherwise keep a part of the message (its link too) at every
            # attempt.
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    async def send(self, message: EmailMessage) -> None:
        try:
            await asyncio.to_thread(self._write, message)
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
