"""Fixtures shared by the whole suite: settings, an isolated database, the app and a client."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from joserfc.jwk import RSAKey
from litestar import Litestar

from identity.app import create_app
from identity.crypto import Encryptor
from identity.db.engine import create_engine
from identity.db.models import metadata
from identity.keys.service import create_key, generate_key
from identity.runtime import Runtime
from identity.settings import Settings
from tests.asgi_lifespan import lifespan
from tests.backends import TEST_SECRET_KEY, isolated_database, isolated_redis

FAST_POLICY = Path(__file__).parent / "fixtures" / "password-fast.toml"


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The ``IDENTITY_*`` environment of one test: its own data folder, database and Redis keys."""
    base = {
        "IDENTITY_DATA_DIR": str(tmp_path),
        "IDENTITY_SECRET_KEY": TEST_SECRET_KEY,
        "IDENTITY_ISSUER": "http://testserver.local",
        # Housekeeping's first sweep comes at a random moment of its interval: a year keeps
        # it out of tests that arrange rows it would delete (they run it themselves).
        "IDENTITY_HOUSEKEEPING_INTERVAL": "365d",
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


@asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to ``app`` in this test's own event loop.

    Litestar's AsyncTestClient runs the app on a thread of its own and blocks the test's
    loop per request, so concurrent requests would run one at a time and the app's pooled
    connections would belong to another loop than the test's. httpx's ASGI transport keeps
    app and test in one loop; the app's lifespan runs around it.
    """
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with (
        lifespan(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver.local") as http,
    ):
        yield http


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(app) as test_client:
        await add_signing_key(app.state.runtime)
        yield test_client


@pytest.fixture
async def other_browser(
    app: Litestar, client: httpx.AsyncClient
) -> AsyncIterator[httpx.AsyncClient]:
    """A second browser, at another address than ``client``'s, on the same app."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50001))
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as other:
        yield other


async def add_signing_key(runtime: Runtime) -> None:
    """The first signing key, as ``identity serve`` makes one on an empty database."""
    async with runtime.db.transaction() as session:
        await create_key(session, Encryptor(TEST_SECRET_KEY, "signing-keys"), "RS256", _rsa_key())


@functools.cache
def _rsa_key() -> RSAKey:
    # RSA generation costs ~100 ms; one key serves every test that needs no fresh one.
    return generate_key("RS256")  # type: ignore[return-value]


@pytest.fixture
def runtime(app: Litestar, client: httpx.AsyncClient) -> Runtime:
    """The running app's runtime: its database, store and keys, for arranging test state."""
    return app.state.runtime
