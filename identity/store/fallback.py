"""The shared store, with this process's memory taking over while the shared one is down.

Redis holds short-lived sign-in state (pending authorization requests, pending email
changes). When it fails, new state is kept in this process's memory and looked up there
too, so people keep signing in; when it is back, new state goes to Redis again and the
state kept here meanwhile is still found until it expires, so recovery needs no restart.
While Redis is down, state lives in the process that created it: with several processes a
sign-in that moves to another process mid-way has to start again, which is degraded, never
less safe (a single-use value still exists in one place only).

Once Redis has failed to answer, it is not asked again for a few seconds (breaker.py): a
Redis that stops answering rather than refusing would make every call wait out a timeout.

Counters (``incr``, ``decr``, ``decr_and_delete``) are not taken over here: ``RateLimiter``
has its own per-process fallback and counts when it uses it. ``ping`` reports the shared
store as it is, for readiness.
"""

from __future__ import annotations

import logging

from identity.store.base import Store, StoreUnavailable
from identity.store.memory import MemoryStore

log = logging.getLogger(__name__)


class FallbackStore:
    def __init__(self, shared: Store, local: MemoryStore | None = None) -> None:
        self._shared = shared
        self._local = local or MemoryStore()
        self._down = False

    def _fell_back(self, failure: StoreUnavailable) -> None:
        if not self._down:
            log.warning(
                "shared store down (%s): sign-in state is kept in this process meanwhile", failure
            )
        self._down = True

    def _recovered(self) -> None:
        if self._down:
            log.warning("shared store back: sign-in state is shared again")
        self._down = False

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self._shared.set(key, value, ttl)
        except StoreUnavailable as failure:
            self._fell_back(failure)
            await self._local.set(key, value, ttl)
            return
        self._recovered()
        # A copy kept here during an outage is now stale, and would be found again once
        # the shared one is consumed.
        await self._local.delete(key)

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        # A value kept here during an outage is there, as ``get`` finds it.
        if await self._local.get(key) is not None:
            return False
        try:
            added = await self._shared.add(key, value, ttl)
        except StoreUnavailable as failure:
            self._fell_back(failure)
            return await self._local.add(key, value, ttl)
        self._recovered()
        return added

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._shared.get(key)
        except StoreUnavailable as failure:
            self._fell_back(failure)
            return await self._local.get(key)
        self._recovered()
        # A copy kept here is newer than the shared one (a write the shared store takes
        # deletes it): an older "email changes ended" time would revive a link it ended.
        kept = await self._local.get(key)
        return kept if kept is not None else value

    async def consume(self, key: str) -> bytes | None:
        # Both copies go, or the one left would be taken a second time; the one here first,
        # in one step, so that of this process's racing callers only one gets it.
        kept = await self._local.consume(key)
        try:
            value = await self._shared.consume(key)
        except StoreUnavailable as failure:
            self._fell_back(failure)
            return kept
        self._recovered()
        return kept if kept is not None else value

    async def delete(self, key: str) -> None:
        await self._local.delete(key)
        try:
            await self._shared.delete(key)
        except StoreUnavailable as failure:
            # What is deleted is finished sign-in state, which expires on its own within
            # minutes; single-use values are taken with ``consume``, never left behind.
            self._fell_back(failure)
            return
        self._recovered()

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        return await self._shared.incr(key, ttl)

    async def decr(self, key: str) -> None:
        await self._shared.decr(key)

    async def decr_and_delete(self, decr: str, delete: str) -> None:
        await self._shared.decr_and_delete(decr, delete)

    async def ping(self) -> None:
        await self._shared.ping()

    async def close(self) -> None:
        await self._shared.close()
