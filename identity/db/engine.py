"""The async engine and session factory for the configured database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from identity.settings import Settings


class DatabaseUnavailable(Exception):
    """The database did not answer; callers answer 503 and try again on the next request."""


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout queues writers instead of
    # failing at once; SQLite leaves foreign keys off unless asked.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: Settings) -> AsyncEngine:
    options: dict[str, Any] = {"pool_pre_ping": True}
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    else:
        options |= {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_pool_size,
            "pool_timeout": 5,
            "pool_recycle": 1800,
        }
        if settings.database_url.startswith("postgresql+psycopg"):
            options["connect_args"] = {"connect_timeout": 5}
        else:
            options["connect_args"] = {"timeout": 5}
    engine = create_async_engine(settings.database_url, **options)
    if settings.is_sqlite:
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


class Database:
    """One engine per process; a unit of work is ``async with db.transaction() as session``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction: committed on success, rolled back on any error."""
        try:
            async with self._sessions() as session, session.begin():
                yield session
        except DBAPIError as exc:
            if is_disconnect(exc):
                raise DatabaseUnavailable(type(exc.orig).__name__) from exc
            raise
        except (PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (DBAPIError, PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(type(exc).__name__) from exc

    async def dispose(self) -> None:
        await self.engine.dispose()


def is_disconnect(exc: DBAPIError) -> bool:
    """True when the error means the server is unreachable, not that our SQL was wrong."""
    return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)
