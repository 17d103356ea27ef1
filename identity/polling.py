"""A background loop over the database: now when woken, else every so often, surviving any
error, until stopped. The outboxes (mail, webhooks) and housekeeping run on it."""

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

    def first_pause_seconds(self) -> float:
        """How long after start to wait for the first run, unless woken sooner: nothing, so
        that what the outboxes queued before a restart goes out without delay."""
        return 0.0

    def pause_seconds(self) -> float:
        """How long to wait for the next run, unless woken sooner."""
        return self._poll_seconds

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)
        self._wakeup.clear()

    async def _run_forever(self) -> None:
        first = self.first_pause_seconds()
        if first > 0:
            await self._pause(first)
        while True:
            try:
                await self.run_once()
            except DatabaseUnavailable:
                log.warning("background worker waits for the database", extra={"worker": self.name})
            except Exception:
                # The loop must survive anything, or its work would silently stop until a
                # restart.
                log.exception("background worker failed; retrying", extra={"worker": self.name})
            await self._pause(self.pause_seconds())

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


class BatchWorker(PollingWorker):
    """A worker over a queue it takes ``batch_size`` items at a time. Each run works through
    every full batch due, not one per poll: a backlog (an event for each of thousands of
    members holding a changed role) would otherwise go out one batch per poll interval, and
    anything queued behind it, a member's removal, would wait minutes."""

    batch_size: int

    async def run_once(self) -> int:
        done = 0
        while True:
            handled, taken = await self.run_batch()
            done += handled
            # Whatever a batch took is done, given up or not due again for a while, so a
            # full batch means more may be waiting, and the loop ends once they are through.
            if taken < self.batch_size:
                return done

    async def run_batch(self) -> tuple[int, int]:
        """Work on one batch of what is due now: how many items were done, and how many
        were taken."""
        raise NotImplementedError
