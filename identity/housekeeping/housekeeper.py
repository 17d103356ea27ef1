"""The housekeeping loop, started and stopped by the Runtime like the outbox senders."""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from identity.clock import utcnow
from identity.db.engine import Database, is_lock_unavailable
from identity.housekeeping import audit, repository
from identity.housekeeping.repository import Cutoffs
from identity.metrics import HOUSEKEEPING_DELETED
from identity.polling import PollingWorker
from identity.settings import Settings

log = logging.getLogger(__name__)

# Rows per transaction: each holds its locks (and, on SQLite, the one write lock) briefly,
# however much there is to delete.
BATCH = 500
# Each pause is the interval give or take this fraction, so that processes started together
# (``identity serve --workers N``, a deploy) drift apart instead of sweeping in step.
JITTER = 0.25


class Housekeeper(PollingWorker):
    name = "housekeeping"

    def __init__(
        self,
        db: Database,
        *,
        interval_seconds: float,
        sent_retention: timedelta,
        batch_size: int = BATCH,
    ) -> None:
        super().__init__(interval_seconds)
        self._db = db
        self._sent_retention = sent_retention
        self._batch_size = batch_size

    @classmethod
    def from_settings(cls, db: Database, settings: Settings) -> Housekeeper:
        return cls(
            db,
            interval_seconds=settings.housekeeping_interval,
            sent_retention=timedelta(seconds=settings.sent_retention),
        )

    def first_pause_seconds(self) -> float:
        # Uniformly over (0, interval]. At start-up, every worker of a deploy would sweep at
        # the same moment; after a whole interval, a process restarted more often than that
        # would never sweep. This way one that lives a tenth of the interval sweeps one time
        # in ten, and the workers of a deploy spread their sweeps over the interval.
        return self._poll_seconds * (1.0 - random.random())  # noqa: S311 - spacing, not a secret

    def pause_seconds(self) -> float:
        spread = random.uniform(1 - JITTER, 1 + JITTER)  # noqa: S311 - spacing, not a secret
        return self._poll_seconds * spread

    async def run_once(self, now: datetime | None = None) -> int:
        """Delete every row dead at ``now`` (the clock's, unless given), batch after batch;
        returns how many went. Rows another process is deleting at the same time are left
        to it. Raises DatabaseUnavailable, leaving the remaining tables to the next run, when
        the database itself stopped answering."""
        cutoffs = Cutoffs.at(now or utcnow(), sent_retention=self._sent_retention)
        deleted: dict[str, int] = {}
        try:
            for rule in repository.RULES:
                try:
                    await self._clean(rule, cutoffs, deleted)
                except Exception as exc:
                    # Asked, not read from the error: a lock wait given up on is reported
                    # as the database unavailable too. Raised from the ping, the outage
                    # is logged once by the loop (identity.polling), not per table.
                    await self._db.ping()
                    # Each table on its own: one that fails (a lock held, a table a
                    # migration broke) must not keep the others from being cleaned. It is
                    # tried again at the next run: a lock held meanwhile is a warning, as
                    # it has usually gone by then; anything else fails again until someone
                    # repairs it.
                    log.log(
                        logging.WARNING if is_lock_unavailable(exc) else logging.ERROR,
                        "housekeeping of a table failed; the others go on",
                        exc_info=True,
                        extra={"worker": self.name, "table": rule.table},
                    )
        finally:
            # Batches are committed one by one: a run cut short has still deleted these.
            if deleted:
                log.info("housekeeping deleted rows", extra={"deleted": deleted})
        return sum(deleted.values())

    async def _clean(
        self, rule: repository.Rule, cutoffs: Cutoffs, deleted: dict[str, int]
    ) -> None:
        """Delete the rule's dead rows batch after batch, adding each batch to ``deleted``."""
        while True:
            async with self._db.write_transaction() as session:
                rows = await repository.delete_batch(session, rule, cutoffs, self._batch_size)
                if rule.audited and rows:
                    await audit.record_deleted(session, rule, rows)
            count = len(rows)
            if count:
                deleted[rule.table] = deleted.get(rule.table, 0) + count
                HOUSEKEEPING_DELETED.labels(rule.table).inc(count)
            if count < self._batch_size:
                return
