"""Fixed-window counters over the store, with a per-process fallback.

When the shared store fails, counting moves to this process's memory: each process then
limits on its own, allowing its share of each limit (``processes`` of them share the store;
at least one attempt each), so that together they stay near the limit rather than multiply
it. The shared store is asked again within seconds (breaker.py), so recovery needs no
restart. Every count the shared store answers is copied into that memory (unless this process
has counted more), so a process that has seen a subject goes on from the shared count when the
store fails, not from zero: an outage, or a store that answers now and then, hands nobody a
fresh window.

A throttle of failures counts each attempt with ``hit`` before making it, never after:
asked "blocked?" first and counted on failure, every request of a burst sent at once would
pass the question before the first failure was counted. An attempt that turns out not to
be a failure gives its count back (``release``) or clears the count (``reset``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from identity.errors import RateLimited
from identity.metrics import RATE_LIMIT_FALLBACKS, RATE_LIMITED
from identity.store.base import Store, StoreUnavailable
from identity.store.memory import COUNTER_PREFIX, MemoryStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limit:
    name: str
    max: int
    window: int  # seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    count: int
    retry_after: int
    # Attempts the window allows after this one: 0 for the last allowed, and once refused.
    left: int


class RateLimiter:
    def __init__(
        self,
        store: Store,
        fallback: MemoryStore | None = None,
        *,
        processes: int = 1,
        shared: bool = True,
    ) -> None:
        self._store = store
        self._fallback = fallback or MemoryStore()
        self._processes = processes
        # Without Redis (the embedded default, ``shared`` False) the store is this process's
        # memory: with several workers, each counts alone, as all do while Redis is down.
        self._shared = shared
        self.degraded = False

    @staticmethod
    def _key(limit: Limit, subject: str) -> str:
        # Subjects are emails and IP addresses: keep them out of the shared store in clear.
        digest = hashlib.sha256(subject.encode()).hexdigest()[:32]
        return f"{COUNTER_PREFIX}{limit.name}:{digest}"

    async def _call_incr(self, key: str, ttl: int) -> tuple[int, int, bool]:
        """The count and seconds left in the window, and whether the shared store counted."""
        try:
            count, remaining = await self._store.incr(key, ttl)
        except StoreUnavailable as failure:
            self._missed(failure)
            return *await self._fallback.incr(key, ttl), False
        self.degraded = False
        if not self._shared:
            return count, remaining, False
        # Attempts counted here while the shared store did not answer are not in its count:
        # overwritten by it, each answer would open this process's share again.
        seen = await self._fallback.get(key)
        if seen is None or int(seen) < count:
            await self._fallback.set(key, str(count).encode(), remaining)
        return count, remaining, True

    async def hit(self, limit: Limit, subject: str) -> Verdict:
        """Count one attempt; refused once the window holds more than ``limit.max``, or
        than this process's share of it while the shared store is down.

        The increment is atomic, so of a burst at most ``limit.max`` are allowed."""
        count, remaining, shared = await self._call_incr(self._key(limit, subject), limit.window)
        most = limit.max if shared else max(1, limit.max // self._processes)
        allowed = count <= most
        if not allowed:
            RATE_LIMITED.labels(limit.name).inc()
        return Verdict(allowed, count, 0 if allowed else remaining, max(0, most - count))

    async def spend(self, limit: Limit, subject: str, message: str, /, **extra: Any) -> None:
        """``hit``, refusing with ``RateLimited`` (``message``, when to retry) over the limit."""
        verdict = await self.hit(limit, subject)
        if not verdict.allowed:
            raise RateLimited(message, verdict.retry_after, **extra)

    async def release(self, limit: Limit, subject: str) -> None:
        """Give back one attempt counted by ``hit`` that was not a failure after all."""
        key = self._key(limit, subject)
        await self._fallback.decr(key)
        await self._given_back(self._store.decr(key))

    async def release_and_reset(
        self, release: Limit, released: str, reset: Limit, cleared: str
    ) -> None:
        """``release`` one subject's attempt and ``reset`` another's count, in one store call."""
        given, gone = self._key(release, released), self._key(reset, cleared)
        await self._fallback.decr(given)
        await self._fallback.delete(gone)
        await self._given_back(self._store.decr_and_delete(given, gone))

    async def reset(self, limit: Limit, subject: str) -> None:
        key = self._key(limit, subject)
        await self._fallback.delete(key)
        await self._given_back(self._store.delete(key))

    async def _given_back(self, call: Awaitable[None]) -> None:
        try:
            await call
        except StoreUnavailable as failure:
            self._missed(failure)

    def _missed(self, failure: StoreUnavailable) -> None:
        """The shared store did not answer: counts are this process's until it does."""
        if not self.degraded:
            log.warning(
                "rate limits fall back to per-process counts: shared store down (%s)", failure
            )
        self.degraded = True
        RATE_LIMIT_FALLBACKS.inc()
