"""Authorization decisions per second, batched, in one process (one core).

    python -m bench.authz [--seconds 3] [--accounts 200] [--members 10]

Seeds a fresh database (SQLite in a temporary folder, or IDENTITY_DATABASE_URL) with
accounts, members, direct grants and roles, then asks random (user, account, permission)
triples: through ``check_batch`` alone, and through POST /api/v1/authz/check in-process
(JSON, authentication and all, without a network hop). The goal is 20,000 decisions per
second per core for batched HTTP calls.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

import httpx

from identity.accounts.models import User
from identity.app import create_app
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.db.models import metadata
from identity.keys.service import ensure_key
from identity.oauth.tokens import mint_access_token
from identity.permissions import account_roles, effective, grants
from identity.permissions.members import grant_one
from identity.permissions.models import Account, Membership, MembershipPermission
from identity.runtime import Runtime
from identity.settings import Settings
from identity.web.api.auth import SCOPE_AUTHZ

PERMISSIONS = ["invoices", "tickets", "domains", "orders", "quotes", "products", "emails"]
SYSTEM = Actor(client_id="bench")


async def seed(runtime: Runtime, accounts: int, members: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(user, account) pairs: owners, and members with direct grants and some roles."""
    await runtime.catalogue.ensure_templates(runtime.db)
    async with runtime.db.transaction() as session:
        roles = await account_roles.list_roles(session, None)
    pairs = []
    rng = random.Random(7)
    async with runtime.db.transaction() as session:
        for number in range(accounts):
            account = Account(name=f"account {number}", created_at=utcnow())
            session.add(account)
            people = [User(email=f"u{number}-{i}@example.com") for i in range(members)]
            session.add_all(people)
            await session.flush()
            for i, person in enumerate(people):
                membership = Membership(account_id=account.id, user_id=person.id, is_owner=i == 0)
                session.add(membership)
                await session.flush()
                session.add_all(
                    MembershipPermission(membership_id=membership.id, permission=p)
                    for p in rng.sample(PERMISSIONS, 3)
                )
                if i % 3 == 1:
                    role = rng.choice(roles).role
                    await grant_one(
                        session,
                        SYSTEM,
                        account.id,
                        person.id,
                        grants.RoleGrant(role.id),
                        catalogue=runtime.catalogue,
                        now=utcnow(),
                    )
                pairs.append((person.id, account.id))
    return pairs


def triples(
    pairs: list[tuple[uuid.UUID, uuid.UUID]], size: int, rng: random.Random
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    return [(*rng.choice(pairs), rng.choice(PERMISSIONS)) for _ in range(size)]


async def rate(call: Callable[[], Awaitable[int]], seconds: float) -> tuple[float, float]:
    """Decisions per second and milliseconds per call, calling back to back."""
    decisions = calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        decisions += await call()
        calls += 1
    elapsed = time.perf_counter() - started
    return decisions / elapsed, 1000 * elapsed / calls


async def run(seconds: float, accounts: int, members: int) -> None:
    folder = tempfile.mkdtemp(prefix="bench-authz-")
    env = {"IDENTITY_DATA_DIR": folder, "IDENTITY_SECRET_KEY": "b" * 40} | {
        k: v for k, v in os.environ.items() if k == "IDENTITY_DATABASE_URL"
    }
    settings = Settings.from_env(env)
    app = create_app(settings)
    async with app.lifespan():
        runtime: Runtime = app.state.runtime
        async with runtime.db.engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
        async with runtime.db.transaction() as session:
            await ensure_key(session, runtime.key_encryptor, "RS256")
        pairs = await seed(runtime, accounts, members)
        now = utcnow()
        token = mint_access_token(
            await runtime.keyset(),
            issuer=settings.issuer,
            subject="bench",
            audience="bench",
            client_id="bench",
            scope=SCOPE_AUTHZ,
            now=now,
            expires_at=now + timedelta(hours=1),
        ).token
        rng = random.Random(1)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            print(f"{accounts} accounts x {members} members, {settings.database_url.split(':')[0]}")
            print(f"{'path':<10}{'batch':>7}{'decisions/s':>14}{'ms/call':>10}")
            for size in (1, 100, 500, 1000):
                batch = triples(pairs, size, rng)

                async def direct(batch: list = batch) -> int:
                    async with runtime.db.transaction() as session:
                        return len(await effective.check_batch(session, batch, utcnow()))

                body = {
                    "checks": [
                        {"user_id": str(u), "account_id": str(a), "permission": p}
                        for u, a, p in batch
                    ]
                }

                async def over_http(body: dict = body) -> int:
                    response = await http.post(
                        "/api/v1/authz/check",
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    response.raise_for_status()
                    return len(response.json()["allowed"])

                for name, call in (("service", direct), ("http", over_http)):
                    per_second, per_call = await rate(call, seconds)
                    print(f"{name:<10}{size:>7}{per_second:>14,.0f}{per_call:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--members", type=int, default=10)
    arguments = parser.parse_args()
    asyncio.run(run(arguments.seconds, arguments.accounts, arguments.members))


if __name__ == "__main__":
    main()
