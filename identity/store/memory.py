"""A store in this process's memory, for the embedded default and for tests.

Every method runs without awaiting in between reads and writes, so on one event loop
each call is atomic just as the Redis commands are.

Memory is bounded (``max_items``) against a flood of distinct keys, but not the same way for
everything. Values (pending sign-ins, a form's first answer) are dropped oldest first when
full: losing one makes someone start a step again. Rate-limit counters (keys under
``COUNTER_PREFIX``) are dropped lowest count first, as a dropped count is a fresh set of
attempts for its subject, and each kind of counter (each limit) has ``max_items`` of its own,
so that a flood of one limit's subjects pushes out no other limit's counts.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable

# Keys of rate-limit counters (``rate_limit.RateLimiter``): ``rl:<limit>:<subject digest>``.
COUNTER_PREFIX = "rl:"

_Table = dict[str, tuple[bytes, float]]


class MemoryStore:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_items: int = 100_000
    ) -> None:
        self._clock = clock
        self._items: _Table = {}
        self._counters: dict[str, _Table] = {}  # by kind: the key up to its subject
        self._max_items = max_items

    def _table(self, key: str) -> _Table:
        if not key.startswith(COUNTER_PREFIX):
            return self._items
        return self._counters.setdefault(key.rpartition(":")[0], {})

    def _live(self, key: str) -> tuple[bytes, float] | None:
        table = self._table(key)
        item = table.get(key)
        if item is not None and item[1] <= self._clock():
            del table[key]
            return None
        return item

    def _make_room(self, table: _Table) -> None:
        """Room for one more key in ``table``. Bounded memory: a flood of distinct keys (one
        opened sign-in, or one new email, per request) must not grow the process without
        limit. When full, expired items go, then, down to nine tenths of the bound, the
        oldest values or the lowest counts: the scan, milliseconds at 100,000, comes once per
        tenth of the bound new keys, not for every key of a flood."""
        if len(table) < self._max_items:
            return
        now = self._clock()
        for key in [k for k, (_, expires) in table.items() if expires <= now]:
            del table[key]
        excess = len(table) - (self._max_items - max(1, self._max_items // 10))
        if excess <= 0:
            return
        if table is self._items:
            dropped = list(itertools.islice(table, excess))  # the oldest
        else:
            # A count dropped hands its subject a fresh set of attempts. The lowest go first,
            # of equal ones the newest, so a flood pushes out an attacked account's count only
            # once every count it leaves is higher, or as high and older. Never refused for
            # want of room: a flood would then lock out everyone not yet counted.
            ranked = sorted(
                enumerate(table.items()), key=lambda item: (int(item[1][1][0]), -item[0])
            )
            dropped = [key for _, (key, _) in ranked[:excess]]
        for key in dropped:
            del table[key]

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        table = self._table(key)
        if self._live(key) is None:
            self._make_room(table)
        elif table is self._items:
            del table[key]  # set again, it is dropped last
        table[key] = (value, self._clock() + ttl)

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def consume(self, key: str) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        del self._table(key)[key]
        return item[0]

    async def delete(self, key: str) -> None:
        self._table(key).pop(key, None)

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        item = self._live(key)
        now = self._clock()
        table = self._table(key)
        if item is None:
            self._make_room(table)
            table[key] = (b"1", now + ttl)
            return 1, ttl
        count = int(item[0]) + 1
        table[key] = (str(count).encode(), item[1])
        return count, max(1, math.ceil(item[1] - now))

    async def decr(self, key: str) -> None:
        item = self._live(key)
        if item is not None and int(item[0]) > 0:
            self._table(key)[key] = (str(int(item[0]) - 1).encode(), item[1])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
        self._counters.clear()
