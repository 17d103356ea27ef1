"""The shared store with this process's memory taking over while it is down."""

from __future__ import annotations

import pytest

from identity.store.base import StoreUnavailable
from identity.store.fallback import FallbackStore
from identity.store.memory import MemoryStore
from identity.store.rate_limit import Limit, RateLimiter


class FlakyStore(MemoryStore):
    """A memory store that can be taken down, as Redis is by a network cut."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def __getattribute__(self, name: str) -> object:
        if name in (
            "set",
            "add",
            "get",
            "consume",
            "delete",
            "incr",
            "decr",
            "ping",
        ) and object.__getattribute__(self, "down"):
            raise StoreUnavailable("down")
        return object.__getattribute__(self, name)


async def test_state_written_while_down_is_found_and_consumed_once_after_recovery() -> None:
    shared = FlakyStore()
    store = FallbackStore(shared)
    shared.down = True
    await store.set("flow:1", b"pending", 60)
    assert await store.get("flow:1") == b"pending"
    shared.down = False
    # Back: new state goes to the shared store, the state kept meanwhile is still found.
    await store.set("flow:2", b"new", 60)
    assert await shared.get("flow:2") == b"new"
    assert await store.consume("flow:1") == b"pending"
    assert await store.consume("flow:1") is None


async def test_counters_and_ping_are_not_taken_over() -> None:
    shared = FlakyStore()
    store = FallbackStore(shared)
    shared.down = True
    # The rate limiter keeps its own per-process counts; readiness must see the outage.
    with pytest.raises(StoreUnavailable):
        await store.incr("rl:x", 60)
    with pytest.raises(StoreUnavailable):
        await store.ping()


async def test_a_throttle_used_up_in_the_shared_store_stays_used_up_when_it_goes_down() -> None:
    shared = FlakyStore()
    limiter = RateLimiter(shared)
    limit = Limit("signin-account", max=3, window=60)
    for _ in range(3):
        assert (await limiter.hit(limit, "victim@example.com")).allowed
    shared.down = True
    # Counting in this process goes on from the shared count, not from zero: an outage
    # must not hand whoever used up the window a fresh one.
    verdict = await limiter.hit(limit, "victim@example.com")
    assert not verdict.allowed
    assert 0 < verdict.retry_after <= 60


async def test_attempts_given_back_to_the_shared_store_are_not_held_against_anyone_after() -> None:
    shared = FlakyStore()
    limiter = RateLimiter(shared)
    limit = Limit("signin-ip", max=2, window=60)
    await limiter.hit(limit, "203.0.113.7")
    await limiter.hit(limit, "203.0.113.7")
    await limiter.release(limit, "203.0.113.7")  # a success
    shared.down = True
    assert (await limiter.hit(limit, "203.0.113.7")).allowed
    assert not (await limiter.hit(limit, "203.0.113.7")).allowed


async def test_state_saved_again_after_recovery_is_consumed_once() -> None:
    # A sign-in begun during the outage, resumed after it: the flow is saved again, to the
    # shared store now, and consent takes it. A double submission must find nothing, or it
    # would issue a second code from the copy kept here during the outage.
    shared = FlakyStore()
    store = FallbackStore(shared)
    shared.down = True
    await store.set("flow:1", b"pending", 60)
    shared.down = False
    await store.set("flow:1", b"signed in", 60)
    assert await store.consume("flow:1") == b"signed in"
    assert await store.consume("flow:1") is None
    assert await store.get("flow:1") is None


async def test_state_saved_again_while_down_wins_over_the_older_shared_copy() -> None:
    # Saved to the shared store, then saved again while it was down: the copy kept here is
    # the newer one. Read back after recovery, the older shared one used to win (a second
    # "ended" time for email changes lost, reviving a link it ended), and taking it left the
    # copy here to be taken a second time (two codes from one sign-in step).
    shared = FlakyStore()
    store = FallbackStore(shared)
    await store.set("flow:1", b"older", 60)
    shared.down = True
    await store.set("flow:1", b"newer", 60)
    shared.down = False
    assert await store.get("flow:1") == b"newer"
    assert await store.consume("flow:1") == b"newer"
    assert await store.consume("flow:1") is None
    assert await store.get("flow:1") is None


async def test_a_value_added_while_down_is_still_there_for_add_after_recovery() -> None:
    shared = FlakyStore()
    store = FallbackStore(shared)
    shared.down = True
    assert await store.add("mark:1", b"first", 60)
    assert not await store.add("mark:1", b"second", 60)
    shared.down = False
    # Back: the shared store has no such key, but the one kept here still holds it.
    assert not await store.add("mark:1", b"third", 60)
    assert await store.get("mark:1") == b"first"
    assert await store.add("mark:2", b"new", 60)
    assert await shared.get("mark:2") == b"new"


async def test_the_warnings_name_what_the_shared_store_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "Down" after a timeout and "down" after a refused connection call for different
    # remedies (a slow host against a stopped one): the log says which it was.
    shared = FlakyStore()
    store = FallbackStore(shared)
    limiter = RateLimiter(shared)
    shared.down = True
    with caplog.at_level("WARNING"):
        await store.get("flow:1")
        await limiter.hit(Limit("login", 5, 60), "a@example.com")
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2
    assert all("(down)" in w for w in warnings), warnings
