"""Registered clients kept in process memory for a few seconds.

The token endpoint authenticates a client on every request; reading its row each time
costs more than the rest of a client_credentials exchange put together. A change to a
client (disabled, new secret) therefore reaches every process within ``ttl`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import OAuthClient
from identity.clients.repository import get_client

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

    async def get(self, session: AsyncSession, client_id: str) -> OAuthClient | None:
        """The enabled client, from memory while fresh; unknown ids are never remembered,
        so guessing them cannot fill the cache.
        """
        now = self._clock()
        hit = self._items.get(client_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        client = await get_client(session, client_id)
        if client is None:
            self._items.pop(client_id, None)
            return None
        if len(self._items) >= self._max_items:
            self._items.clear()
        # Detached from its session: handlers only read it.
        session.expunge(client)
        self._items[client_id] = (client, now + self._ttl)
        return client
