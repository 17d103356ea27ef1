"""A store in this process's memory, for the embedded default and for tests.

Every method runs without awaiting in between reads and writes, so on one event loop
each call is atomic just as the Redis commands are.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class MemoryStore:
    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_items: int = 100_000
    ) -> None:
        self._clock = clock
        self._items: dict[str, tuple[bytes, float]] = {}
        self._max_items = max_items

    def _live(self, key: str) -> tuple[bytes, float] | None:
        item = self._items.get(key)
        if item is not None and item[1] <= self._clock():
            del self._items[key]
            return None
        return item

    def _evict(self) -> None:
        # Bounded memory: a flood of distinct keys (say, one counter per spoofed email) must
        # not grow the process without limit. Drop expired items, then the oldest ones down
        # to nine tenths of the bound: the scan for expired items, milliseconds at 100,000,
        # then comes once per tenth of the bound new keys, not for every key of a flood.
        if len(self._items) < self._max_items:
            return
        now = self._clock()
        for key in [k for k, (_, expires) in self._items.items() if expires <= now]:
            del self._items[key]
        while len(self._items) > self._max_items - max(1, self._max_items // 10):
            del self._items[next(iter(self._items))]

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        self._evict()
        self._items.pop(key, None)
        self._items[key] = (value, self._clock() + ttl)

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
        del self._items[key]
        return item[0]

    async def delete(self, key: str) -> None:
        self._items.pop(key, None)

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        item = self._live(key)
        now = self._clock()
        if item is None:
            self._evict()
            self._items[key] = (b"1", now + ttl)
            return 1, ttl
        count = int(item[0]) + 1
        self._items[key] = (str(count).encode(), item[1])
        return count, max(1, math.ceil(item[1] - now))

    async def decr(self, key: str) -> None:
        item = self._live(key)
        if item is not None and int(item[0]) > 0:
            self._items[key] = (str(int(item[0]) - 1).encode(), item[1])

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        self._items.clear()
