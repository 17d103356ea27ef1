"""The background sender: takes due messages from the queue, sends them, retries with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from identity.clock import utcnow
from identity.db.engine import Database, DatabaseUnavailable
from identity.mail import outbox
from identity.mail.transport import Transport, TransportError, build_message
from identity.metrics import EMAILS

log = logging.getLogger(__name__)

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


class MailDispatcher:
    def __init__(
        self, db: Database, transport: Transport, sender: str, poll_seconds: float = 2.0
    ) -> None:
        self._db = db
        self._transport = transport
        self._sender = sender
        self._poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """Send soon: called after a transaction that queued mail has committed."""
        self._wakeup.set()

    async def run_once(self) -> int:
        """Send what is due now; returns how many were sent."""
        now = utcnow()
        async with self._db.transaction() as session:
            ids = await outbox.due(session, now, BATCH)
        sent = 0
        for email_id in ids:
            async with self._db.transaction() as session:
                row = await outbox.lease(session, email_id, utcnow(), LEASE)
            if row is None:
                continue  # another process took it
            try:
                await self._transport.send(build_message(row, self._sender))
            except TransportError as exc:
                retry_at = (
                    utcnow() + BACKOFF[row.attempts - 1] if row.attempts <= len(BACKOFF) else None
                )
                EMAILS.labels("failed" if retry_at is not None else "gave_up").inc()
                log.warning(
                    "email not sent",
                    extra={
                        "email_id": str(row.id),
                        "attempt": row.attempts,
                        "error": str(exc),
                        "gave_up": retry_at is None,
                    },
                )
                async with self._db.transaction() as session:
                    await outbox.mark_failed_attempt(session, row.id, str(exc), retry_at, utcnow())
                continue
            async with self._db.transaction() as session:
                await outbox.mark_sent(session, row.id, utcnow())
            EMAILS.labels("sent").inc()
            sent += 1
        return sent

    async def _run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable:
                log.warning("mail dispatcher waits for the database")
            except Exception:
                # The loop must survive anything, or mail would silently stop until a restart.
                log.exception("mail dispatcher failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
            self._wakeup.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name="mail-dispatcher")

    async def stop(self) -> None:
        if self._task is not None:
            # Cancel until it has ended: a cancellation that lands while the loop is inside
            # asyncio.wait_for can be swallowed there (Python 3.11, gh-86296), and the loop
            # would run on, with stop() waiting for it for ever.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
            self._task = None
