"""The shared store, not asked again for a few seconds once it has failed to answer.

A Redis that stops answering (a hung host, a partition that drops packets) makes each call
wait out its socket timeout before the caller falls back to this process's memory
(fallback.py for sign-in state, rate_limit.py for counts), and a sign-in makes a dozen calls.
Once a call has failed, the next ones fail at once; after ``RETRY_SECONDS`` one call at a time
asks the store again while the others still fail at once, and an answer lets every call
through again. ``ping`` is never held back: readiness reports the store as it is, and its
answer lets every call through again too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from identity.store.base import Store, StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# Long enough that while Redis is away nearly every request goes on without it (one call per
# interval waits out the socket timeout, 2 s), short enough that sign-in state is shared and
# limits are whole again within seconds of its return: a sign-in begun meanwhile has to finish
# in the process that began it. Neither gains from tuning, so it is not a setting.
RETRY_SECONDS = 3.0


class Breaker:
    def __init__(self, store: Store, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._retry_at: float | None = None  # None while the store answers
        self._asking = False

    async def _answered(self, call: Awaitable[T]) -> T:
        try:
            result = await call
        except StoreUnavailable:
            self._retry_at = self._clock() + RETRY_SECONDS
            raise
        self._retry_at = None
        return result

    async def _call(self, op: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._retry_at is None:
            return await self._answered(op(*args, **kwargs))
        if self._asking or self._clock() < self._retry_at:
            raise StoreUnavailable("not asked again yet")
        # Cancelled meanwhile (a request that went away), the next call asks instead.
        self._asking = True
        try:
            return await self._answered(op(*args, **kwargs))
        finally:
            self._asking = False

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        await self._call(self._store.set, key, value, ttl)

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        return await self._call(self._store.add, key, value, ttl)

    async def get(self, key: str) -> bytes | None:
        return await self._call(self._store.get, key)

    async def consume(self, key: str) -> bytes | None:
        return await self._call(self._store.consume, key)

    async def delete(self, key: str) -> None:
        await self._call(self._store.delete, key)

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        return await self._call(self._store.incr, key, ttl)

    async def decr(self, key: str) -> None:
        await self._call(self._store.decr, key)

    async def decr_and_delete(self, decr: str, delete: str) -> None:
        await self._call(self._store.decr_and_delete, decr, delete)

    async def ping(self) -> None:
        await self._answered(self._store.ping())

    async def close(self) -> None:
        await self._store.close()
