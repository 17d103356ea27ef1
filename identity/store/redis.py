"""A store in Redis, shared by every server process."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from identity.store.base import StoreUnavailable

# How long a call waits for a Redis that does not answer (connecting, or for a reply).
SOCKET_TIMEOUT = 2

# INCR and the first EXPIRE in one step, so a crash between them cannot leave a counter
# that never resets (a permanent lock-out). The time left is rounded up from milliseconds:
# TTL rounds to the nearest second, and would say 0 while the counter still counts.
_INCR = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); left = tonumber(ARGV[1]) * 1000 end
return {count, math.ceil(left / 1000)}
"""

# DECR on a missing key would create a counter of -1 with no expiry: only a live one is
# decremented (DECR keeps its TTL).
_DECR = """
local count = tonumber(redis.call('GET', KEYS[1]))
if count and count > 0 then redis.call('DECR', KEYS[1]) end
"""

# A sign-in's two counts settled in one round trip: one given back as ``_DECR`` does, the
# other cleared.
_DECR_AND_DELETE = _DECR + "redis.call('DEL', KEYS[2])\n"


class RedisStore:
    def __init__(self, url: str, prefix: str) -> None:
        self._redis = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
            health_check_interval=30,
        )
        self._prefix = prefix
        self._incr = self._redis.register_script(_INCR)
        self._decr = self._redis.register_script(_DECR)
        self._decr_and_delete = self._redis.register_script(_DECR_AND_DELETE)

    def _key(self, key: str) -> str:
        return self._prefix + key

    async def set(self, key: str, value: bytes, ttl: int) -> None:
        try:
            await self._redis.set(self._key(key), value, ex=ttl)
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        try:
            return bool(await self._redis.set(self._key(key), value, ex=ttl, nx=True))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def get(self, key: str) -> bytes | None:
        try:
            return await self._redis.get(self._key(key))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def consume(self, key: str) -> bytes | None:
        try:
            return await self._redis.getdel(self._key(key))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def delete(self, key: str) -> None:
        try:
            await self._redis.delete(self._key(key))
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        try:
            count, remaining = await self._incr(keys=[self._key(key)], args=[ttl])
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return int(count), int(remaining)

    async def decr(self, key: str) -> None:
        try:
            await self._decr(keys=[self._key(key)])
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def decr_and_delete(self, decr: str, delete: str) -> None:
        try:
            await self._decr_and_delete(keys=[self._key(decr), self._key(delete)])
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except RedisError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    async def close(self) -> None:
        await self._redis.aclose()
