"""The same contract on the in-process store and on Redis (when IDENTITY_TEST_REDIS_URL is set)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from identity.accounts.throttle import SignInThrottle
from identity.errors import RateLimited
from identity.runtime import Runtime
from identity.settings import Settings
from identity.store.base import Store, StoreUnavailable
from identity.store.memory import MemoryStore
from identity.store.rate_limit import Limit, RateLimiter
from identity.store.redis import RedisStore
from tests.backends import TEST_REDIS_URL, isolated_redis
from tests.integration.store_helpers import counting_redis_round_trips

BACKENDS = ["memory"] + (["redis"] if TEST_REDIS_URL else [])


# Lets the given seconds pass for the store under test.
Elapse = Callable[[float], Awaitable[None]]


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Store, Elapse]]:
    if request.param == "memory":
        # A clock the test moves: its expiries are then exact, however late a loaded
        # machine would have woken the test from a sleep.
        now = [0.0]

        async def elapse(seconds: float) -> None:
            now[0] += seconds

        yield MemoryStore(clock=lambda: now[0]), elapse
        return
    with isolated_redis() as env:
        redis_store = RedisStore(env["IDENTITY_REDIS_URL"], env["IDENTITY_REDIS_KEY_PREFIX"])
        # Redis keeps its own time: the test sleeps it out.
        yield redis_store, asyncio.sleep
        await redis_store.close()


@pytest.fixture
def store(backend: tuple[Store, Elapse]) -> Store:
    return backend[0]


@pytest.fixture
def elapse(backend: tuple[Store, Elapse]) -> Elapse:
    return backend[1]


async def test_a_value_expires_after_its_ttl(store: Store, elapse: Elapse) -> None:
    await store.set("k", b"v", ttl=1)
    assert await store.get("k") == b"v"
    await elapse(1.2)
    assert await store.get("k") is None


async def test_consume_returns_the_value_once(store: Store) -> None:
    await store.set("code", b"payload", ttl=60)
    assert await store.consume("code") == b"payload"
    assert await store.consume("code") is None
    assert await store.get("code") is None


async def test_ten_racing_consumers_get_exactly_one_value(store: Store) -> None:
    await store.set("once", b"x", ttl=60)
    results = await asyncio.gather(*(store.consume("once") for _ in range(10)))
    assert results.count(b"x") == 1
    assert results.count(None) == 9


async def test_add_keeps_a_value_only_where_there_is_none(store: Store, elapse: Elapse) -> None:
    assert await store.add("mark", b"first", ttl=1)
    assert not await store.add("mark", b"second", ttl=1)
    assert await store.get("mark") == b"first"
    await elapse(1.2)
    assert await store.add("mark", b"third", ttl=60)
    assert await store.get("mark") == b"third"


async def test_ten_racing_adders_leave_exactly_one_value(store: Store) -> None:
    added = await asyncio.gather(*(store.add("once", str(n).encode(), 60) for n in range(10)))
    assert added.count(True) == 1
    assert await store.get("once") == str(added.index(True)).encode()


async def test_counter_counts_within_its_window_and_then_resets(
    store: Store, elapse: Elapse
) -> None:
    assert (await store.incr("c", ttl=1))[0] == 1
    count, remaining = await store.incr("c", ttl=1)
    assert count == 2
    assert 0 < remaining <= 1
    await elapse(1.2)
    assert (await store.incr("c", ttl=1))[0] == 1


async def test_a_counter_never_says_it_has_reset_before_it_has(
    store: Store, elapse: Elapse
) -> None:
    # Redis's TTL rounds to the nearest second: 0.4 s left read as 0, a Retry-After that
    # sends a client back while it is still refused, and a copy for the outage fallback that
    # expired at once (the count started again from zero in that window's last moments).
    await store.incr("c", ttl=2)
    await elapse(1.6)
    count, remaining = await store.incr("c", ttl=2)
    assert (count, remaining) == (2, 1)


async def test_delete_removes_the_value(store: Store) -> None:
    await store.set("d", b"1", ttl=60)
    await store.delete("d")
    assert await store.get("d") is None


async def test_rate_limit_refuses_past_the_maximum_and_says_when_to_retry(store: Store) -> None:
    limiter = RateLimiter(store)
    limit = Limit("login", max=3, window=60)
    verdicts = [await limiter.hit(limit, "a@example.com") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert 0 < verdicts[-1].retry_after <= 60
    assert (await limiter.hit(limit, "b@example.com")).allowed


async def test_reset_clears_a_subjects_count(store: Store) -> None:
    limiter = RateLimiter(store)
    limit = Limit("login", max=1, window=60)
    await limiter.hit(limit, "x")
    await limiter.reset(limit, "x")
    assert (await limiter.hit(limit, "x")).allowed


async def test_release_gives_back_one_attempt(store: Store) -> None:
    limiter = RateLimiter(store)
    limit = Limit("login", max=2, window=60)
    await limiter.hit(limit, "x")
    await limiter.hit(limit, "x")
    await limiter.release(limit, "x")
    assert (await limiter.hit(limit, "x")).allowed
    assert not (await limiter.hit(limit, "x")).allowed


async def test_decr_never_makes_a_counter_that_does_not_expire(
    store: Store, elapse: Elapse
) -> None:
    await store.decr("gone")
    assert await store.get("gone") is None
    await store.incr("c", ttl=1)
    await store.decr("c")
    await store.decr("c")
    assert await store.get("c") == b"0"
    await elapse(1.2)
    assert await store.get("c") is None
    assert (await store.incr("c", ttl=60))[0] == 1


async def test_decr_and_delete_gives_one_back_and_clears_the_other(
    store: Store, elapse: Elapse
) -> None:
    for _ in range(2):
        await store.incr("given", ttl=1)
        await store.incr("cleared", ttl=1)
    await store.decr_and_delete("given", "cleared")
    assert await store.get("given") == b"1"
    assert await store.get("cleared") is None
    # As ``decr``: a counter gone makes none that does not expire.
    await store.decr_and_delete("gone", "cleared")
    assert await store.get("gone") is None
    await elapse(1.2)
    assert await store.get("given") is None


async def test_decr_and_delete_is_one_round_trip(store: Store) -> None:
    await store.decr_and_delete("given", "cleared")  # the first may load Redis's script
    with counting_redis_round_trips() as trips:
        await store.decr_and_delete("given", "cleared")
    assert len(trips) == (0 if isinstance(store, MemoryStore) else 1)


async def test_release_and_reset_in_one_call(store: Store) -> None:
    limiter = RateLimiter(store)
    given, cleared = Limit("ip", max=2, window=60), Limit("account", max=1, window=60)
    for _ in range(2):
        await limiter.hit(given, "x")
    await limiter.hit(cleared, "y")
    await limiter.release_and_reset(given, "x", cleared, "y")
    assert (await limiter.hit(given, "x")).allowed
    assert not (await limiter.hit(given, "x")).allowed
    assert (await limiter.hit(cleared, "y")).allowed


async def test_a_burst_of_hits_allows_exactly_the_maximum(store: Store) -> None:
    limiter = RateLimiter(store)
    limit = Limit("login", max=3, window=60)
    verdicts = await asyncio.gather(*(limiter.hit(limit, "x") for _ in range(12)))
    assert sum(v.allowed for v in verdicts) == 3


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_an_unreachable_redis_raises_store_unavailable() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", "x:")
    with pytest.raises(StoreUnavailable):
        await store.get("k")
    await store.close()


async def test_rate_limits_fall_back_to_process_counts_when_redis_is_down() -> None:
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", f"{uuid.uuid4().hex}:")
    limiter = RateLimiter(store)
    limit = Limit("forgot", max=2, window=60)
    verdicts = [await limiter.hit(limit, "victim@example.com") for _ in range(3)]
    # Still limiting (never open) while the shared store is down, and saying so.
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert limiter.degraded
    await store.close()


def _fallbacks() -> float:
    return REGISTRY.get_sample_value("identity_rate_limit_fallbacks_total") or 0.0


@pytest.mark.parametrize("call", ["hit", "release", "release_and_reset", "reset"])
async def test_every_call_the_shared_store_misses_is_counted_as_a_fallback(call: str) -> None:
    """/metrics tells operators how often limits were counted in process memory: a call
    that the store did not answer is one, whichever it was (a reset was missed)."""
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", f"{uuid.uuid4().hex}:")
    limiter, limit = RateLimiter(store), Limit("login", max=3, window=60)
    calls = {
        "hit": lambda: limiter.hit(limit, "x"),
        "release": lambda: limiter.release(limit, "x"),
        "release_and_reset": lambda: limiter.release_and_reset(limit, "x", limit, "y"),
        "reset": lambda: limiter.reset(limit, "x"),
    }
    before = _fallbacks()

    await calls[call]()

    assert _fallbacks() == before + 1
    assert limiter.degraded
    await store.close()


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs Redis answering now and then")
async def test_redis_failing_now_and_then_hands_out_no_fresh_attempts() -> None:
    # One process's counts, as Redis answers some calls and times out on others: each answer
    # used to overwrite the process's own count with Redis's (which never saw the attempts
    # counted here), so every answer opened the fallback's share again.
    fallback = MemoryStore()
    down = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", "x:")
    with isolated_redis() as env:
        up = RedisStore(env["IDENTITY_REDIS_URL"], env["IDENTITY_REDIS_KEY_PREFIX"])
        answered, failed = RateLimiter(up, fallback), RateLimiter(down, fallback)
        limit = Limit("login", max=3, window=60)
        allowed = 0
        for _ in range(4):
            for _ in range(3):
                allowed += (await failed.hit(limit, "victim@example.com")).allowed
            allowed += (await answered.hit(limit, "victim@example.com")).allowed
        await up.close()
    await down.close()
    # What Redis counted, plus this process's share while it did not answer.
    assert allowed == 3 + 3


@pytest.mark.parametrize(("processes", "limit", "allowed"), [(2, 4, 2), (4, 3, 1), (1, 2, 2)])
async def test_while_redis_is_down_each_process_allows_its_share_of_a_limit(
    processes: int, limit: int, allowed: int
) -> None:
    # N processes counting alone would together allow N times the limit: each allows its
    # share, and at least one attempt so that nobody is shut out for the outage.
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", f"{uuid.uuid4().hex}:")
    limiter = RateLimiter(store, processes=processes)
    rule = Limit("forgot", max=limit, window=60)
    verdicts = [await limiter.hit(rule, "victim@example.com") for _ in range(limit + 1)]
    assert [v.allowed for v in verdicts] == [True] * allowed + [False] * (limit + 1 - allowed)
    await store.close()


async def test_without_redis_each_worker_allows_its_share_of_a_limit(tmp_path: Path) -> None:
    # The embedded default's counters are each process's own memory, as in a Redis outage.
    settings = Settings.from_env(
        {"IDENTITY_DATA_DIR": str(tmp_path), "IDENTITY_SERVER_PROCESSES": "2"}
    )
    runtime = Runtime(settings)
    limiter = runtime.limiter
    rule = Limit("forgot", max=4, window=60)
    verdicts = [await limiter.hit(rule, "victim@example.com") for _ in range(3)]
    assert [v.allowed for v in verdicts] == [True, True, False]
    assert not limiter.degraded
    await runtime.close()


async def test_memory_store_stays_bounded_under_a_flood_of_keys() -> None:
    store = MemoryStore(max_items=100)
    for i in range(1000):
        await store.incr(f"flood:{i}", ttl=60)
    assert len(store._items) <= 100


async def test_memory_store_stays_bounded_in_bytes_under_a_flood_of_large_values() -> None:
    # A pending sign-in holds its authorization request, up to the 32 KiB a request head may
    # carry (a state and login_hint of 2048 emoji each): 100,000 of them, which one client
    # opens in minutes, held over 3 GB in a process bounded by count alone.
    store = MemoryStore(max_items=1000, max_bytes=100_000)
    for i in range(100):
        await store.set(f"flow:{i}", b"x" * 10_000, ttl=60)
    assert sum(len(value) for value, _ in store._items.values()) <= 100_000
    assert await store.get("flow:0") is None  # the oldest went first
    assert await store.get("flow:99") == b"x" * 10_000
    # Replacing a value with a larger one is bounded too.
    for _ in range(3):
        await store.set("flow:99", b"y" * 60_000, ttl=60)
    assert sum(len(value) for value, _ in store._items.values()) <= 100_000
    assert await store.get("flow:99") == b"y" * 60_000


class _CountingScans(dict[str, tuple[bytes, float]]):
    scans = 0

    def items(self):  # type: ignore[no-untyped-def]
        self.scans += 1
        return super().items()


async def test_a_full_memory_store_does_not_scan_every_item_for_each_new_key() -> None:
    # At 100,000 items a scan takes milliseconds: a flood of new keys (a spoofed email per
    # request) must not pay one for each.
    store = MemoryStore(max_items=1000)
    items = store._items = _CountingScans()
    for i in range(1000):
        await store.incr(f"live:{i}", ttl=60)
    for i in range(500):
        await store.incr(f"flood:{i}", ttl=60)
    assert len(items) <= 1000
    assert items.scans <= 10
    assert await store.get("flood:499") == b"1"


async def test_a_client_refused_for_its_address_cannot_push_its_count_out(
    settings: Settings,
) -> None:
    # Counting in this process's bounded memory (no Redis, or Redis down), a client refused
    # for its address used to make a counter for every email it named, and enough of them
    # pushed out the oldest counters: its own address's first, then every lock-out.
    limiter = RateLimiter(MemoryStore(max_items=100), shared=False)
    throttle = SignInThrottle(limiter, dataclasses.replace(settings, login_max_failures_per_ip=3))
    for n in range(3):
        await throttle.admit(f"user{n}@example.com", "198.51.100.7")
    for n in range(1000):
        with pytest.raises(RateLimited):
            await throttle.admit(f"flood{n}@example.com", "198.51.100.7")
    with pytest.raises(RateLimited):
        await throttle.admit("user0@example.com", "198.51.100.7")


@pytest.mark.parametrize("victims_count", ["all its guesses", "all but one of them"])
async def test_a_flood_of_new_subjects_cannot_push_out_an_accounts_count(
    settings: Settings, victims_count: str
) -> None:
    # Without Redis the counts live in this process's bounded memory. A flood from many
    # addresses (IPv6 /64s are cheap), each naming a new email, used to fill it and push out
    # the oldest counters: the attacked account's among them, and with it the lock-out.
    store = MemoryStore(max_items=100)
    throttle = SignInThrottle(
        RateLimiter(store, shared=False),
        dataclasses.replace(settings, login_max_failures=3, login_max_failures_per_ip=1000),
    )
    guesses = 3 if victims_count == "all its guesses" else 2
    for n in range(guesses):
        await throttle.admit("victim@example.com", f"2001:db8:{n}::1")
    for n in range(1000):
        with contextlib.suppress(RateLimited):
            await throttle.admit(f"flood{n}@example.com", f"2001:db8:1:{n:x}::1")
    # The guess left, from an address counted before the flood (a new one is refused now).
    for _ in range(3 - guesses):
        await throttle.admit("victim@example.com", "2001:db8:0::1")
    with pytest.raises(RateLimited):
        await throttle.admit("victim@example.com", "2001:db8:1::1")
    assert all(len(counters) <= 100 for counters in store._counters.values())
    assert len(store._items) == 0


async def test_a_full_limit_still_counts_new_subjects_and_keeps_the_highest_counts() -> None:
    # A full limit that refused every subject it had no count of let a flood lock out
    # everyone not yet counted. It drops the lowest counts, the newest of equal ones, so only
    # a flood whose every subject was tried more often than an account pushes its count out.
    limiter = RateLimiter(MemoryStore(max_items=10), shared=False)
    flooded, other = Limit("flooded", max=3, window=60), Limit("other", max=3, window=60)
    for _ in range(2):
        await limiter.hit(flooded, "attacked")
    await limiter.hit(other, "counted elsewhere")
    for n in range(50):  # tried as often as the attacked account: pushes nothing out
        for _ in range(2):
            await limiter.hit(flooded, f"flood{n}")
    newcomer = await limiter.hit(flooded, "newcomer")
    assert (newcomer.allowed, newcomer.count) == (True, 1)
    assert (await limiter.hit(flooded, "attacked")).count == 3
    assert not (await limiter.hit(flooded, "attacked")).allowed
    assert (await limiter.hit(other, "counted elsewhere")).count == 2
    for n in range(50):  # each tried more often than the account: its count goes at last
        for _ in range(5):
            await limiter.hit(flooded, f"outcounting{n}")
    assert (await limiter.hit(flooded, "attacked")).count == 1


@pytest.mark.parametrize("seed", range(20))
async def test_memory_store_byte_count_is_the_size_of_the_values_it_holds(seed: int) -> None:
    # ``_bytes`` decides when values are dropped: one that drifts from the values really held
    # either drops sign-ins for nothing or lets memory grow past its bound. Every method, with
    # expiry and both kinds of eviction, on values and counters sharing keys.
    rng = random.Random(seed)
    now = [0.0]
    store = MemoryStore(clock=lambda: now[0], max_items=20, max_bytes=2_000)
    values = [f"v:{i}" for i in range(30)]
    # Counts outside ``COUNTER_PREFIX`` are values like any other; incr and decr only on these.
    counts = [f"n:{i}" for i in range(10)] + [f"rl:lim:{i}" for i in range(5)]
    for _ in range(2_000):
        operation = rng.randrange(8)
        key = rng.choice(counts if operation in (4, 5) else values + counts)
        if operation in (0, 1) and key in counts:
            key = rng.choice(values)
        value = b"x" * rng.choice([0, 1, 5, 50, 300, 1_900])
        if operation == 0:
            await store.set(key, value, ttl=rng.randint(1, 20))
        elif operation == 1:
            await store.add(key, value, ttl=rng.randint(1, 20))
        elif operation == 2:
            await store.consume(key)
        elif operation == 3:
            await store.delete(key)
        elif operation == 4:
            await store.incr(key, ttl=rng.randint(1, 20))
        elif operation == 5:
            await store.decr(key)
        elif operation == 6:
            await store.get(key)
        else:
            now[0] += rng.choice([0.5, 3, 10])
        assert store._bytes == sum(len(value) for value, _ in store._items.values())
        assert store._bytes <= 2_000
        assert len(store._items) <= 20
    await store.close()
    assert store._bytes == 0
