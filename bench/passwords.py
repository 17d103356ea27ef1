"""Argon2id hash and verify throughput with the default policy's parameters.

    python -m bench.passwords [--seconds 3]

One row per concurrency level: a single thread, then one thread per CPU (the service's
default bound), through the same ``Passwords`` object the server uses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

from identity.accounts.password_policy_file import load_policy
from identity.accounts.passwords import Passwords
from identity.settings import DEFAULT_POLICIES_DIR

PASSWORD = "Kx7#mQ9!vB2$"


async def rate(operation: Callable[[], Awaitable[object]], workers: int, seconds: float) -> float:
    """Operations per second with ``workers`` callers running back to back for ``seconds``."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await operation()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return done / (time.perf_counter() - started)


async def run(seconds: float) -> None:
    policy = load_policy(DEFAULT_POLICIES_DIR / "password.toml")
    passwords = Passwords.from_policy(policy, "Identity")
    stored = await passwords.hash(PASSWORD)
    a = policy.argon2
    cpus = os.cpu_count() or 1
    print(f"argon2id m={a.memory_kib} KiB t={a.time_cost} p={a.parallelism}, {cpus} CPUs, "
          f"limit {a.max_concurrency} at once")  # fmt: skip
    print(f"{'operation':<18}{'callers':>8}{'per second':>12}{'ms each':>10}")
    operations = {
        "hash": lambda: passwords.hash(PASSWORD),
        "verify": lambda: passwords.verify(stored, PASSWORD),
        "verify (unknown)": lambda: passwords.verify(None, PASSWORD),
    }
    for name, operation in operations.items():
        for workers in sorted({1, a.max_concurrency}):
            per_second = await rate(operation, workers, seconds)
            latency = 1000 * workers / per_second
            print(f"{name:<18}{workers:>8}{per_second:>12.1f}{latency:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per row (3)")
    asyncio.run(run(parser.parse_args().seconds))


if __name__ == "__main__":
    main()
