"""Fixtures shared by the whole suite: settings, an isolated database, the app and a client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from identity.app import create_app
from identity.crypto import Encryptor
from identity.db.engine import create_engine
from identity.db.models import metadata
from identity.keys.service import ensure_key
from identity.runtime import Runtime
from identity.settings import Settings
from tests.backends import TEST_SECRET_KEY, isolated_database, isolated_redis

FAST_POLICY = Path(__file__).parent / "fixtures" / "password-fast.toml"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``IDENTITY_*`` environment of one test: its own data folder, database and Redis keys."""
    base = {
        "IDENTITY_DATA_DIR": str(tmp_path),
        "IDENTITY_SECRET_KEY": TEST_SECRET_KEY,
        "IDENTITY_ISSUER": "http://testserver.local",
    }
    if FAST_POLICY.exists():
        # Cheap argon2 parameters: tests that time hashing set their own.
        base["IDENTITY_PASSWORD_POLICY"] = str(FAST_POLICY)
    with isolated_database(tmp_path) as database, isolated_redis() as redis_env:
        yield base | database | redis_env


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return Settings.from_env(env)


async def create_schema(settings: Settings) -> None:
    """Tables straight from the models (the migration tests prove the migrations match)."""
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await engine.dispose()


@pytest.fixture
async def database(settings: Settings) -> Settings:
    await create_schema(settings)
    return settings


@pytest.fixture
async def app(database: Settings) -> AsyncIterator[Litestar]:
    yield create_app(database)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app, base_url="http://testserver.local") as test_client:
        runtime: Runtime = app.state.runtime
        async with runtime.db.transaction() as session:
            await ensure_key(session, Encryptor(TEST_SECRET_KEY, "signing-keys"), "RS256")
        yield test_client


@pytest.fixture
def runtime(app: Litestar, client: AsyncTestClient[Litestar]) -> Runtime:
    """The running app's runtime: its database, store and keys, for arranging test state."""
    return app.state.runtime


@pytest.fixture(scope="session")
def event_loop_policy() -> asyncio.AbstractEventLoopPolicy:
    return asyncio.DefaultEventLoopPolicy()
