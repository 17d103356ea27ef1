"""A Redis that stops answering (a hung host, a partition dropping packets), not refusing.

Each call to it waits out the socket timeout before falling back to this process's memory:
asked on every call, a sign-in would take many timeouts, and requests pile up.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
import redis.asyncio

from identity.runtime import Runtime
from identity.settings import Settings
from identity.store import factory
from identity.store.breaker import RETRY_SECONDS, Breaker
from identity.store.rate_limit import Limit
from identity.store.redis import SOCKET_TIMEOUT
from tests.backends import TEST_REDIS_URL
from tests.browser import authorize_params, redirected_to_client, sign_in
from tests.integration.page_helpers import served_for_sign_in
from tests.tcp_proxy import TcpProxy

pytestmark = pytest.mark.skipif(TEST_REDIS_URL is None, reason="needs the Redis pass (.ci/run)")

LIMIT = Limit("signin-ip", max=1000, window=60)


@pytest.fixture
async def proxied(database: Settings) -> AsyncIterator[tuple[Settings, TcpProxy]]:
    """Settings reaching Redis through a proxy, and the proxy."""
    target = urlsplit(database.redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield dataclasses.replace(database, redis_url=f"redis://127.0.0.1:{proxy.port}/0"), proxy
    await proxy.cut()


@pytest.fixture
def breaker_clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock of the breakers made from now on, which the test moves: waiting out
    ``RETRY_SECONDS`` would cost the test as much, and a loaded machine may wake it late."""
    now = [0.0]
    monkeypatch.setattr(factory, "Breaker", functools.partial(Breaker, clock=lambda: now[0]))
    return now


@pytest.fixture
async def proxied_runtime(
    proxied: tuple[Settings, TcpProxy], breaker_clock: list[float]
) -> AsyncIterator[Runtime]:
    runtime = Runtime(proxied[0])
    yield runtime
    await runtime.close()


async def _state_and_counts(runtime: Runtime, calls: int) -> None:
    """``calls`` rounds of what a sign-in asks of the store: its state, and a count."""
    for n in range(calls):
        await runtime.store.set(f"flow:{n}", b"pending", 60)
        assert await runtime.store.consume(f"flow:{n}") == b"pending"
        assert (await runtime.limiter.hit(LIMIT, "203.0.113.7")).allowed


async def test_calls_do_not_each_wait_for_a_redis_that_stopped_answering(
    proxied: tuple[Settings, TcpProxy], proxied_runtime: Runtime, breaker_clock: list[float]
) -> None:
    runtime = proxied_runtime
    settings, proxy = proxied
    await _state_and_counts(runtime, 1)
    await proxy.blackhole()
    # One call finds it gone, the others go on without it: not one timeout each.
    async with asyncio.timeout(2 * SOCKET_TIMEOUT):
        await _state_and_counts(runtime, 10)
    assert runtime.limiter.degraded

    await proxy.heal()
    breaker_clock[0] += RETRY_SECONDS
    healed = time.monotonic()
    shared = redis.asyncio.Redis.from_url(TEST_REDIS_URL or "")
    try:
        # Back by itself once the breaker's interval is over and the store is asked again.
        n = 0
        while not await shared.exists(f"{settings.redis_key_prefix}back:{n}"):
            assert time.monotonic() - healed < SOCKET_TIMEOUT + 1
            n += 1
            await runtime.store.set(f"back:{n}", b"1", 60)
            await asyncio.sleep(0.1)
    finally:
        await shared.aclose()
    await _state_and_counts(runtime, 1)
    assert not runtime.limiter.degraded


async def test_while_one_call_asks_redis_again_the_others_do_not_wait(
    proxied: tuple[Settings, TcpProxy], proxied_runtime: Runtime, breaker_clock: list[float]
) -> None:
    runtime = proxied_runtime
    _, proxy = proxied
    await proxy.blackhole()
    await _state_and_counts(runtime, 1)
    breaker_clock[0] += RETRY_SECONDS
    proxy.dropped_a_request.clear()
    asking = asyncio.create_task(runtime.store.set("flow:ask", b"pending", 60))
    await asyncio.wait_for(proxy.dropped_a_request.wait(), SOCKET_TIMEOUT)  # it asks Redis
    assert not asking.done()
    async with asyncio.timeout(SOCKET_TIMEOUT / 2):
        await _state_and_counts(runtime, 10)
    await asking
    assert await runtime.store.consume("flow:ask") == b"pending"


async def test_sign_ins_go_on_without_waiting_for_a_redis_that_stopped_answering(
    proxied: tuple[Settings, TcpProxy],
) -> None:
    settings, proxy = proxied
    async with served_for_sign_in(settings) as (http, _):
        redirected_to_client(await sign_in(http, authorize_params(prompt="login")))
        await proxy.blackhole()
        # Each sign-in asks the store a dozen times: one timeout each would be minutes.
        async with asyncio.timeout(3 * SOCKET_TIMEOUT):
            for _ in range(5):
                redirected_to_client(await sign_in(http, authorize_params(prompt="login")))
        # Readiness asks Redis itself, however recently a call found it gone.
        assert (await http.get("/health/ready")).json()["status"] == "degraded"
        await proxy.heal()
        assert (await http.get("/health/ready")).json()["status"] == "ready"
        redirected_to_client(await sign_in(http, authorize_params(prompt="login")))
