"""A store in this process's memory, for the embedded default and for tests.

Every method runs without awaiting in between reads and writes, so on one event loop
each call is atomic just as the Redis commands are.

Memory is bounded (``max_items``) against a flood of distinct keys, but not the same way for
everything. Values (pending sign-ins, a form's first answer) are dropped oldest first when
full: losing one makes someone start a step again. Rate-limit counters (keys under
``COUNTER_PREFIX``) are never dropped while their window runs, as a dropped count is a fresh
set of attempts for its subject: each kind of counter (each limit) has ``max_items`` of its
own, and while one is full of live counters a new subject of that kind is refused
(``CountersFull``), stricter and never open, while the other limits go on counting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

# Keys of rate-limit counters (``rate_limit.RateLimiter``): ``rl:<limit>:<subject digest>``.
COUNTER_PREFIX = "rl:"

_Table = dict[str, tuple[bytes, float]]


class CountersFull(Exception):
    """No room for a new counter of this kind until one of its live ones expires, in
    ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"counters full; retry after {retry_after} s")
        self.retry_after = retry_after


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

    def _make_room(self, key: str) -> None:
        """Room for ``key``, not yet in its table."""
        table = self._table(key)
        if table is self._items:
            self._evict()
            return
        if len(table) < self._max_items:
            return
        # A kind's counters are made in order and live one window each, so the first ones
        # expire first: dropping expired ones from the front costs nothing per new key
        # while a flood keeps the table full of live ones.
        now = self._clock()
        while table and next(iter(table.values()))[1] <= now:
            del table[next(iter(table))]
        if len(table) >= self._max_items:
            raise CountersFull(max(1, math.ceil(next(iter(table.values()))[1] - now)))

    def _evict(self) -> None:
        # Bounded memory: a flood of distinct keys (say, one opened sign-in per request)
        # must not grow the process without limit. Drop expired items, then the oldest ones
        # down to nine tenths of the bound: the scan for expired items, milliseconds at
        # 100,000, then comes once per tenth of the bound new keys, not for every key of a
        # flood.
        if len(self._items) < self._max_items:
            return
        now = self._clock()
        for key in [k for k, (_, expires) in self._items.items() if expires <= now]:
            del self._items[key]
        while len(self._items) > self._max_items - max(1, self._max_items // 10):
            del self._items[next(iter(self._items))]

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        """Raises ``CountersFull`` for a new counter of a full kind."""
        table = self._table(key)
        if self._live(key) is None:
            self._make_room(key)
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
        """Raises ``CountersFull`` for a new counter of a full kind."""
        item = self._live(key)
        now = self._clock()
        table = self._table(key)
        if item is None:
            self._make_room(key)
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
