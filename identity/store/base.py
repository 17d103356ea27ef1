"""The contract both stores keep; tests run the same cases against each."""

from __future__ import annotations

from typing import Protocol


class StoreUnavailable(Exception):
    """The shared store did not answer."""


class Store(Protocol):
    async def set(self, key: str, value: bytes, ttl: int) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds, replacing any earlier value."""

    async def add(self, key: str, value: bytes, ttl: int) -> bool:
        """Keep ``value`` under ``key`` for ``ttl`` seconds unless a value is there already:
        of racing callers, exactly one gets True."""

    async def get(self, key: str) -> bytes | None: ...

    async def consume(self, key: str) -> bytes | None:
        """Return and delete the value in one step: of racing callers, exactly one gets it."""

    async def delete(self, key: str) -> None: ...

    async def incr(self, key: str, ttl: int) -> tuple[int, int]:
        """Add one to a counter that lives ``ttl`` seconds from its first increment.

        Returns the new count and the seconds left before the counter resets.
        """

    async def decr(self, key: str) -> None:
        """Take one off a live counter, keeping its expiry; nothing when it has expired or
        is at zero (a counter must never outlive its window or go below zero)."""

    async def decr_and_delete(self, decr: str, delete: str) -> None:
        """``decr`` of one counter and ``delete`` of another, in one step and one round trip:
        a sign-in that succeeds gives its attempt back to one count and clears another."""

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` when the store cannot be reached."""

    async def close(self) -> None: ...
