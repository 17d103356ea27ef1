"""The background sender: takes due messages from the queue, sends them, retries with backoff."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

from identity.clock import utcnow
from identity.db.engine import Database
from identity.mail import outbox
from identity.mail.models import OutgoingEmail
from identity.mail.transport import Transport, TransportError, build_message
from identity.metrics import EMAILS
from identity.polling import BatchWorker

log = logging.getLogger(__name__)
T = TypeVar("T")

# Delay before attempt 2, 3, ...: a mail server that is down for an hour still gets every
# message; after the last attempt (about a day) the message is marked failed and logged.
BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=2),
    timedelta(minutes=5),
    timedelta(minutes=10),
    timedelta(minutes=20),
    timedelta(minutes=40),
    timedelta(hours=1),
    timedelta(hours=2),
    timedelta(hours=4),
    timedelta(hours=8),
    timedelta(hours=8),
)
LEASE = timedelta(minutes=2)
BATCH = 20


class MailDispatcher(BatchWorker):
    name = "mail-dispatcher"
    batch_size = BATCH

    def __init__(
        self, db: Database, transport: Transport, sender: str, poll_seconds: float = 2.0
    ) -> None:
        super().__init__(poll_seconds)
        self._db = db
        self._transport = transport
        self._sender = sender
        # Why the mail server was found unreachable in the current run, if it was.
        self._unreachable: TransportError | None = None

    async def run_once(self) -> int:
        self._unreachable = None
        return await super().run_once()

    async def run_batch(self) -> tuple[int, int]:
        """Send a batch of what is due now: how many were sent, and how many taken."""
        now = utcnow()
        async with self._db.transaction() as session:
            ids = await outbox.due(session, now, self.batch_size)
        sent = 0
        for email_id in ids:
            async with self._db.transaction() as session:
                row = await outbox.lease(session, email_id, utcnow(), LEASE)
            if row is None:
                continue  # another process took it
            if self._unreachable is not None:
                # A server that times out would cost each message its whole timeout, one
                # after another. This attempt fails as it would have, and the message waits
                # its backoff: the same schedule, for the price of one timeout per run.
                await self._failed(row, f"not tried: {self._unreachable}")
                continue
            # A message handed to smtplib's thread goes out even if this task is cancelled (a
            # stop, at a deploy): its outcome must be recorded first, or it is sent again
            # once the lease runs out.
            if await _despite_cancellation(self._deliver(row)):
                sent += 1
        return sent, len(ids)

    async def _deliver(self, row: OutgoingEmail) -> bool:
        """Hand ``row`` over and record how it went; whether it was sent."""
        try:
            message = build_message(row, self._sender)
        except ValueError as exc:
            # A header no message may hold (a line break, queued by an older release):
            # every attempt would fail alike, and only a TransportError is retried.
            await self._failed(row, f"cannot be built: {exc}", permanent=True)
            return False
        try:
            await self._transport.send(message)
        except TransportError as exc:
            if exc.unreachable:
                self._unreachable = exc
            await self._failed(row, str(exc), permanent=exc.permanent)
            return False
        async with self._db.transaction() as session:
            await outbox.mark_sent(session, row.id, utcnow())
        EMAILS.labels("sent").inc()
        return True

    async def _failed(self, row: OutgoingEmail, error: str, *, permanent: bool = False) -> None:
        """Record a failed attempt: try again after the backoff, or give up (a ``permanent``
        failure, or the last attempt)."""
        retry = not permanent and row.attempts <= len(BACKOFF)
        retry_at = utcnow() + BACKOFF[row.attempts - 1] if retry else None
        EMAILS.labels("failed" if retry else "gave_up").inc()
        log.warning(
            "email not sent",
            extra={
                "email_id": str(row.id),
                "attempt": row.attempts,
                "error": error,
                "gave_up": not retry,
            },
        )
        async with self._db.transaction() as session:
            await outbox.mark_failed_attempt(session, row.id, error, retry_at, utcnow())


async def _despite_cancellation(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` to its end even if the caller is cancelled meanwhile (as often as
    ``PollingWorker.stop`` asks), then pass the cancellation on."""
    task = asyncio.ensure_future(work)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return task.result()
