"""Alembic environment: runs migrations through the same async engine as the service."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from alembic import context
from sqlalchemy import Connection, text

from identity.db.engine import create_engine
from identity.db.migrate import compare_type, render_item
from identity.db.models import metadata
from identity.settings import Settings

config = context.config


# Several machines' `identity serve`, restarted together on an upgrade, each migrate the one
# PostgreSQL first. They take turns under this advisory lock, and each after the first finds
# nothing left to do. A session lock, not a transaction's: migrations that build indexes
# outside a transaction commit on the way.
MIGRATION_LOCK = 0x1D_E7_17_7E


def _wait_for_turn(connection: Connection) -> None:
    """Asked for again and again, each time in a short transaction of its own: a transaction
    left waiting in pg_advisory_lock would be one the turn-holder's CREATE INDEX CONCURRENTLY
    waits for in turn (it waits out every transaction older than itself), a deadlock."""
    while True:
        taken = connection.scalar(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK}
        )
        connection.commit()
        if taken:
            return
        time.sleep(0.2)


@contextmanager
def _postgresql_turn(connection: Connection) -> Iterator[None]:
    _wait_for_turn(connection)
    try:
        yield
    finally:
        connection.rollback()  # what a failed migration left open
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK})
        connection.commit()


@contextmanager
def _sqlite_turn(database: str | None) -> Iterator[None]:
    """Two processes migrating one SQLite file at once (two `serve`s started together) both
    found it empty and both created its tables: the second failed half-way. SQLite runs DDL
    outside transactions here, so its own locks cannot make them take turns; a lock on the
    file's folder does. The folder, not the file: closing any descriptor of the database
    file would drop the locks SQLite holds on it in this process."""
    if not database or database == ":memory:":
        yield
        return
    folder = os.open(Path(database).resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(folder)


def _turn(connection: Connection) -> AbstractContextManager[None]:
    if connection.dialect.name == "postgresql":
        return _postgresql_turn(connection)
    return _sqlite_turn(connection.engine.url.database)


def do_run_migrations(connection: Connection) -> None:
    with _turn(connection):
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=True,  # SQLite alters tables by copying them
            render_item=render_item,
            compare_type=compare_type,
        )
        with context.begin_transaction():
            context.run_migrations()


async def run_async_migrations(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    settings = config.attributes.get("settings") or Settings.from_env(os.environ)
    asyncio.run(run_async_migrations(settings))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
