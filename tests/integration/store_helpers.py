"""What a test's own requests ask of the shared store (Redis, or without it this process's
memories of sign-in state and of counts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis.asyncio.connection import AbstractConnection

from identity.runtime import Runtime
from identity.store.fallback import FallbackStore

# Every call of the store contract (identity.store.base.Store) but ping and close.
_CALLS = ("set", "add", "get", "consume", "delete", "incr", "decr", "decr_and_delete")


def _shared_stores(runtime: Runtime) -> list[Any]:
    """The stores behind ``runtime.store`` and ``runtime.limiter``: with Redis one and the
    same (each call one round trip), without it two memories. The per-process memories they
    fall back on are left out: reaching them costs no round trip."""
    state = runtime.store._shared if isinstance(runtime.store, FallbackStore) else runtime.store
    counts = runtime.limiter._store
    return [state] if counts is state else [state, counts]


@contextmanager
def counting_store_calls(runtime: Runtime) -> Iterator[list[str]]:
    """The store calls made meanwhile, by name, in order."""
    calls: list[str] = []
    stores = _shared_stores(runtime)
    # A call the store makes of itself (the memory's ``add`` sets) is part of the one asked.
    inside: list[bool] = []

    def counted(name: str, method: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if inside:
                return await method(*args, **kwargs)
            calls.append(name)
            inside.append(True)
            try:
                return await method(*args, **kwargs)
            finally:
                inside.pop()

        return call

    for store in stores:
        for name in _CALLS:
            setattr(store, name, counted(name, getattr(store, name)))
    try:
        yield calls
    finally:
        for store in stores:
            for name in _CALLS:
                delattr(store, name)


@contextmanager
def counting_redis_round_trips() -> Iterator[list[int]]:
    """One entry per request sent to Redis meanwhile (a pipeline's commands go as one)."""
    sent: list[int] = []
    send = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        sent.append(1)
        await send(self, *args, **kwargs)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
