"""Work a request starts but does not wait for, so its answer cannot depend on it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)

# Work waits this long before it starts, so that none of it runs on the event loop while
# the answer that started it is still on its way out (and is timed with it).
START_DELAY_SECONDS = 0.02


class BackgroundWork:
    def __init__(self) -> None:
        # asyncio keeps only weak references to tasks: without this set one could be
        # collected before it ran.
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(self._run(work, name), name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _run(work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await asyncio.sleep(START_DELAY_SECONDS)
            await work
        except Exception:
            # Nobody awaits the task: its failure must reach the log, not vanish.
            log.exception("background work failed", extra={"work": name})

    async def drain(self) -> None:
        """Wait until everything started so far (and anything it starts) has finished."""
        while self._tasks:
            await asyncio.gather(*self._tasks)
