"""``identity serve`` as a newcomer runs it: embedded default, or PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select

from identity.db.engine import Database, create_engine
from identity.keys.models import SigningKey
from identity.settings import Settings
from tests.processes import identity_server


def _count_keys(settings: Settings) -> int:
    async def count() -> int:
        db = Database(create_engine(settings))
        try:
            async with db.transaction() as session:
                return int(await session.scalar(select(func.count()).select_from(SigningKey)) or 0)
        finally:
            await db.dispose()

    return asyncio.run(count())


def test_first_start_creates_database_secret_and_key_and_restart_keeps_them(
    env: dict[str, str], settings: Settings, tmp_path: Path
) -> None:
    # No IDENTITY_SECRET_KEY: the embedded default makes and keeps its own.
    serve_env = {k: v for k, v in env.items() if k != "IDENTITY_SECRET_KEY"}
    with identity_server(serve_env) as server:
        ready = httpx.get(f"{server.base_url}/health/ready")
        assert ready.status_code == 200
        output = server.output()
    assert "identity users create" in output  # the hint for an empty database
    secret = (tmp_path / "secret.key").read_text()
    if settings.is_sqlite:
        assert (tmp_path / "identity.db").exists()
    with identity_server(serve_env):
        pass
    assert (tmp_path / "secret.key").read_text() == secret
    assert _count_keys(settings) == 1


def test_two_workers_serve_the_same_database(env: dict[str, str]) -> None:
    with identity_server(env, "--workers", "2") as server:
        statuses = {httpx.get(f"{server.base_url}/health/ready").status_code for _ in range(20)}
    assert statuses == {200}
