"""Sign-in and authorization-check latency at scale, against a small database, in one run.

    .venv/bin/python -m bench.scale [--users 1000000] [--accounts 100000] [--rounds 3]

Loads two throwaway PostgreSQL schemas with psycopg's COPY: one with ``--users`` users,
``--accounts`` accounts and as many memberships as users (each with one direct grant), and
one with 1,000 users, 100 accounts and 1,000 memberships. Every user shares one argon2 hash,
computed once with the default policy's parameters. Then, in rounds alternating between the
two, it times through the service layer (no HTTP, so only the database differs):

- a sign-in: ``authenticate`` (the user look-up and one argon2id verify),
- the sign-in's look-up alone (``user_with_password``), which is what the size can change,
- ``check_batch`` of 1 and of 100 random (user, account, permission) triples,

prints p50/p99 of each on both and the large/small ratio of p50 (goal 1.2 or less), and
the query plans of the look-ups, which must be index scans.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import psycopg

from identity.accounts.password_policy_file import load_policy
from identity.accounts.passwords import Passwords
from identity.accounts.repository import user_with_password
from identity.accounts.service import authenticate
from identity.clock import utcnow
from identity.commands import migrate
from identity.db.engine import Database, create_engine
from identity.permissions import effective
from identity.settings import DEFAULT_POLICIES_DIR, Settings

DSN = "postgresql://postgres@127.0.0.1:5432/test"
URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PASSWORD = "Zr8@kWq3!nTy6^bx"
PERMISSIONS = ["invoices", "tickets", "domains", "orders", "quotes", "products", "emails"]
SAMPLES = 200


@dataclass
class Loaded:
    schema: str
    users: int
    accounts: int
    # (user, account) of some memberships, to ask about.
    pairs: list[tuple[uuid.UUID, uuid.UUID]]


def _url(schema: str) -> str:
    return f"{URL}?options={quote(f'-csearch_path={schema}')}"


def _migrate(schema: str) -> None:
    migrate(Settings.from_env({"IDENTITY_DATABASE_URL": _url(schema)}))


@contextmanager
def loaded(users: int, accounts: int, stored_hash: str) -> Iterator[Loaded]:
    """A fresh schema, migrated, then filled by COPY; dropped afterwards."""
    schema = f"scale_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        _migrate(schema)
        started = time.perf_counter()
        pairs = _fill(schema, users, accounts, stored_hash)
        print(f"loaded {users:,} users, {accounts:,} accounts, {users:,} memberships "
              f"in {time.perf_counter() - started:.0f}s", flush=True)  # fmt: skip
        yield Loaded(schema, users, accounts, pairs)
    finally:
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _fill(
    schema: str, users: int, accounts: int, stored_hash: str
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    now = datetime.now(UTC)
    rng = random.Random(7)
    account_ids = [uuid.uuid4() for _ in range(accounts)]
    pairs: list[tuple[uuid.UUID, uuid.UUID]] = []
    with psycopg.connect(DSN) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        with conn.cursor().copy("COPY accounts (id, name, created_at) FROM STDIN") as copy:
            for number, account_id in enumerate(account_ids):
                copy.write_row((account_id, f"account {number}", now))
        user_ids = [uuid.uuid4() for _ in range(users)]
        with conn.cursor().copy(
            "COPY users (id, email, name, email_verified, is_admin, disabled, created_at,"
            " updated_at) FROM STDIN"
        ) as copy:
            for number, user_id in enumerate(user_ids):
                copy.write_row(
                    (user_id, f"u{number}@example.com", "", True, False, False, now, now)
                )
        with conn.cursor().copy(
            "COPY password_credentials (user_id, hash, changed_at) FROM STDIN"
        ) as copy:
            for user_id in user_ids:
                copy.write_row((user_id, stored_hash, now))
        membership_ids = [uuid.uuid4() for _ in range(users)]
        with conn.cursor().copy(
            "COPY memberships (id, account_id, user_id, is_owner, all_permissions, created_at)"
            " FROM STDIN"
        ) as copy:
            # Each user in one account; each account gets users in turn, the first one owns it.
            for number, (membership_id, user_id) in enumerate(
                zip(membership_ids, user_ids, strict=True)
            ):
                account_id = account_ids[number % accounts]
                copy.write_row((membership_id, account_id, user_id, number < accounts, False, now))
                if number % max(1, users // 5000) == 0:
                    pairs.append((user_id, account_id))
        with conn.cursor().copy(
            "COPY membership_permissions (membership_id, permission) FROM STDIN"
        ) as copy:
            for membership_id in membership_ids:
                copy.write_row((membership_id, rng.choice(PERMISSIONS)))
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
    return pairs


async def _latencies(call: Callable[[], Awaitable[object]], count: int) -> list[float]:
    times = []
    for _ in range(count):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def _p(times: list[float], q: float) -> float:
    return statistics.quantiles(times, n=100)[int(q) - 1]


async def measure(data: Loaded, passwords: Passwords, rng: random.Random) -> dict[str, list]:
    db = Database(create_engine(Settings.from_env({"IDENTITY_DATABASE_URL": _url(data.schema)})))
    try:

        def email() -> str:
            return f"u{rng.randrange(data.users)}@example.com"

        async def sign_in() -> None:
            async with db.transaction() as session:
                assert await authenticate(session, passwords, email(), PASSWORD) is not None

        async def look_up() -> None:
            async with db.transaction() as session:
                assert await user_with_password(session, email()) is not None

        def batch(size: int) -> Callable[[], Awaitable[None]]:
            async def check() -> None:
                triples = [(*rng.choice(data.pairs), rng.choice(PERMISSIONS)) for _ in range(size)]
                async with db.transaction() as session:
                    await effective.check_batch(session, triples, utcnow())

            return check

        await _latencies(look_up, 20)  # warm the pool and the caches
        return {
            "sign-in (argon2 + look-up)": await _latencies(sign_in, SAMPLES // 4),
            "sign-in look-up": await _latencies(look_up, SAMPLES),
            "authz check, 1": await _latencies(batch(1), SAMPLES),
            "authz check, 100": await _latencies(batch(100), SAMPLES),
        }
    finally:
        await db.dispose()


def plans(data: Loaded) -> list[str]:
    user_id, account_id = data.pairs[0]
    queries: dict[str, tuple[str, tuple[object, ...]]] = {
        "user by email": (
            "SELECT * FROM users u LEFT JOIN password_credentials p ON p.user_id = u.id "
            "WHERE u.email = %s",
            ("u1@example.com",),
        ),
        "membership by pair": (
            "SELECT id FROM memberships WHERE (user_id, account_id) IN ((%s, %s))",
            (user_id, account_id),
        ),
        "grants of memberships": (
            "SELECT permission FROM membership_permissions WHERE membership_id IN "
            "(SELECT id FROM memberships WHERE user_id = %s)",
            (user_id,),
        ),
    }
    lines = []
    with psycopg.connect(DSN) as conn:
        conn.execute(f'SET search_path TO "{data.schema}"')
        for name, (query, params) in queries.items():
            plan = [row[0] for row in conn.execute("EXPLAIN " + query, params).fetchall()]
            scans = [step.strip(" ->") for step in plan if "Scan" in step]
            lines.append(f"{name}: {'; '.join(scans)}")
    return lines


def _passwords() -> Passwords:
    return Passwords.from_policy(load_policy(DEFAULT_POLICIES_DIR / "password.toml"), "Identity")


async def run(args: argparse.Namespace, small: Loaded, large: Loaded) -> None:
    passwords = _passwords()
    rng = random.Random(3)
    figures: dict[str, dict[str, list[float]]] = {"small": {}, "large": {}}
    for _ in range(args.rounds):
        # Alternating, so load from elsewhere on the machine weighs on both alike.
        for label, data in (("small", small), ("large", large)):
            for name, times in (await measure(data, passwords, rng)).items():
                figures[label].setdefault(name, []).extend(times)
    print(f"\n{args.users:,} users, {args.accounts:,} accounts, {args.users:,} memberships "
          f"vs 1,000 / 100 / 1,000; PostgreSQL; {args.rounds} rounds\n")  # fmt: skip
    print(f"| {'operation':27} | {'small p50':>9} | {'p99':>7} | {'large p50':>9} "
          f"| {'p99':>7} | {'ratio p50':>9} | goal |")  # fmt: skip
    print("|" + "|".join("-" * w for w in (29, 11, 9, 11, 9, 11, 6)) + "|")
    for name in figures["small"]:
        few, many = figures["small"][name], figures["large"][name]
        ratio = _p(many, 50) / _p(few, 50)
        print(f"| {name:27} | {_p(few, 50):9.2f} | {_p(few, 99):7.2f} | {_p(many, 50):9.2f} "
              f"| {_p(many, 99):7.2f} | {ratio:9.2f} | ≤1.2 |")  # fmt: skip
    print("\nquery plans on the large schema:")
    for line in plans(large):
        print("  " + line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    # Every user shares this one hash: hashing a million passwords would take hours.
    stored_hash = asyncio.run(_passwords().hash(PASSWORD))
    # Migrations run their own event loop, so the schemas are made before ours starts.
    with (
        loaded(1000, 100, stored_hash) as small,
        loaded(args.users, args.accounts, stored_hash) as large,
    ):
        asyncio.run(run(args, small, large))


if __name__ == "__main__":
    main()
