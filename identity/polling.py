"""A background loop that works through a database queue: now when woken, else every few
seconds, surviving any error, until stopped. The outboxes (mail, webhooks) run on it."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from identity.db.engine import DatabaseUnavailable

log = logging.getLogger(__name__)


class PollingWorker:
    name = "worker"

    def __init__(self, poll_seconds: float) -> None:
        self._poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def run_once(self) -> int:
        """Do what is due now; returns how many items were done."""
        raise NotImplementedError

    def wake(self) -> None:
        """Work soon: called after a transaction that queued work has committed."""
        self._wakeup.set()

    async def _run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable:
                log.warning("background worker waits for the database", extra={"worker": self.name})
            except Exception:
                # The loop must survive anything, or the queue would silently stall until a
                # restart.
                log.exception("background worker failed; retrying", extra={"worker": self.name})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
            self._wakeup.clear()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run_forever(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            # Cancel until it has ended: a cancellation that lands while the loop is inside
            # asyncio.wait_for can be swallowed there (Python 3.11, gh-86296), and the loop
            # would run on, with stop() waiting for it for ever.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait({self._task}, timeout=1)
            self._task = None
