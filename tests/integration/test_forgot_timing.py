"""The forgot-password answer takes as long for an address with an account as without.

Requests for a known and an unknown address are sent in a shuffled, interleaved order, so
that drift in the machine's load (another process, the garbage collector) falls on both
alike; the medians are then compared. What a known address sets off (look-up, token, email)
runs in the background after the answer: the test lets it finish between samples, untimed,
so that it cannot land inside whichever request comes next, and stops the mail dispatcher,
whose sending would do the same. What is timed is the answer alone, as the issue asks.
"""

from __future__ import annotations

import random
import statistics
import time

import httpx
import pytest
from sqlalchemy import func, select

from identity.accounts.models import PasswordResetToken
from identity.runtime import Runtime
from tests.integration.recovery_helpers import forgot, new_user

SAMPLES = 120  # per address
WARM_UP = 10
KNOWN, UNKNOWN = "ana@example.com", "nobody@example.com"


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    # Limits out of the way: a suppressed request would not exercise the known-user path.
    return env | {
        "IDENTITY_RESET_LIMIT_PER_EMAIL": f"{10 * SAMPLES}/30m",
        "IDENTITY_RESET_LIMIT_PER_IP": f"{10 * SAMPLES}/hour",
        "IDENTITY_RESET_LIMIT_GLOBAL": f"{10 * SAMPLES}/hour",
    }


async def _timed(http: httpx.AsyncClient, email: str) -> float:
    started = time.perf_counter()
    answer = await forgot(http, email)
    elapsed = time.perf_counter() - started
    assert answer.status_code == 202
    return elapsed


async def test_known_and_unknown_addresses_are_answered_in_the_same_time(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, KNOWN)
    await runtime.mail.stop()
    for _ in range(WARM_UP):
        await _timed(client, KNOWN)
        await _timed(client, UNKNOWN)
    order = [KNOWN] * SAMPLES + [UNKNOWN] * SAMPLES
    random.shuffle(order)
    samples: dict[str, list[float]] = {KNOWN: [], UNKNOWN: []}
    for email in order:
        samples[email].append(await _timed(client, email))
        await runtime.background.drain()

    known, unknown = statistics.median(samples[KNOWN]), statistics.median(samples[UNKNOWN])
    figures = f"median known {known * 1000:.2f} ms, unknown {unknown * 1000:.2f} ms"
    print(figures)  # shown with -s: the README quotes these
    # A quarter of the faster median plus a millisecond: below what the look-up, token and
    # queued email would add if they ran before the answer (3-10 ms on SQLite), above the
    # gap that noise made on a loaded 2-core machine (up to 0.6 ms).
    assert abs(known - unknown) <= 0.25 * min(known, unknown) + 0.001, figures


async def test_the_known_address_gets_its_tokens_issued_off_the_request_path(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The timing test above is only meaningful if the known path really does its work."""
    await new_user(runtime, KNOWN)
    for _ in range(3):
        await forgot(client, KNOWN)
        await forgot(client, UNKNOWN)
    await runtime.background.drain()
    async with runtime.db.transaction() as session:
        count = await session.scalar(select(func.count()).select_from(PasswordResetToken))
    assert count == 3
