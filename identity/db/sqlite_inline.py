"""SQLite for the async engine, without a thread hand-over for every call.

aiosqlite runs each call of a statement (open a cursor, execute, fetch, close) and of a
transaction (commit, the pool's rollback) on the connection's own thread and hands the
result back to the event loop: five hand-overs for a lone SELECT, and under load each one
waits for the GIL. Yet SQLite answers most statements from its page cache in microseconds,
and in WAL mode a reader never waits for a writer. So this connection, which SQLAlchemy's
aiosqlite dialect adapts in aiosqlite's place (``async_creator``), runs statements right on
the event loop, and sends to its thread only what can wait:

- a statement that needs the write lock, i.e. any statement but a SELECT made outside a
  transaction: the lock may be held by another connection, and SQLite's busy handler then
  sleeps up to ``busy_timeout``; once it is held, the transaction's other statements cannot
  wait for anything;
- a SAVEPOINT that opens the transaction, which takes the write lock first (see
  ``InlineCursor.execute``);
- COMMIT, which syncs the log to disk and now and then checkpoints it into the database;
- closing, which may checkpoint too.

Each connection has its own thread, as with aiosqlite: a transaction waiting for the write
lock must never stand in the way of the commit of the one that holds it. While that thread
works, every call of its connection goes there too (a cancelled request's rollback, say):
the connection serves one call at a time, and the event loop must not queue for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _may_wait(connection: sqlite3.Connection, sql: str) -> bool:
    # sqlite3 opens a transaction only before a statement that writes; a SELECT outside one
    # reads a snapshot and takes no lock a writer holds.
    return not connection.in_transaction and sql.lstrip()[:6].upper() != "SELECT"


class InlineCursor:
    """The part of aiosqlite's cursor that SQLAlchemy's adapter calls."""

    def __init__(self, connection: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Any = ()) -> InlineCursor:
        raw = self._connection.raw
        if not raw.in_transaction and sql.lstrip()[:9].upper() == "SAVEPOINT":
            # A SAVEPOINT outside a transaction opens one without taking the write lock, and
            # the statements after it, inside a transaction, run here: one waiting for the
            # lock would hold the event loop, the holder's commit behind it. A savepoint is
            # taken to write (``begin_nested`` around an insert that may be refused), so the
            # lock is taken first, where waiting for it is harmless.
            await self._connection.run(raw.execute, "BEGIN IMMEDIATE", may_wait=True)
        may_wait = _may_wait(raw, sql)
        await self._connection.run(self._cursor.execute, sql, parameters, may_wait=may_wait)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> InlineCursor:
        may_wait = _may_wait(self._connection.raw, sql)
        await self._connection.run(self._cursor.executemany, sql, parameters, may_wait=may_wait)
        return self

    async def fetchone(self) -> Any:
        return await self._connection.run(self._cursor.fetchone)

    async def fetchmany(self, size: int | None = None) -> Sequence[Any]:
        size = self._cursor.arraysize if size is None else size
        return await self._connection.run(self._cursor.fetchmany, size)

    async def fetchall(self) -> Sequence[Any]:
        return await self._connection.run(self._cursor.fetchall)

    async def close(self) -> None:
        await self._connection.run(self._cursor.close)


class _CallsInPlace:
    """aiosqlite's queue of calls for its thread, as the adapter uses it: each call runs at once."""

    def put_nowait(self, item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, call = item
        try:
            future.set_result(call())
        except Exception as exc:
            future.set_exception(exc)


def _call_back(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    """``callback`` on ``loop``, from the connection's thread; none once the loop is closed
    (as ``asyncio.wrap_future`` does), when nothing is left to count for."""
    if not loop.is_closed():
        loop.call_soon_threadsafe(callback)


class InlineConnection:
    """The part of aiosqlite's connection that SQLAlchemy's adapter calls."""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite")
        self._on_thread = 0  # calls handed to the thread and not yet back

    # SQLAlchemy's adapter reaches into aiosqlite's connection by these names: ``_connection``
    # to know it is open, ``_conn`` and the queue ``_tx`` of calls for its thread to set the
    # isolation level (as migrations that build indexes outside a transaction do).
    @property
    def _connection(self) -> sqlite3.Connection | None:
        return self.raw

    @property
    def _conn(self) -> sqlite3.Connection:
        return self.raw

    @property
    def _tx(self) -> _CallsInPlace:
        return _CallsInPlace()

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    async def run(self, work: Callable[..., T], *args: Any, may_wait: bool = False) -> T:
        """``work(*args)`` here, or on the thread when it may wait or the thread is busy."""
        if not may_wait and not self._on_thread:
            return work(*args)
        loop = asyncio.get_running_loop()
        self._on_thread += 1
        handed = self._thread.submit(work, *args)
        # Counted until the thread is done with it, not until the caller stops waiting: a
        # cancelled caller leaves the statement running there, and the connection's next call
        # must queue behind it. Added before the caller's wait, so the count is down before
        # the caller is back.
        handed.add_done_callback(lambda _: _call_back(loop, self._handed_back))
        return await asyncio.wrap_future(handed)

    def _handed_back(self) -> None:
        self._on_thread -= 1

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self.raw.cursor())

    async def commit(self) -> None:
        await self.run(self.raw.commit, may_wait=self.raw.in_transaction)

    async def rollback(self) -> None:
        # Discards what the transaction wrote, in memory: nothing to wait for.
        await self.run(self.raw.rollback)

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        await self.run(functools.partial(self.raw.create_function, *args, **kwargs))

    async def close(self) -> None:
        await self.run(self.raw.close, may_wait=True)
        self._thread.shutdown(wait=False)

    def stop(self) -> None:
        """Close at once, from outside any event loop (SQLAlchemy's terminate)."""
        self._thread.submit(self.raw.close)
        self._thread.shutdown(wait=False)


def _create_private(database: str) -> None:
    """Make a missing database file readable by its owner alone (SQLite gives its -wal and
    -shm files the same mode): SQLite would make it as the umask allows, often readable by
    every user of the machine, and it holds password hashes and queued emails with
    password-reset links."""
    if database in ("", ":memory:") or database.startswith("file:"):
        return
    # Made already, or not makeable: SQLite opens it, or says why not, as before.
    with contextlib.suppress(OSError):
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def connector(database: str) -> Callable[[], Any]:
    """The ``async_creator`` of an engine on the SQLite file ``database``; the engine's connect
    hook sets the busy timeout (identity.db.engine)."""

    async def connect() -> InlineConnection:
        def open_file() -> sqlite3.Connection:
            _create_private(database)
            # isolation_level "" is sqlite3's default, and what aiosqlite is given: a
            # transaction opens implicitly before the first statement that writes.
            return sqlite3.connect(database, isolation_level="", check_same_thread=False)

        return InlineConnection(await asyncio.to_thread(open_file))

    return connect
