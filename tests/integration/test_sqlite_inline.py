"""SQLite statements on the event loop (identity.db.sqlite_inline): only lock waits leave it.

These run on a SQLite file of their own in both CI passes, since the embedded default
is SQLite whatever the suite's backend.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db import engine, sqlite_inline
from identity.db.engine import Database, DatabaseUnavailable, create_engine
from identity.settings import Settings

meta = MetaData()
notes = Table("notes", meta, Column("id", Integer, primary_key=True), Column("body", String))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(create_engine(Settings.from_env({"IDENTITY_DATA_DIR": str(tmp_path)})))
    async with database.engine.begin() as connection:
        await connection.run_sync(meta.create_all)
    yield database
    await database.dispose()


def _file(tmp_path: Path) -> str:
    return str(tmp_path / "identity.db")


async def _count(db: Database) -> int:
    async with db.transaction() as session:
        return int(await session.scalar(select(func.count()).select_from(notes)) or 0)


class _LockWait:
    """Whether a writer is asleep in SQLite's busy handler, waiting for another's write lock:
    a test that needs it waiting goes on once it is, instead of sleeping a guessed while.

    SQLite's trace callback, called as a statement starts, tells which thread runs the
    statement that takes the lock; the kernel tells when that thread sleeps. Before the
    statement returns, nothing but the busy handler puts it to sleep.
    """

    def __init__(self) -> None:
        self._thread: int | None = None

    async def watch(self, session: AsyncSession) -> None:
        """Follow the statements of ``session``'s connection from now on."""
        raw = await (await session.connection()).get_raw_connection()
        self.follow(raw.driver_connection.raw)

    def follow(self, raw: sqlite3.Connection) -> None:
        """Follow the statements of the SQLite connection ``raw`` from now on."""

        def started(sql: str) -> None:
            # The implicit BEGIN before a write takes no lock; the write after it, or the
            # BEGIN IMMEDIATE that opens a savepoint, does.
            if sql.startswith(("INSERT", "BEGIN IMMEDIATE")):
                self._thread = threading.get_native_id()

        raw.set_trace_callback(started)

    async def waiting(self, writer: asyncio.Task[None]) -> None:
        """Return once the writer sleeps in its lock-taking statement, or has ended (waiting
        on the event loop, it ends before this can look: its error then fails the test)."""
        while not writer.done():
            if self._thread and _asleep(self._thread):
                return
            await asyncio.sleep(0.001)


def _asleep(thread: int) -> bool:
    stat = Path(f"/proc/self/task/{thread}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "S"


async def test_reads_and_writes_round_trip_through_the_inline_connection(db: Database) -> None:
    async with db.transaction() as session:
        await session.execute(insert(notes).values(body="first"))
        await session.execute(insert(notes).values(body="second"))
    async with db.transaction() as session:
        bodies = (await session.scalars(select(notes.c.body).order_by(notes.c.id))).all()
    assert bodies == ["first", "second"]


async def test_a_failed_transaction_leaves_nothing_behind(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            await session.execute(insert(notes).values(body="half"))
            raise RuntimeError("after the first write")
    assert await _count(db) == 0


async def test_a_write_waiting_for_another_writer_leaves_the_event_loop_free(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(_file(tmp_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
    try:

        async def write() -> None:
            async with db.transaction() as session:
                await session.execute(insert(notes).values(body="waited"))

        waiting = asyncio.create_task(write())
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.01)
            ticks += 1
        # The loop ran all along, and reads do not wait for the writer either.
        assert ticks == 20
        assert not waiting.done()
        assert await _count(db) == 0
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(waiting, 5)
    assert await _count(db) == 1


async def test_a_write_cancelled_while_it_waits_for_the_lock_leaves_the_event_loop_free(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(_file(tmp_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    lock = _LockWait()
    try:

        async def write() -> None:
            async with db.transaction() as session:
                await lock.watch(session)
                await session.execute(insert(notes).values(body="cancelled"))

        waiting = asyncio.create_task(write())
        await asyncio.wait_for(lock.waiting(waiting), 10)
        assert not waiting.done()
        waiting.cancel()
        # The clean-up that follows the cancellation (SQLAlchemy closes the connection)
        # queues behind the waiting statement on the connection's thread, instead of
        # blocking the loop on the connection until that statement is done.
        started = asyncio.get_running_loop().time()
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert asyncio.get_running_loop().time() - started < 1
    finally:
        other.execute("COMMIT")
        other.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)
    assert await _count(db) == 0


async def test_a_call_after_a_cancelled_lock_wait_queues_behind_it_on_the_thread(
    db: Database, tmp_path: Path
) -> None:
    # A cancelled call stops its caller waiting, not the thread: the statement goes on
    # waiting there for the lock. The connection's next call was let run on the event loop,
    # where SQLite made it wait for that statement, the loop stopped for up to the busy
    # timeout. (SQLAlchemy closes a connection after a cancel, and a close goes to the thread
    # anyway: the test above cannot see this; a rollback, say, here.)
    connection = await sqlite_inline.connector(_file(tmp_path))()
    other = sqlite3.connect(_file(tmp_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    lock = _LockWait()
    lock.follow(connection.raw)
    try:
        cursor = connection.cursor()
        writing = asyncio.create_task(cursor.execute("INSERT INTO notes (body) VALUES ('x')"))
        await asyncio.wait_for(lock.waiting(writing), 10)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        rolling_back = asyncio.create_task(connection.rollback())
        started = asyncio.get_running_loop().time()
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert asyncio.get_running_loop().time() - started < 1
        assert not rolling_back.done()  # queued behind the statement still waiting
    finally:
        other.execute("COMMIT")
        other.close()
    await asyncio.wait_for(rolling_back, 5)  # the insert, done once the lock came, undone
    await connection.close()
    assert await _count(db) == 0


@pytest.mark.parametrize("savepoint", [False, True], ids=["plain", "savepoint"])
async def test_a_writer_waiting_for_the_lock_does_not_stop_the_holder_from_committing(
    db: Database, savepoint: bool
) -> None:
    # Also when a savepoint opens the transaction: a SAVEPOINT outside one opens it without
    # taking the write lock, and the write after it, counted as inside a transaction, waited
    # for the lock on the event loop, where the holder could then never commit.
    holding = asyncio.Event()
    release = asyncio.Event()
    lock = _LockWait()

    async def holder() -> None:
        async with db.transaction() as session:
            await session.execute(insert(notes).values(body="holder"))
            holding.set()
            await release.wait()  # suspended mid-transaction, the write lock held

    async def second() -> None:
        await holding.wait()
        async with db.transaction() as session:
            await lock.watch(session)
            if savepoint:
                async with session.begin_nested():
                    await session.execute(insert(notes).values(body="second"))
            else:
                await session.execute(insert(notes).values(body="second"))

    tasks = [asyncio.create_task(holder()), asyncio.create_task(second())]
    await asyncio.wait_for(lock.waiting(tasks[1]), 10)
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert await _count(db) == 2


async def test_a_lock_held_past_the_busy_timeout_is_an_unavailable_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_SECONDS", 0.2)
    db = Database(create_engine(Settings.from_env({"IDENTITY_DATA_DIR": str(tmp_path)})))
    async with db.engine.begin() as connection:
        await connection.run_sync(meta.create_all)
    other = sqlite3.connect(_file(tmp_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction() as session:
                await session.execute(insert(notes).values(body="too late"))
    finally:
        other.execute("ROLLBACK")
        other.close()
        await db.dispose()


async def test_reads_run_on_the_event_loop_and_lock_taking_writes_on_the_connections_thread(
    db: Database,
) -> None:
    loop_thread = threading.get_ident()
    async with db.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        # SQLite calls a function on the thread that runs the statement.
        raw.driver_connection.raw.create_function(  # type: ignore[union-attr]
            "on_loop", 0, lambda: int(threading.get_ident() == loop_thread)
        )
        first_read = await connection.scalar(text("SELECT on_loop()"))
        await connection.execute(text("INSERT INTO notes (body) VALUES (CAST(on_loop() AS TEXT))"))
        in_transaction = await connection.scalar(text("SELECT on_loop()"))
        await connection.commit()
    async with db.transaction() as session:
        write = await session.scalar(select(notes.c.body))
    # The write that took the lock ran off the loop; once it held the lock, the
    # transaction's next statement ran on the loop again.
    assert (first_read, write, in_transaction) == (1, "0", 1)
