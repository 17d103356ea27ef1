"""The async engine and session factory for the configured database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import sqlalchemy
from sqlalchemy import Engine, Executable, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection, Dialect, ExceptionContext
from sqlalchemy.exc import DBAPIError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from identity.db import asyncpg_options, sqlite_inline, text_guard
from identity.db import migrate as migrations
from identity.db.lone_reads import LoneReads
from identity.errors import UnstorableText
from identity.settings import Settings

# How long a statement waits for another connection's write lock before it fails.
SQLITE_BUSY_SECONDS = 5


class DatabaseUnavailable(Exception):
    """The database did not answer; callers answer 503 and try again on the next request."""


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers instead of
    # failing at once; SQLite leaves foreign keys off unless asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_EVERY_ENGINE: dict[str, Any] = {
    # SQLAlchemy quotes every parameter of a failed statement in its error, and those errors
    # reach the log with their tracebacks: mail bodies with reset links, password hashes,
    # addresses. The statement and the driver's own message are enough to diagnose.
    "hide_parameters": True,
    "json_serializer": text_guard.dumps,
}


def create_engine(settings: Settings) -> AsyncEngine:
    options: dict[str, Any] = dict(_EVERY_ENGINE)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = make_url(settings.database_url).database or ":memory:"
        options["async_creator"] = sqlite_inline.connector(database)
    else:
        options |= _server_options(settings, settings.db_pool_size)
    engine = create_async_engine(settings.database_url, **options)
    text_guard.install(engine.sync_engine)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine.sync_engine, "handle_error", _discard_read_only_connection)
    return engine


def create_read_engine(
    settings: Settings, dialect: Dialect
) -> Engine | AsyncEngine | LoneReads | None:
    """The engine of ``Database.first``, for lone reads asked on every request.

    PostgreSQL: autocommit connections of their own, so a lone SELECT is one round trip
    instead of three (BEGIN, SELECT, ROLLBACK); with psycopg, its own pool and prepared
    statements, without SQLAlchemy in between (see ``identity.db.lone_reads``).
    SQLite: the synchronous driver, run on the event loop (see ``Database.first``).
    """
    url = make_url(settings.database_url)
    if url.get_driver_name() == "psycopg":
        return LoneReads(url, dialect, settings.db_pool_size)
    if not settings.is_sqlite:
        # No overflow: an overflow connection is opened for one SELECT and closed after it,
        # and opening one costs far more than waiting for a pooled one to come back.
        options = _server_options(settings, settings.db_pool_size) | {"max_overflow": 0}
        reads = create_async_engine(url, isolation_level="AUTOCOMMIT", **options, **_EVERY_ENGINE)
        text_guard.install(reads.sync_engine)
        # It only reads, so it never meets a write refused after a failover: the main
        # engine's sign of one replaces its connections (``Database._note_failover``).
        return reads
    if url.database in (None, "", ":memory:"):
        return None  # a private in-memory database: only the main engine's connection sees it
    # Used only from the event loop's thread, one statement at a time: one connection.
    engine = sqlalchemy.create_engine(
        url.set(drivername="sqlite"),
        poolclass=QueuePool,
        pool_size=1,
        max_overflow=0,
        **_EVERY_ENGINE,
    )
    event.listen(engine, "connect", _sqlite_pragmas)
    text_guard.install(engine)
    return engine


def _server_options(settings: Settings, pool_size: int) -> dict[str, Any]:
    url = make_url(settings.database_url)
    if url.get_driver_name() == "psycopg":
        connect_args: dict[str, Any] = {"connect_timeout": 5}
    else:
        connect_args = {"timeout": 5} | asyncpg_options.converted(url.query)
    return {
        "pool_size": pool_size,
        "max_overflow": pool_size,
        "pool_timeout": 5,
        "pool_recycle": 1800,
        "connect_args": connect_args,
    }


class Database:
    """One engine per process; a unit of work is ``async with db.transaction() as session``."""

    def __init__(
        self, engine: AsyncEngine, reads: Engine | AsyncEngine | LoneReads | None = None
    ) -> None:
        self.engine = engine
        self._reads = reads
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sqlite_writer = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # The read engine's connections lead where the main engine's did, but it runs only
        # SELECTs, which a demoted primary still answers: it never sees the failover itself.
        # The main engine's sign of one retires them too, before the next lone read: the
        # signs noted, and how many of them a finished reconnection has answered.
        self._failovers_noted = 0
        self._failovers_answered = 0
        self._reconnecting = asyncio.Lock()
        if isinstance(reads, LoneReads | AsyncEngine):
            event.listen(engine.sync_engine, "handle_error", self._note_failover)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        engine = create_engine(settings)
        return cls(engine, create_read_engine(settings, engine.dialect))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        async with _translated_errors(), self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write_transaction(self) -> AsyncIterator[AsyncSession]:
        """``transaction`` for a unit of work that writes from its first statement on.

        SQLite has one writer at a time, and a writer that finds the lock taken waits in
        SQLite's busy handler, which sleeps in growing steps: under load some requests
        waited seconds. Writers of this process therefore queue here, in order, instead;
        other processes still meet them at the busy handler.
        """
        if self._sqlite_writer is None:
            async with self.transaction() as session:
                yield session
            return
        async with self._sqlite_writer, self.transaction() as session:
            yield session

    async def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first column of ``first``'s row, or None."""
        row = await self.first(statement, params)
        return None if row is None else row[0]

    async def first(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row of one SELECT, or None, outside any transaction: no ORM session to
        build, no transaction to open and close, which a lone lookup asked on every request
        (the access-token deny list, the credentials of a sign-in) does not need. It runs on
        the read engine (``create_read_engine``) when there is one.

        On SQLite it runs right here on the event loop. aiosqlite would hand each of its
        five steps (cursor, execute, fetch, close, rollback) to the connection's thread and
        back, and under load every hand-over waits for the GIL, so the lookup took
        milliseconds; done in place it takes microseconds. A WAL reader takes no lock that
        a writer holds: only crash recovery could make it wait.
        """
        async with _translated_errors():
            if self._failovers_answered < self._failovers_noted:
                await self._reconnect_reads()
            if isinstance(self._reads, LoneReads):
                return await self._reads.first(statement, params)
            if isinstance(self._reads, Engine):
                with self._reads.connect() as connection:
                    return connection.execute(statement, params).first()
            async with (self._reads or self.engine).connect() as connection:
                return (await connection.execute(statement, params)).first()

    def _note_failover(self, context: ExceptionContext) -> None:
        """The main engine's ``handle_error`` hook: marks the read engine's connections for
        replacement when a write was refused as read-only (``_discard_read_only_connection``).
        Only noted here, as the hook cannot wait; the next ``first`` waits for it."""
        if _refused_as_read_only(context):
            self._failovers_noted += 1

    async def _reconnect_reads(self) -> None:
        # New connections find the new primary as the main engine's do (the URL's hosts and
        # its target_session_attrs are the read engine's too), or fail as in an outage.
        # Lone reads that come meanwhile wait for this one, rather than read on a connection
        # it has not closed yet or start a second; one that fails (a cancelled request)
        # answers nothing, so the next lone read tries again.
        async with self._reconnecting:
            noted = self._failovers_noted
            if self._failovers_answered >= noted:
                return  # while this read waited, another reconnected
            if isinstance(self._reads, LoneReads):
                await self._reads.reconnect()
            elif isinstance(self._reads, AsyncEngine):
                await self._reads.dispose()
            self._failovers_answered = noted

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def migrated(self) -> bool:
        """Whether the database has what this version reads and writes: False on an empty
        or wrong database, or one an older version migrated, which answers (``ping``) but
        fails requests until ``identity migrate`` runs. One a newer version migrated counts
        (``migrations.is_behind``)."""
        try:
            async with _translated_errors(), self._sessions() as session:
                revisions = await migrations.database_revisions(session)
                if revisions:
                    return not migrations.is_behind(revisions)
                # No migration recorded: tables made straight from the models, as the
                # tests make them, or none.
                await session.execute(text("SELECT 1 FROM users WHERE 1 = 0"))
        except DBAPIError:  # an outage leaves as DatabaseUnavailable
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
        if isinstance(self._reads, Engine):
            self._reads.dispose()
        elif isinstance(self._reads, LoneReads):
            await self._reads.close()
        elif self._reads is not None:
            await self._reads.dispose()


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    """A lost connection as ``DatabaseUnavailable``; text the database cannot store as the
    ``UnstorableText`` it is, however SQLAlchemy wrapped it."""
    try:
        yield
    except DBAPIError as exc:
        if is_disconnect(exc):
            raise DatabaseUnavailable(type(exc.orig).__name__) from exc
        raise
    except StatementError as exc:
        # A JSON column's serializer (text_guard.dumps) raised while SQLAlchemy prepared
        # the statement's parameters, which it reports wrapped.
        if isinstance(exc.orig, UnstorableText):
            raise exc.orig from None
        raise
    except (PoolTimeout, OSError) as exc:
        raise DatabaseUnavailable(type(exc).__name__) from exc
    except psycopg.Error as exc:
        # psycopg's errors come from the lone reads (identity.db.lone_reads), which reach
        # the driver without SQLAlchemy wrapping its errors; PoolTimeout of psycopg_pool is
        # an OperationalError without a SQLSTATE.
        if _server_unavailable(exc, isinstance(exc, psycopg.OperationalError)):
            raise DatabaseUnavailable(type(exc).__name__) from exc
        raise


# PostgreSQL's lock_not_available (lock_timeout, NOWAIT); SQLite's busy and locked.
_LOCK_SQLSTATE = "55P03"

# PostgreSQL's read_only_sql_transaction: a write on a server that takes none. After a
# failover the pool still holds connections to the old primary, now a standby, and every
# write on them fails so until the connection is closed.
_READ_ONLY_SQLSTATE = "25006"

# SQLSTATEs of a server that cannot serve now rather than of a statement gone wrong, so the
# same work is likely to succeed later: a connection exception (class 08), our login
# refused (28), a serialization failure or deadlock that rolled the transaction back
# (40001, 40P01), no connection slot, disk or memory left (53), a lock or the statement
# timed out, or an operator's shutdown, restart or cancel (55P03, class 57), an I/O error
# (58), a write on a standby (25006, see ``_discard_read_only_connection``). The SQLSTATE
# decides whichever driver raised the error: psycopg calls all of these ``OperationalError``
# (and some statement errors too), while asyncpg's reach SQLAlchemy as its generic ``Error``
# whatever they say, and a lock timeout was a 500 there.
_UNAVAILABLE_SQLSTATES = (
    "08",
    "28",
    "40001",
    "40P01",
    "53",
    _LOCK_SQLSTATE,
    "57",
    "58",
    _READ_ONLY_SQLSTATE,
)


def _sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE PostgreSQL gave ``error`` (a driver's error, as psycopg raises it or as
    SQLAlchemy's asyncpg adapter carries it); None for SQLite's and for a failure on our
    side of the connection."""
    code = getattr(error, "sqlstate", None)
    return code if isinstance(code, str) else None


def _server_unavailable(error: BaseException | None, operational: bool) -> bool:
    """Whether a PostgreSQL driver's ``error`` means the server cannot serve now;
    ``operational``, whether the driver called it an OperationalError, decides for an error
    the server did not answer with (a refused or lost connection)."""
    code = _sqlstate(error)
    return operational if code is None else code.startswith(_UNAVAILABLE_SQLSTATES)


def _discard_read_only_connection(context: ExceptionContext) -> None:
    """SQLAlchemy's ``handle_error`` hook: a connection refused a write as read-only is one
    to a demoted primary, so it is treated as lost. SQLAlchemy then closes it instead of
    returning it to the pool, and retires the pool's other connections, opened to the same
    server, as they are next checked out: new connections find the new primary (with
    ``target_session_attrs=read-write`` among several hosts) or fail as an outage does."""
    if _refused_as_read_only(context):
        context.is_disconnect = True


def _refused_as_read_only(context: ExceptionContext) -> bool:
    """Whether the error ``context`` reports is a write refused as read-only: the sign, on
    a server that took writes, that it is no longer the primary."""
    return _sqlstate(context.original_exception) == _READ_ONLY_SQLSTATE


_SQLITE_LOCK_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def _sqlite_code(exc: DBAPIError) -> int | None:
    """SQLite's primary result code of ``exc`` (an extended code keeps it in its low byte);
    None for another database's error."""
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_lock_unavailable(exc: BaseException) -> bool:
    """True when a statement gave up waiting for a lock another transaction held: the same
    work is likely to succeed later. ``exc`` may be the ``DatabaseUnavailable`` it became."""
    cause = exc.__cause__ if isinstance(exc, DatabaseUnavailable) else exc
    if not isinstance(cause, DBAPIError):
        return False
    code = _sqlite_code(cause)
    if code is not None:
        return code in _SQLITE_LOCK_CODES
    return _sqlstate(cause.orig) == _LOCK_SQLSTATE


# SQLite's primary result codes of a database file it cannot use now: busy or locked past
# the busy timeout, not openable or writable (its permissions), a disk I/O error, the disk
# or memory full (PostgreSQL's class 53, insufficient resources, gone once space is freed).
# It calls every failure OperationalError, a missing table too, which like PostgreSQL's
# undefined table is the statement's error: an unmigrated or wrong database file does not
# become available by trying again.
_UNAVAILABLE_SQLITE_CODES = (
    *_SQLITE_LOCK_CODES,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_NOMEM,
)


def is_disconnect(exc: DBAPIError) -> bool:
    """True when the error means the server is unreachable, not that our SQL was wrong."""
    if exc.connection_invalidated:
        return True
    code = _sqlite_code(exc)
    if code is not None:
        return code in _UNAVAILABLE_SQLITE_CODES
    return _server_unavailable(exc.orig, isinstance(exc, OperationalError))
