"""Registered clients kept in process memory for a few seconds.

The token endpoint authenticates a client on every request; reading its row each time
costs more than the rest of a client_credentials exchange put together. A change to a
client (disabled, new secret) therefore reaches every other process within ``ttl`` seconds;
the process that made it ``forget``s the client and sees the change at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient
from identity.clients.repository import get_client
from identity.db.engine import Database

CLIENT_CACHE_SECONDS = 5.0


class ClientCache:
    def __init__(
        self,
        ttl: float = CLIENT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_items: int = 10_000,
    ) -> None:
        self._ttl = ttl
        self._clock = clock
        self._max_items = max_items
        self._items: dict[str, tuple[OAuthClient, float]] = {}
        self._loading: dict[str, asyncio.Future[OAuthClient | None]] = {}
        # Counts ``forget`` calls: a read that began before one may hold the row as it was.
        self._forgotten = 0

    async def lookup(self, db: Database, client_id: str) -> OAuthClient | None:
        """As ``get``, opening a transaction only when the client is not in memory: most
        token requests then touch no connection at all for their client.
        """
        client = self._fresh(client_id, self._clock())
        if client is not None:
            return client
        # When an entry expires under load, every request in flight for that client misses
        # at once; one read serves them all instead of one each.
        loading = self._loading.get(client_id)
        if loading is None:
            loading = asyncio.ensure_future(self._load(db, client_id))
            self._loading[client_id] = loading
            loading.add_done_callback(lambda _: self._loading.pop(client_id, None))
        # Shielded: a caller that goes away must not cancel the read the others wait for.
        return await asyncio.shield(loading)

    def forget(self, client_id: str) -> None:
        """Drop the client, after a change to it has committed: the next request reads it."""
        self._forgotten += 1
        self._items.pop(client_id, None)
        self._loading.pop(client_id, None)

    async def _load(self, db: Database, client_id: str) -> OAuthClient | None:
        async with db.transaction() as session:
            return await self.get(session, client_id)

    async def get(self, session: AsyncSession, client_id: str) -> OAuthClient | None:
        """The enabled client, from memory while fresh; unknown ids are never remembered,
        so guessing them cannot fill the cache.
        """
        now = self._clock()
        client = self._fresh(client_id, now)
        if client is not None:
            return client
        forgotten = self._forgotten
        client = await get_client(session, client_id)
        if client is None:
            self._items.pop(client_id, None)
            return None
        if len(self._items) >= self._max_items:
            self._items.clear()
        # Detached from its session: handlers only read it.
        session.expunge(client)
        if forgotten == self._forgotten:
            self._items[client_id] = (client, now + self._ttl)
        return client

    def _fresh(self, client_id: str, now: float) -> OAuthClient | None:
        hit = self._items.get(client_id)
        return hit[0] if hit is not None and hit[1] > now else None
