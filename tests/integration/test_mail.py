"""Mail is queued with the change that causes it and delivered once, through SMTP or the outbox."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from identity.clock import utcnow
from identity.db.engine import Database, create_engine
from identity.mail import dispatcher as mail_dispatcher
from identity.mail import outbox, transport
from identity.mail.dispatcher import BACKOFF, LEASE, MailDispatcher
from identity.mail.models import OutgoingEmail
from identity.mail.outbox import Message
from identity.mail.transport import OutboxTransport, SmtpTransport, TransportError
from identity.settings import Settings
from tests.processes import free_port
from tests.smtp_server import Inbox, silent_smtp_server, smtp_server, trickling_smtp_server

MESSAGE = Message(
    to="ana@example.com",
    subject="Cambia tu contraseña",
    text="Abre https://id.example.com/reset?token=abc",
    html="<p><a href='https://id.example.com/reset?token=abc'>Cambiar</a></p>",
)


@pytest.fixture
async def db(database: Settings) -> AsyncIterator[Database]:
    # Its own engine and no app: the app's background dispatcher would race these tests.
    engine = Database(create_engine(database))
    yield engine
    await engine.dispose()


async def _queue(db: Database, message: Message = MESSAGE) -> None:
    async with db.transaction() as session:
        await outbox.enqueue(session, message, utcnow())


async def _rows(db: Database) -> list[OutgoingEmail]:
    async with db.transaction() as session:
        return list((await session.scalars(select(OutgoingEmail))).all())


async def test_smtp_delivers_text_and_html_once(db: Database) -> None:
    await _queue(db)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(
            db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "Id <no-reply@id.example.com>"
        )
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0
    assert len(inbox.messages) == 1
    received = inbox.messages[0]
    assert received["To"] == "ana@example.com"
    assert received["Subject"] == "Cambia tu contraseña"
    assert received["Message-ID"].endswith("@id.example.com>")
    assert "reset?token=abc" in received.get_body(("plain",)).get_content()
    assert "<a href" in received.get_body(("html",)).get_content()
    (row,) = await _rows(db)
    assert row.sent_at is not None and row.attempts == 1


async def test_a_server_that_trickles_is_cut_off_at_the_deadline_and_retried(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each byte comes well within smtplib's per-read timeout: without a deadline this send,
    # and every message queued behind it, would wait for ever, and once the lease ran out
    # another process would send the message alongside.
    monkeypatch.setattr(transport, "SMTP_DEADLINE_SECONDS", 1)
    await _queue(db)
    with trickling_smtp_server() as port:
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        started = time.monotonic()
        assert await asyncio.wait_for(dispatcher.run_once(), timeout=10) == 0
        assert time.monotonic() - started < 5
    (row,) = await _rows(db)
    assert row.sent_at is None and row.failed_at is None and row.attempts == 1
    assert "took over 1 s" in (row.last_error or "")


async def test_a_tls_handshake_that_trickles_is_cut_off_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # smtps shakes hands before smtplib hands the client its socket: the deadline must
    # reach that socket too. The record header promises 16 KiB of handshake, sent a byte
    # at a time: hours, each read well within the per-read timeout.
    monkeypatch.setattr(transport, "SMTP_DEADLINE_SECONDS", 1)
    with trickling_smtp_server(opening=b"\x16\x03\x03\x40\x00") as port:
        started = time.monotonic()
        with pytest.raises(TransportError, match="took over 1 s"):
            await asyncio.wait_for(
                SmtpTransport(f"smtps://127.0.0.1:{port}").send(_message()), timeout=10
            )
        assert time.monotonic() - started < 5


def test_the_lease_outlasts_a_whole_attempt() -> None:
    # The deadline counts from before connecting; as long again is left to record the result.
    assert LEASE.total_seconds() >= 2 * transport.SMTP_DEADLINE_SECONDS


async def test_a_send_kept_waiting_for_a_thread_past_its_lease_is_not_made(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    # smtplib ran in asyncio's shared thread pool, where webhook deliveries resolve their
    # consumers' host names: a name whose DNS servers do not answer holds a thread for many
    # seconds. A send queued there behind them began only then, and its deadline with it:
    # it went out after its lease had run out, alongside the process that had taken the
    # message over meanwhile.
    monkeypatch.setattr(transport, "SMTP_DEADLINE_SECONDS", 1)
    monkeypatch.setattr(mail_dispatcher, "LEASE", timedelta(seconds=2))
    await _queue(db)
    loop = asyncio.get_running_loop()
    loop.set_default_executor(ThreadPoolExecutor(1))
    busy = threading.Event()
    shared_pool_busy = loop.run_in_executor(None, busy.wait, 10)
    with smtp_server() as (port, inbox):
        url = f"smtp://127.0.0.1:{port}"
        first = asyncio.create_task(MailDispatcher(db, SmtpTransport(url), "a@x.test").run_once())
        await asyncio.sleep(2.5)  # the first's lease runs out
        second = asyncio.create_task(MailDispatcher(db, SmtpTransport(url), "a@x.test").run_once())
        await asyncio.sleep(0.2)
        busy.set()
        await asyncio.wait_for(asyncio.gather(first, second, shared_pool_busy), timeout=10)
    assert len(inbox.messages) == 1
    (row,) = await _rows(db)
    assert row.sent_at is not None


class _RudeGoodbye(Inbox):
    async def handle_QUIT(self, server: object, session: object, envelope: object) -> str:
        return "554 not now"


async def test_a_goodbye_refused_after_delivery_does_not_send_again(db: Database) -> None:
    await _queue(db)
    with smtp_server(inbox=_RudeGoodbye()) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    (row,) = await _rows(db)
    assert row.sent_at is not None and row.attempts == 1
    assert len(inbox.messages) == 1


@pytest.fixture(scope="module")
def tls_authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(tls_authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_authority.issue_cert("mail.localhost", "localhost").configure_cert(context)
    return context


@pytest.fixture
def trusted(tls_authority: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # How an operator adds a private authority: OpenSSL reads SSL_CERT_FILE.
    bundle = tmp_path / "authority.pem"
    tls_authority.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


def _message() -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@x.test", "ana@example.com", "s"
    message.set_content("t")
    return message


@pytest.mark.parametrize(
    ("scheme", "tls_option"),
    [("smtps", "ssl_context"), ("smtp+starttls", "tls_context")],
)
async def test_tls_delivers_to_a_server_whose_certificate_names_the_host(
    db: Database, server_tls: ssl.SSLContext, trusted: None, scheme: str, tls_option: str
) -> None:
    await _queue(db)
    options = {tls_option: server_tls, "require_starttls": tls_option == "tls_context"}
    with smtp_server(**options) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"{scheme}://localhost:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [m["To"] for m in inbox.messages] == ["ana@example.com"]


@pytest.mark.parametrize(
    ("scheme", "tls_option"),
    [("smtps", "ssl_context"), ("smtp+starttls", "tls_context")],
)
async def test_tls_refuses_a_certificate_for_another_host(
    server_tls: ssl.SSLContext, trusted: None, scheme: str, tls_option: str
) -> None:
    # The certificate names localhost, not the address the URL gives.
    with (
        smtp_server(**{tls_option: server_tls}) as (port, inbox),
        pytest.raises(TransportError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        await SmtpTransport(f"{scheme}://127.0.0.1:{port}").send(_message())
    assert inbox.messages == []


async def test_a_rolled_back_change_queues_no_mail(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await outbox.enqueue(session, MESSAGE, utcnow())
            raise RuntimeError("the change failed")
    assert await _rows(db) == []


async def test_a_down_mail_server_is_retried_and_the_message_arrives_once_back(
    db: Database,
) -> None:
    await _queue(db)
    port = free_port()
    dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "no-reply@x.test")
    assert await dispatcher.run_once() == 0
    (row,) = await _rows(db)
    assert row.sent_at is None and row.attempts == 1
    assert "ConnectionRefusedError" in (row.last_error or "")
    assert row.next_attempt_at >= utcnow() + BACKOFF[0] - BACKOFF[0] / 2
    # Not due yet: nothing is attempted before the backoff has passed.
    assert await dispatcher.run_once() == 0
    assert (await _rows(db))[0].attempts == 1
    async with db.transaction() as session:  # let the backoff pass
        await session.execute(update(OutgoingEmail).values(next_attempt_at=utcnow()))
    with smtp_server(port) as (_, inbox):
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0
    assert len(inbox.messages) == 1


@pytest.mark.parametrize("hang_up", [False, True], ids=["silent", "hanging-up"])
async def test_an_unreachable_server_is_tried_once_per_run_and_the_rest_wait_their_backoff(
    db: Database, monkeypatch: pytest.MonkeyPatch, hang_up: bool
) -> None:
    # Each due message waited out its own timeout, one after another: 20 messages queued
    # behind a stalled server held the sender for 20 x 15 s, and every run after that again.
    usual_timeout = transport.SMTP_TIMEOUT_SECONDS
    monkeypatch.setattr(transport, "SMTP_TIMEOUT_SECONDS", 0.5)
    for i in range(25):  # more than a batch: the next batch is not tried either
        await _queue(db, Message(to=f"u{i}@example.com", subject="s", text="t"))
    async with db.transaction() as session:  # one of them already on its last attempt
        await session.execute(
            update(OutgoingEmail)
            .where(OutgoingEmail.to_address == "u24@example.com")
            .values(attempts=len(BACKOFF))
        )
    with silent_smtp_server(hang_up=hang_up) as server:
        dispatcher = MailDispatcher(
            db, SmtpTransport(f"smtp://127.0.0.1:{server.port}"), "a@x.test"
        )
        assert await dispatcher.run_once() == 0
        assert server.connections == 1
        # Each waits its backoff as after an attempt of its own: none is due again yet.
        assert await dispatcher.run_once() == 0
        assert server.connections == 1
    rows = await _rows(db)
    last = next(row for row in rows if row.to_address == "u24@example.com")
    assert last.failed_at is not None and last.attempts == len(BACKOFF) + 1
    waiting = [row for row in rows if row is not last]
    assert all(row.sent_at is None and row.failed_at is None for row in waiting)
    assert all(row.attempts == 1 for row in waiting)
    assert all(row.next_attempt_at > utcnow() + BACKOFF[0] / 2 for row in waiting)
    async with db.transaction() as session:  # let the backoff pass
        await session.execute(update(OutgoingEmail).values(next_attempt_at=utcnow()))
    # A server that answers: under a loaded machine's stalls, half a second for one of its
    # 24 replies was too short (the 354 to DATA took 0.58 s in a CI run).
    monkeypatch.setattr(transport, "SMTP_TIMEOUT_SECONDS", usual_timeout)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 24
    assert sorted(m["To"] for m in inbox.messages) == sorted(r.to_address for r in waiting)


async def test_after_the_last_attempt_the_message_is_marked_failed(db: Database) -> None:
    await _queue(db)
    async with db.transaction() as session:
        await session.execute(update(OutgoingEmail).values(attempts=len(BACKOFF)))
    dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{free_port()}"), "a@x.test")
    await dispatcher.run_once()
    (row,) = await _rows(db)
    assert row.failed_at is not None and row.sent_at is None
    assert await dispatcher.run_once() == 0


async def test_two_racing_dispatchers_send_each_message_once(db: Database) -> None:
    for i in range(5):
        await _queue(db, Message(to=f"u{i}@example.com", subject="s", text="t"))
    with smtp_server() as (port, inbox):
        transport = SmtpTransport(f"smtp://127.0.0.1:{port}")
        first = MailDispatcher(db, transport, "a@x.test")
        second = MailDispatcher(db, transport, "a@x.test")
        sent = await asyncio.gather(first.run_once(), second.run_once())
    assert sum(sent) == 5
    assert sorted(m["To"] for m in inbox.messages) == [f"u{i}@example.com" for i in range(5)]


async def test_a_message_read_as_due_before_another_sender_failed_it_waits_its_backoff(
    db: Database,
) -> None:
    """Two senders: one reads the message as due, the other then takes it, fails and
    schedules the retry. The first's lease must see the retry is not due yet, or the message
    is attempted again at once and gives up its backoff schedule early."""
    await _queue(db)
    async with db.transaction() as session:
        (due,) = await outbox.due(session, utcnow(), 10)
    other = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{free_port()}"), "a@x.test")
    assert await other.run_once() == 0
    async with db.transaction() as session:
        assert await outbox.lease(session, due, utcnow(), LEASE) is None
    (row,) = await _rows(db)
    assert row.attempts == 1 and row.next_attempt_at > utcnow()


async def test_without_smtp_each_message_is_one_eml_file(db: Database, tmp_path: Path) -> None:
    await _queue(db)
    folder = tmp_path / "mail"
    assert await MailDispatcher(db, OutboxTransport(folder), "a@x.test").run_once() == 1
    (written,) = folder.glob("*.eml")
    text = written.read_text()
    assert "To: ana@example.com" in text
    assert "multipart/alternative" in text
    assert not list(folder.glob(".tmp-*"))


async def test_an_eml_file_is_on_disk_before_its_message_is_marked_sent(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file was renamed into place unsynced while the database recorded the message as
    # sent (a commit, synced): after a power cut the file could be empty or missing, for a
    # message never written again. Its content must reach the disk before it takes its
    # name, and the folder's entry for it after.
    synced: list[tuple[str, int]] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        fsync(fd)
        synced.append((Path(os.readlink(f"/proc/self/fd/{fd}")).name, os.fstat(fd).st_size))

    monkeypatch.setattr(os, "fsync", recorded)
    await _queue(db)
    folder = tmp_path / "mail"
    assert await MailDispatcher(db, OutboxTransport(folder), "a@x.test").run_once() == 1
    (written,) = folder.glob("*.eml")
    (temporary, size), (entry, _) = synced
    assert temporary.startswith(".tmp-") and size == written.stat().st_size
    assert entry == folder.name


async def test_a_backlog_larger_than_a_batch_goes_out_in_one_run(
    db: Database, tmp_path: Path
) -> None:
    # Not a batch of 20 per poll interval while a reset email waits behind the rest.
    for _ in range(41):
        await _queue(db)
    folder = tmp_path / "mail"
    assert await MailDispatcher(db, OutboxTransport(folder), "a@x.test").run_once() == 41
    assert len(list(folder.glob("*.eml"))) == 41


async def test_a_file_that_cannot_be_written_leaves_nothing_behind(
    db: Database, tmp_path: Path
) -> None:
    # As a full disk would: each failed attempt left its temporary file, holding the whole
    # message (a reset link) or part of it, one more at every retry.
    await _queue(db)
    (row,) = await _rows(db)
    folder = tmp_path / "mail"
    (folder / f"{row.id.hex}.eml").mkdir(parents=True)  # nothing can be moved there
    assert await MailDispatcher(db, OutboxTransport(folder), "a@x.test").run_once() == 0
    (row,) = await _rows(db)
    assert row.sent_at is None and row.last_error
    assert not list(folder.glob(".tmp-*"))


async def _as_if_never_sent(db: Database) -> None:
    """The state a crash between handing a message over and marking it sent leaves behind,
    once the lease has run out."""
    async with db.transaction() as session:
        await session.execute(update(OutgoingEmail).values(sent_at=None, leased_until=None))


async def test_a_resend_after_a_crash_carries_the_same_message_id(db: Database) -> None:
    await _queue(db)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(
            db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "Id <no-reply@id.example.com>"
        )
        assert await dispatcher.run_once() == 1
        await _as_if_never_sent(db)
        assert await dispatcher.run_once() == 1
    first, again = inbox.messages
    assert first["Message-ID"] == again["Message-ID"]


@pytest.mark.parametrize(
    "sender",
    [
        "no-reply@id.example.com (Identity)",
        "Identity <no-reply@id.example.com> (sign-in)",
        '"a@b, Inc." <no-reply@id.example.com>',
    ],
)
async def test_the_message_id_is_well_formed_whatever_form_the_sender_takes(
    db: Database, sender: str
) -> None:
    # Every form IDENTITY_MAIL_FROM accepts; a comment after the address once ended up
    # inside the Message-ID, which a mail server may then replace (and with it the one
    # thing that lets a resend after a crash be recognised).
    await _queue(db)
    (row,) = await _rows(db)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), sender)
        assert await dispatcher.run_once() == 1
    (received,) = inbox.messages
    assert received["Message-ID"] == f"<{row.id.hex}@id.example.com>"
    assert not received["Message-ID"].defects


async def test_a_resend_after_a_crash_rewrites_the_same_eml_file(
    db: Database, tmp_path: Path
) -> None:
    await _queue(db)
    folder = tmp_path / "mail"
    dispatcher = MailDispatcher(db, OutboxTransport(folder), "a@x.test")
    assert await dispatcher.run_once() == 1
    await _as_if_never_sent(db)
    assert await dispatcher.run_once() == 1
    assert len(list(folder.glob("*.eml"))) == 1


async def test_a_message_that_cannot_be_built_is_given_up_at_once_and_the_rest_go_out(
    db: Database, tmp_path: Path
) -> None:
    # As queued before subjects were made one line: a header value with a line break.
    async with db.transaction() as session:
        session.add(
            OutgoingEmail(
                to_address="ana@example.com",
                subject="Olga\r\nBcc: everyone@example.com invites you",
                text_body="t",
                next_attempt_at=utcnow() - timedelta(minutes=1),
            )
        )
    await _queue(db)
    dispatcher = MailDispatcher(db, OutboxTransport(tmp_path / "mail"), "a@x.test")
    assert await dispatcher.run_once() == 1
    broken = next(row for row in await _rows(db) if "\n" in row.subject)
    assert broken.failed_at is not None and broken.attempts == 1
    assert "line" in (broken.last_error or "")
    assert await dispatcher.run_once() == 0


async def test_the_eml_file_keeps_a_non_ascii_address_as_written(
    db: Database, tmp_path: Path
) -> None:
    # An encoded word (=?utf-8?...?=) is not allowed inside an address (RFC 2047 §5): the
    # file would name another mailbox. Like smtplib, the file holds it in UTF-8 (RFC 6532).
    await _queue(db, Message(to="josé@xn--bcher-kva.de", subject="Hola", text="t"))
    folder = tmp_path / "mail"
    assert await MailDispatcher(db, OutboxTransport(folder), "a@x.test").run_once() == 1
    (written,) = folder.glob("*.eml")
    assert b"To: jos\xc3\xa9@xn--bcher-kva.de\n" in written.read_bytes()


async def test_an_address_spelled_as_an_encoded_word_is_not_sent_to_the_mailbox_it_decodes_to(
    db: Database,
) -> None:
    # Every character of "=?utf-8?q?...?=" may stand in a local part, but the email package
    # decodes it as an encoded word (RFC 2047 forbids one in an address): the envelope went to
    # another mailbox than the one stored, and the To header named olga@example.com.
    address = "=?utf-8?q?olga=40example=2ecom=2c?=@example.com"
    await _queue(db, Message(to=address, subject="Hola", text="t"))
    await _queue(db)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [received["To"] for received in inbox.messages] == ["ana@example.com"]
    refused = next(row for row in await _rows(db) if row.to_address == address)
    assert refused.failed_at is not None and refused.sent_at is None
    assert "address" in (refused.last_error or "")


async def test_a_name_spelled_as_an_encoded_word_is_shown_as_written_not_decoded(
    db: Database,
) -> None:
    # An account named "=?utf-8?q?...=0D=0A...?=" has no line break to refuse, but the email
    # package decoded it in the Subject and wrote the decoded line break out: a header of the
    # namer's choosing (here Reply-To) in every invitation to that account.
    name = "=?utf-8?q?Acme=0D=0AReply-To:_thief=40evil.example?="
    await _queue(db, Message(to="ana@example.com", subject=f"Olga invites you to {name}", text="t"))
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    (received,) = inbox.messages
    assert received["Reply-To"] is None
    assert "Acme=0D=0AReply-To:_thief=40evil.example" in received["Subject"]


class _Refusing(Inbox):
    """A mail server that answers every sender (``stage`` MAIL), every recipient (``stage``
    RCPT) or every message (``stage`` DATA) with ``answer``."""

    def __init__(self, stage: str, answer: str) -> None:
        super().__init__()
        self.stage = stage
        self.answer = answer
        self.refused = 0

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.stage == "MAIL":
            self.refused += 1
            return self.answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if self.stage == "RCPT":
            self.refused += 1
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.refused += 1
        return self.answer


@pytest.mark.parametrize(
    ("stage", "answer", "given_up"),
    [
        ("RCPT", "550 5.1.1 No such user", True),
        ("RCPT", "553 5.1.3 Bad recipient address syntax", True),
        ("DATA", "554 5.6.0 Message refused", True),
        ("RCPT", "450 4.2.1 Mailbox busy, try again later", False),
        ("RCPT", "451 4.7.1 Greylisted, come back later", False),
        ("DATA", "452 4.3.1 Insufficient system storage", False),
    ],
)
async def test_a_permanent_refusal_is_given_up_at_once_a_temporary_one_retried(
    db: Database, stage: str, answer: str, given_up: bool
) -> None:
    # A 5xx answer is final (RFC 5321 §4.2.1: the client SHOULD NOT repeat the request);
    # a 4xx answer asks to come back later. Asking a day long for a mailbox that does not
    # exist is what a mail server's reputation checks count against the sender.
    await _queue(db)
    inbox = _Refusing(stage, answer)
    with smtp_server(inbox=inbox) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 0
    (row,) = await _rows(db)
    assert row.sent_at is None and row.attempts == 1 and inbox.refused == 1
    assert answer.split()[0] in (row.last_error or "")
    assert (row.failed_at is not None) is given_up


@pytest.mark.parametrize("stage", ["MAIL", "RCPT"])
async def test_a_server_closing_down_ends_the_run_and_every_message_waits_its_backoff(
    db: Database, stage: str
) -> None:
    # 421 (RFC 5321 §3.8) says the service is closing, whichever command it answers. Given
    # to a recipient, smtplib reports it as that recipient refused: the run went on to open
    # a session for every message with the closing server, as if each were to blame.
    for i in range(3):
        await _queue(db, Message(to=f"u{i}@example.com", subject="s", text="t"))
    given_up = _emails_total("gave_up")
    inbox = _Refusing(stage, "421 4.3.2 Service shutting down")
    with smtp_server(inbox=inbox) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 0
    assert inbox.refused == 1
    rows = await _rows(db)
    assert all(row.failed_at is None and row.attempts == 1 for row in rows)
    assert all(row.next_attempt_at > utcnow() + BACKOFF[0] / 2 for row in rows)
    assert _emails_total("gave_up") == given_up


class _RefusingOne(Inbox):
    """A mail server that answers the recipient ``nobody@example.com`` with ``answer``."""

    def __init__(self, answer: str) -> None:
        super().__init__()
        self.answer = answer

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address == "nobody@example.com":
            return self.answer
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.mark.parametrize("answer", ["550 5.1.1 No such user", "450 4.2.1 Mailbox busy"])
async def test_a_refused_message_does_not_hold_back_the_others_of_its_run(
    db: Database, answer: str
) -> None:
    # Only a server that cannot be reached defers the rest of a run; one refusing a
    # recipient still takes every other message.
    await _queue(db, Message(to="nobody@example.com", subject="s", text="t"))
    await _queue(db)
    with smtp_server(inbox=_RefusingOne(answer)) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [received["To"] for received in inbox.messages] == ["ana@example.com"]


class _DroppingOne(Inbox):
    """A mail server that ends the session over the message to ``nobody@example.com``, once
    it has its content (421, RFC 5321 §3.8: as a server does over one it cannot take)."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if "nobody@example.com" in envelope.rcpt_tos:
            return "421 4.3.0 Closing the connection"
        return await super().handle_DATA(server, session, envelope)


async def test_a_session_ended_over_one_message_does_not_hold_back_the_others(
    db: Database,
) -> None:
    # The server was reached and took the session as far as this message: what ended it is
    # about the message. Read as the server being down, one such message made every other
    # message of each run it was tried in wait untried, and lose an attempt each time.
    await _queue(db, Message(to="nobody@example.com", subject="s", text="t"))
    await _queue(db)
    with smtp_server(inbox=_DroppingOne()) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [received["To"] for received in inbox.messages] == ["ana@example.com"]
    dropped = next(row for row in await _rows(db) if row.to_address == "nobody@example.com")
    assert dropped.failed_at is None and dropped.attempts == 1  # retried after its backoff


def _emails_total(result: str) -> float:
    return REGISTRY.get_sample_value("identity_emails_total", {"result": result}) or 0.0


async def test_an_address_needing_smtputf8_is_given_up_at_once_where_the_server_lacks_it(
    db: Database,
) -> None:
    # Such an address can only go to a server offering SMTPUTF8 (RFC 6531); it was retried
    # for a day against one that does not, although no attempt could ever succeed there.
    address = "josé@example.com"
    await _queue(db, Message(to=address, subject="Hola", text="t"))
    await _queue(db)
    given_up = _emails_total("gave_up")
    with smtp_server(enable_SMTPUTF8=False) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [received["To"] for received in inbox.messages] == ["ana@example.com"]
    refused = next(row for row in await _rows(db) if row.to_address == address)
    assert refused.failed_at is not None and refused.sent_at is None and refused.attempts == 1
    assert "SMTPUTF8" in (refused.last_error or "")
    assert _emails_total("gave_up") == given_up + 1


async def test_a_sender_needing_smtputf8_is_retried_as_a_setting_to_fix(db: Database) -> None:
    # The same for every message: an operator can change IDENTITY_MAIL_FROM, or the server,
    # while the queue waits.
    await _queue(db)
    with smtp_server(enable_SMTPUTF8=False) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "josé@x.test")
        assert await dispatcher.run_once() == 0
    (row,) = await _rows(db)
    assert row.failed_at is None and row.attempts == 1 and "SMTPUTF8" in (row.last_error or "")


async def test_an_address_whose_domain_alone_is_not_ascii_goes_in_its_ascii_form(
    db: Database,
) -> None:
    # Queued with its domain in Unicode (as releases before addresses were stored with the
    # domain in IDNA did), it was given up where the server lacks SMTPUTF8, though the IDNA
    # form of the domain names the same mailbox and needs no extension.
    await _queue(db, Message(to="ana@bücher.example", subject="Hola", text="t"))
    inbox = _Envelopes()
    with smtp_server(inbox=inbox, enable_SMTPUTF8=False) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    ((_, options),) = inbox.envelopes
    assert "SMTPUTF8" not in options
    assert [received["To"] for received in inbox.messages] == ["ana@xn--bcher-kva.example"]


async def test_an_address_needing_smtputf8_goes_to_a_server_offering_it(db: Database) -> None:
    await _queue(db, Message(to="josé@example.com", subject="Hola", text="t"))
    with smtp_server(enable_SMTPUTF8=True) as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    assert [received["To"] for received in inbox.messages] == ["josé@example.com"]


class _Slow(Inbox):
    """A mail server that takes ``seconds`` to accept a message; ``receiving`` is set once one
    is on its way."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.receiving = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.receiving.set()
        await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


async def test_stopping_during_a_send_records_what_the_server_took(db: Database) -> None:
    # A deploy stops the sender while a message is being handed over. smtplib goes on in its
    # thread and delivers it; the sender, cancelled, never marked it sent, so every restart
    # under way sent that email a second time once its lease ran out.
    await _queue(db)
    inbox = _Slow(1.0)
    with smtp_server(inbox=inbox) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        dispatcher.start()
        assert await asyncio.to_thread(inbox.receiving.wait, 10)
        await dispatcher.stop()
        for _ in range(50):  # for a send the stop left behind to end
            if inbox.messages:
                break
            await asyncio.sleep(0.1)
    assert len(inbox.messages) == 1
    (row,) = await _rows(db)
    assert row.sent_at is not None


class _Envelopes(Inbox):
    """Keeps each message as it came over the wire, with its MAIL FROM parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[tuple[bytes, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.original_content, list(envelope.mail_options)))
        return await super().handle_DATA(server, session, envelope)


async def test_a_non_ascii_body_goes_over_smtp_as_seven_bit_data(db: Database) -> None:
    # Spanish bodies went as 8-bit data with no BODY=8BITMIME on MAIL FROM, which RFC 6152
    # forbids: a relay without 8BITMIME may strip the eighth bit or refuse the message, and
    # one that converts it breaks the DKIM signature made over the original.
    spanish = "Cambia tu contraseña aquí: https://id.example.com/reset?token=abc"
    await _queue(
        db, Message(to="ana@example.com", subject="Contraseña", text=spanish, html=spanish)
    )
    inbox = _Envelopes()
    with smtp_server(inbox=inbox) as (port, _):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), "a@x.test")
        assert await dispatcher.run_once() == 1
    ((wire, options),) = inbox.envelopes
    assert wire.isascii() or "BODY=8BITMIME" in options
    (received,) = inbox.messages
    assert received["Subject"] == "Contraseña"
    for part in ("plain", "html"):
        assert received.get_body((part,)).get_content().splitlines() == [spanish]


async def test_a_sender_with_an_international_domain_is_sent_in_its_ascii_form(
    db: Database,
) -> None:
    # The domain was kept in Unicode: every email then needed SMTPUTF8 (most relays do not
    # offer it, and each email was retried a day, then given up), and its Message-ID, made
    # of the sender's domain, could not even be written to an .eml file.
    sender = Settings.from_env({"IDENTITY_MAIL_FROM": "Bücher <no-reply@bücher.example>"})
    await _queue(db)
    (row,) = await _rows(db)
    with smtp_server() as (port, inbox):
        dispatcher = MailDispatcher(db, SmtpTransport(f"smtp://127.0.0.1:{port}"), sender.mail_from)
        assert await dispatcher.run_once() == 1
    (received,) = inbox.messages
    assert received["From"].addresses[0].addr_spec == "no-reply@xn--bcher-kva.example"
    assert received["From"].addresses[0].display_name == "Bücher"
    assert received["Message-ID"] == f"<{row.id.hex}@xn--bcher-kva.example>"
