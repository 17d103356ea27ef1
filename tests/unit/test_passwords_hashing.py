"""Argon2id storage: parameters, rehash, dummy verify, limits, and the event loop kept free."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from identity.accounts.password_policy import PasswordPolicy
from identity.accounts.password_policy_file import load_policy
from identity.accounts.passwords import HASHING_NICENESS, Passwords
from identity.settings import DEFAULT_POLICIES_DIR

FIXTURES = Path(__file__).parent.parent / "fixtures"
FAST = load_policy(FIXTURES / "password-fast.toml")


def with_argon2(policy: PasswordPolicy, **changes: int) -> PasswordPolicy:
    return dataclasses.replace(policy, argon2=dataclasses.replace(policy.argon2, **changes))


def hasher_for(cls: type[PasswordHasher], policy: PasswordPolicy) -> PasswordHasher:
    a = policy.argon2
    return cls(a.time_cost, a.memory_kib, a.parallelism, a.hash_length, a.salt_length)


@pytest.fixture
def passwords() -> Passwords:
    return Passwords.from_policy(FAST, "Zorblax")


async def test_hash_is_argon2id_with_the_policy_parameters(passwords: Passwords) -> None:
    stored = await passwords.hash("Kx7#mQ9!vB2$")
    assert stored.startswith("$argon2id$v=19$m=64,t=1,p=1$")
    assert await passwords.verify(stored, "Kx7#mQ9!vB2$")
    assert not await passwords.verify(stored, "Kx7#mQ9!vB2%")


async def test_differently_composed_unicode_verifies(passwords: Passwords) -> None:
    stored = await passwords.hash("Contrase\u00f1a#Qz97")  # ñ as one code point
    assert await passwords.verify(stored, "Contrasen\u0303a#Qz97")  # n + combining tilde


async def test_unknown_user_is_verified_against_the_dummy_and_fails(passwords: Passwords) -> None:
    assert not await passwords.verify(None, "anything")


async def test_a_corrupt_stored_hash_fails_without_error(passwords: Passwords) -> None:
    assert not await passwords.verify("$argon2id$garbage", "Kx7#mQ9!vB2$")


async def test_nul_is_hashed_not_a_terminator(passwords: Passwords) -> None:
    stored = await passwords.hash("abc\x00def")
    assert not await passwords.verify(stored, "abc")
    assert await passwords.verify(stored, "abc\x00def")


async def test_a_lone_surrogate_fails_without_error(passwords: Passwords) -> None:
    stored = await passwords.hash("Kx7#mQ9!vB2$")
    assert not await passwords.verify(stored, "Kx7#mQ9\ud800")


async def test_oversized_password_is_refused_before_argon2_reads_it() -> None:
    calls: list[int] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            calls.append(len(password))
            return super().verify(hash, password)

    base = Passwords.from_policy(FAST, "Zorblax")
    passwords = dataclasses.replace(base, hasher=hasher_for(Counting, FAST))
    assert not await passwords.verify(None, "x" * (passwords.max_bytes + 1))
    assert not await passwords.verify(None, "\u00e9" * (passwords.max_bytes // 2 + 1))
    assert calls == []


async def test_hash_made_with_other_parameters_needs_rehash(passwords: Passwords) -> None:
    stronger = Passwords.from_policy(with_argon2(FAST, memory_kib=128, time_cost=2), "Zorblax")
    stored = await passwords.hash("Kx7#mQ9!vB2$")
    assert not passwords.needs_rehash(stored)
    assert stronger.needs_rehash(stored)
    assert await stronger.verify(stored, "Kx7#mQ9!vB2$")  # old hashes keep working


async def test_hashing_runs_in_at_most_max_concurrency_threads() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    class Counting(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            nonlocal active, peak
            with lock:
                active += 1
                peak = max(peak, active)
            time.sleep(0.02)
            with lock:
                active -= 1
            return super().hash(password, salt=salt)

    base = Passwords.from_policy(with_argon2(FAST, max_concurrency=2), "Zorblax")
    passwords = dataclasses.replace(base, hasher=hasher_for(Counting, FAST))
    await asyncio.gather(*(passwords.hash(f"pw{i}") for i in range(8)))
    assert peak == 2


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice values are Linux's")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop() -> None:
    niceness: list[int] = []

    class Observing(PasswordHasher):
        def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super().hash(password, salt=salt)

    base = Passwords.from_policy(FAST, "Zorblax")
    passwords = dataclasses.replace(base, hasher=hasher_for(Observing, FAST))
    await asyncio.gather(*(passwords.hash(f"pw{i}") for i in range(4)))
    loop_thread = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert niceness == [min(19, loop_thread + HASHING_NICENESS)] * 4
    passwords.close()


async def test_hashing_leaves_the_event_loop_free() -> None:
    # Real cost: 64 MiB, t=3, about 150 ms a hash on the reference machine.
    slow = Passwords.from_policy(with_argon2(FAST, memory_kib=65536, time_cost=3), "Zorblax")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await slow.hash("Kx7#mQ9!vB2$")
    elapsed = time.perf_counter() - started
    task.cancel()
    # A blocked loop would tick at most once; a free one ticks every few milliseconds.
    assert ticks >= max(3, int(elapsed / 0.005) // 4)


async def test_unknown_email_costs_as_much_as_wrong_password() -> None:
    # Default-like cost so the comparison measures argon2, not Python overhead.
    policy = with_argon2(FAST, memory_kib=19456, time_cost=2)
    passwords = Passwords.from_policy(policy, "Zorblax")
    stored = await passwords.hash("Kx7#mQ9!vB2$")

    async def timed(stored_hash: str | None) -> float:
        started = time.perf_counter()
        await passwords.verify(stored_hash, "wrong password")
        return time.perf_counter() - started

    # Taken in turns, so that a change in the machine's load weighs on both alike (in two
    # blocks of seven, a busy spell during one failed the comparison on a shared machine).
    pairs = [(await timed(stored), await timed(None)) for _ in range(9)]
    known = statistics.median(pair[0] for pair in pairs)
    unknown = statistics.median(pair[1] for pair in pairs)
    assert 0.5 < unknown / known < 2.0


def test_default_argon2_parameters_meet_owasp_and_rfc_9106_sizes() -> None:
    default = load_policy(DEFAULT_POLICIES_DIR / "password.toml").argon2
    # OWASP's minimum rows: 46 MiB x1, 19 MiB x2, 12 MiB x3, 9 MiB x4, 7 MiB x5 (KiB below).
    owasp_rows = {1: 47104, 2: 19456, 3: 12288, 4: 9216, 5: 7168}
    assert default.memory_kib >= owasp_rows[min(default.time_cost, 5)]
    assert default.salt_length >= 16 and default.hash_length >= 32
