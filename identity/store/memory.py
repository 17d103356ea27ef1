"""A store in this process's memory, for the embedded default and for tests.

Every method runs without awaiting in between reads and writes, so on one event loop
each call is atomic just as the Redis commands are.

Memory is bounded (``max_items``) against a flood of distinct keys, but not the same way for
everything. Values (pending sign-ins, a form's first answer) are dropped oldest first when
full, in number or in bytes (``max_bytes``): losing one makes someone start a step again.
A pending sign-in holds its authorization request, up to the 32 KiB a request head may carry,
so a bound on their number alone let one client's flood of long requests hold gigabytes.
Rate-limit counters (keys under ``COUNTER_PREFIX``, a few digits each) are dropped lowest
count first, as a dropped count is a fresh set of attempts for its subject, and each kind of
counter (each limit) has ``max_items`` of its own, so that a flood of one limit's subjects
pushes out no other limit's counts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Keys of rate-limit counters (``rate_limit.RateLimiter``): ``rl:<limit>:<subject digest>``.
COUNTER_PREFIX = "rl:"

# Room for 100,000 pending sign-ins of a usual size (about 400 bytes) with plenty to spare,
# but for only a few thousand of the longest: a flood of those is then a flood of sign-ins
# started again, as a flood of short ones is, not a process out of memory.
MAX_VALUE_BYTES = 128 * 1024 * 1024

_Table = dict[str, tuple[bytes, float]]


class MemoryStore:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        max_items: int = 100_000,
        max_bytes: int = MAX_VALUE_BYTES,
    ) -> None:
        self._clock = clock
        self._items: _Table = {}
        self._counters: dict[str, _Table] = {}  # by kind: the key up to its subject
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0  # of the values in ``_items``

    def _table(self, key: str) -> _Table:
        if not key.startswith(COUNTER_PREFIX):
            return self._items
        return self._counters.setdefault(key.rpartition(":")[0], {})

    def _put(self, table: _Table, key: str, value: bytes, expires: float) -> None:
        """Every write goes through here and every removal through ``_drop``, so that
        ``_bytes`` stays the size of the values held."""
        if table is self._items:
            old = table.get(key)
            self._bytes += len(value) - (len(old[0]) if old else 0)
        table[key] = (value, expires)

    def _drop(self, table: _Table, key: str) -> tuple[bytes, float] | None:
        item = table.pop(key, None)
        if item is not None and table is self._items:
            self._bytes -= len(item[0])
        return item

    def _live(self, key: str) -> tuple[bytes, float] | None:
        table = self._table(key)
        item = table.get(key)
        if item is not None and item[1] <= self._clock():
            self._drop(table, key)
            return None
        return item

    def _make_room(self, table: _Table, adding: int = 0) -> None:
        """Room for one more key in ``table``, its value ``adding`` bytes long. Bounded
        memory: a flood of distinct keys (one opened sign-in, or one new email, per request)
        must not grow the process without limit. When full, expired items go, then, down to
        nine tenths of the bounds, the oldest values or the lowest counts: the scan,
        milliseconds at 100,000, comes once per tenth of the bounds, not for every key of a
        flood."""
        over_bytes = table is self._items and self._bytes + adding > self._max_bytes
        if len(table) < self._max_items and not over_bytes:
            return
        now = self._clock()
        for key in [k for k, (_, expires) in table.items() if expires <= now]:
            self._drop(table, key)
        keep = self._max_items - max(1, self._max_items // 10)
        if table is self._items:
            dropped = self._oldest_beyond(keep, self._max_bytes * 9 // 10 - adding)
        else:
            # A count dropped hands its subject a fresh set of attempts. The lowest go first,
            # of equal ones the newest, so a flood pushes out an attacked account's count only
            # once every count it leaves is higher, or as high and older. Never refused for
            # want of room: a flood would then lock out everyone not yet counted.
            ranked = sorted(
                enumerate(table.items()), key=lambda item: (int(item[1][1][0]), -item[0])
            )
            dropped = [key for _, (key, _) in ranked[: max(0, len(table) - keep)]]
        for key in dropped:
            self._drop(table, key)

    def _oldest_beyond(self, count: int, size: int) -> list[str]:
        """The oldest values, as few as leave at most ``count`` of them in ``size`` bytes."""
        left, held = len(self._items), self._bytes
        dropped: list[str] = []
        for key, (value, _) in self._items.items():
            if left <= count and held <= size:
                break
            dropped.append(key)
            left, held = left - 1, held - len(value)
        return dropped

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        table = self._table(key)
        if self._live(key) is not None and table is self._items:
            self._drop(table, key)  # set again, it is dropped last
        if key not in table:
            self._make_room(table, len(value))
        self._put(table, key, value, self._clock() + ttl)

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
        self._drop(self._table(key), key)
        return item[0]

    async def delete(self, key: str) -> None:
        self._drop(self._table(key), key)

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        item = self._live(key)
        now = self._clock()
        table = self._table(key)
        if item is None:
            self._make_room(table, 1)
            self._put(table, key, b"1", now + ttl)
            return 1, ttl
        count = int(item[0]) + 1
        self._put(table, key, str(count).encode(), item[1])
        return count, max(1, math.ceil(item[1] - now))

    async def decr(self, key: str) -> None:
        item = self._live(key)
        if item is not None and int(item[0]) > 0:
            self._put(self._table(key), key, str(int(item[0]) - 1).encode(), item[1])

    async def decr_and_delete(self, decr: str, delete: str) -> None:
        await self.decr(decr)
        await self.delete(delete)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
        self._counters.clear()
        self._bytes = 0
