"""Pick the store the settings ask for."""

from __future__ import annotations

from identity.settings import Settings
from identity.store.base import Store
from identity.store.breaker import Breaker
from identity.store.memory import MemoryStore
from identity.store.redis import RedisStore


def create_store(settings: Settings) -> Store:
    if settings.redis_url:
        return Breaker(RedisStore(settings.redis_url, settings.redis_key_prefix))
    return MemoryStore()
