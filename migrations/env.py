"""Alembic environment: runs migrations through the same async engine as the service."""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from alembic import context
from alembic.migration import MigrationContext
from sqlalchemy import Connection, event, text

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
def _sqlite_turn(connection: Connection) -> Iterator[None]:
    with _folder_lock(connection.engine.url.database), _sqlite_transactions(connection):
        yield


@contextmanager
def _folder_lock(database: str | None) -> Iterator[None]:
    """Two processes migrating one SQLite file at once (two `serve`s started together) both
    found it empty and both created its tables: the second failed half-way. Each reads the
    version in one transaction and applies each revision in another, so SQLite's own locks
    cannot make them take turns; a lock on the file's folder does. The folder, not the file:
    closing any descriptor of the database file would drop the locks SQLite holds on it in
    this process."""
    if not database or database == ":memory:":
        yield
        return
    folder = os.open(Path(database).resolve().parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(folder)


@contextmanager
def _sqlite_transactions(connection: Connection) -> Iterator[None]:
    """Python's sqlite3 opens a transaction only before INSERT, UPDATE or DELETE, so each
    CREATE and DROP of a revision was committed on its own: a revision stopped part-way (an
    error, a full disk, a kill) left some of its tables while the version stayed the one
    before, and every later run failed on them. SQLite's DDL is transactional once a BEGIN is
    sent, so one is sent whenever a transaction begins.

    Foreign keys are off meanwhile, as SQLite's own procedure for altering tables has it: a
    table rebuilt by ``batch_alter_table`` is copied and its original dropped, and dropping a
    table that rows reference deletes those rows (ON DELETE CASCADE) while foreign keys are
    on. The pragma is ignored inside a transaction, so it is set before the first BEGIN, and
    each revision's references are checked before its transaction commits
    (``_check_foreign_keys``)."""
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    event.listen(connection, "begin", _begin_immediate)
    try:
        yield
    finally:
        event.remove(connection, "begin", _begin_immediate)
        connection.rollback()  # what a failed revision left open
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def _begin_immediate(connection: Connection) -> None:
    """IMMEDIATE takes the write lock at once, waiting for a running server's writes: a
    transaction that read first could not take it later if a server wrote meanwhile.
    Alembic's autocommit blocks (for PostgreSQL's concurrent index builds) stay outside."""
    if connection.get_execution_options().get("isolation_level") != "AUTOCOMMIT":
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _check_foreign_keys(*, ctx: MigrationContext, heads: set[str], **_: Any) -> None:
    """With foreign keys off, nothing else stops a revision from leaving a row whose
    reference leads nowhere; raising here rolls the revision back."""
    assert ctx.connection is not None
    broken = ctx.connection.exec_driver_sql("PRAGMA foreign_key_check").first()
    if broken is not None:
        raise RuntimeError(
            f"the migration to {', '.join(sorted(heads))} leaves rows of {broken[0]} "
            f"that reference no row of {broken[2]}"
        )


def _turn(connection: Connection) -> AbstractContextManager[None]:
    if connection.dialect.name == "postgresql":
        return _postgresql_turn(connection)
    return _sqlite_turn(connection)


def do_run_migrations(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    with _turn(connection):
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=True,  # SQLite alters tables by copying them
            render_item=render_item,
            compare_type=compare_type,
            # On SQLite, one transaction per revision: a revision stopped part-way leaves
            # the database at the one before, and the next run resumes from there.
            transactional_ddl=True,
            transaction_per_migration=sqlite,
            on_version_apply=[_check_foreign_keys] if sqlite else [],
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
