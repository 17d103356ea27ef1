"""Isolated databases and Redis key spaces for tests, on SQLite or PostgreSQL and memory or Redis.

Set IDENTITY_TEST_DATABASE_URL (PostgreSQL) and IDENTITY_TEST_REDIS_URL to run the suite on
real servers, as .ci/run does; each test then gets its own schema and its own key prefix.
Under pytest-xdist each worker also has a database of its own (``test_gw0``...): advisory
locks and ``pg_locks`` are per database, and race tests watch them.
"""

from __future__ import annotations

import functools
import os
import time
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


@functools.cache
def _worker_database_url() -> str:
    """The database of this pytest-xdist worker on TEST_DATABASE_URL's server (``test_gw0``
    for ``test``), or outside xdist (the serial tests, one file run alone) ``test_serial``;
    made on first use. Never the database the URL names: whatever else runs there, a long
    transaction makes ``identity migrate``'s CREATE INDEX CONCURRENTLY wait, and advisory
    locks and ``pg_locks``, which race tests watch, are per database."""
    assert TEST_DATABASE_URL is not None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "serial")
    base = make_url(TEST_DATABASE_URL)
    name = f"{base.database}_{worker}"
    with psycopg.connect(_libpq_dsn(TEST_DATABASE_URL), autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            # Workers starting together copy template1 at once, which PostgreSQL refuses to
            # all but one ("being accessed by other users") while that one copies.
            for attempt in range(50):
                try:
                    conn.execute(f'CREATE DATABASE "{name}"')
                    break
                except psycopg.errors.DuplicateDatabase:
                    break  # another run on this server made it meanwhile
                except psycopg.errors.ObjectInUse:
                    if attempt == 49:
                        raise
                    time.sleep(0.1)
    return base.set(database=name).render_as_string(hide_password=False)


@contextmanager
def isolated_database(data_dir: Path) -> Iterator[dict[str, str]]:
    """Environment entries naming a fresh, empty database for one test."""
    if TEST_DATABASE_URL is None:
        yield {}
        return
    schema = f"t_{uuid.uuid4().hex[:16]}"
    database_url = _worker_database_url()
    dsn = _libpq_dsn(database_url)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    base = make_url(database_url)
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
