"""Isolated databases and Redis key spaces for tests, on SQLite or PostgreSQL and memory or Redis.

Set IDENTITY_TEST_DATABASE_URL (PostgreSQL) and IDENTITY_TEST_REDIS_URL to run the suite on
real servers, as .ci/run does; each test then gets its own schema and its own key prefix.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis
from sqlalchemy.engine import make_url

TEST_DATABASE_URL = os.environ.get("IDENTITY_TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("IDENTITY_TEST_REDIS_URL") or None
# Fixed for tests so stored ciphertexts are readable across fixtures; never used elsewhere.
TEST_SECRET_KEY = "test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Backend:
    env: dict[str, str]
    label: str


def _libpq_dsn(url: str) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    return parsed.render_as_string(hide_password=False)


@contextmanager
def isolated_database(data_dir: Path) -> Iterator[dict[str, str]]:
    """Environment entries naming a fresh, empty database for one test."""
    if TEST_DATABASE_URL is None:
        yield {}
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    dsn = _libpq_dsn(TEST_DATABASE_URL)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = make_url(TEST_DATABASE_URL)
    if base.get_driver_name() not in ("psycopg", "asyncpg"):
        base = base.set(drivername="postgresql+psycopg")
    # search_path makes the schema the default one, for the app and for Alembic alike.
    url = base.render_as_string(hide_password=False)
    separator = "&" if "?" in url else "?"
    url += f"{separator}options={quote(f'-csearch_path={schema}')}"
    try:
        yield {"IDENTITY_DATABASE_URL": url}
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextmanager
def isolated_redis() -> Iterator[dict[str, str]]:
    """Environment entries naming Redis with a key prefix of this test's own."""
    if TEST_REDIS_URL is None:
        yield {}
        return
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    try:
        yield {"IDENTITY_REDIS_URL": TEST_REDIS_URL, "IDENTITY_REDIS_KEY_PREFIX": prefix}
    finally:
        # Never FLUSHDB: the server may be shared; delete only this test's keys.
        client = redis.Redis.from_url(TEST_REDIS_URL)
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        client.close()
