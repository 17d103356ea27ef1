"""Lone reads on PostgreSQL through psycopg's own connection pool, beside SQLAlchemy's.

The access-token deny list is asked once per introspection and userinfo call: one SELECT,
outside any transaction. Through SQLAlchemy's async engine (an autocommit one) that SELECT
cost ~280 µs of CPU on our machines, most of it the pool checkout across greenlets and the
cursor and result wrappers; straight through psycopg, with the statement prepared once per
connection, ~90 µs. At introspection's rate that is a fifth of the service's CPU.

Only for the psycopg driver: with asyncpg, ``Database.first`` keeps SQLAlchemy's path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import URL, Executable
from sqlalchemy.engine import Dialect

from identity.db import text_guard

CONNECT_TIMEOUT = 5  # seconds, as the SQLAlchemy engines' connect_timeout
CHECKOUT_TIMEOUT = 5  # seconds, as their pool_timeout


class LoneReads:
    """``first`` row of one SELECT; connections opened on first use, at most ``pool_size``."""

    def __init__(self, url: URL, dialect: Dialect, pool_size: int) -> None:
        self._dialect = dialect
        self._sql: dict[Executable, str] = {}
        self._pool = AsyncConnectionPool(
            url.set(drivername="postgresql").render_as_string(hide_password=False),
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT},
            min_size=1,
            max_size=pool_size,
            timeout=CHECKOUT_TIMEOUT,
            open=False,
        )
        self._opened = False
        self._opening = asyncio.Lock()
        self._checking: asyncio.Task[None] | None = None

    async def first(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Any] | None:
        """The first row, or None. Raises ``psycopg.OperationalError``
        (``PoolTimeout`` is one) when the server cannot be reached."""
        text_guard.check(params)  # as SQLAlchemy's engines do before every statement
        await self._open()
        try:
            async with self._pool.connection() as connection:
                cursor = await connection.execute(self._compiled(statement), params, prepare=True)
                row = await cursor.fetchone()
        except psycopg.OperationalError:
            self._check_idle_connections()
            raise
        return row

    def _check_idle_connections(self) -> None:
        # A server that went away broke every idle connection too, and the pool learns that
        # of each only when it hands it out: one failed request each. Testing them all now,
        # as SQLAlchemy's pool invalidates itself on a disconnect, lets service resume with
        # the server's return.
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._pool.check())

    async def reconnect(self) -> None:
        """Every connection replaced: the idle ones now, those in use as they come back."""
        if self._opened:
            await self._pool.drain()

    def _compiled(self, statement: Executable) -> str:
        # The SQL of each statement, in psycopg's placeholders, compiled once: the
        # statements asked here are module constants.
        sql = self._sql.get(statement)
        if sql is None:
            sql = self._sql[statement] = str(statement.compile(dialect=self._dialect))
        return sql

    async def _open(self) -> None:
        # Opened from the event loop that uses it, which the constructor may not run in.
        if self._opened:
            return
        async with self._opening:
            if not self._opened:
                await self._pool.open()
                self._opened = True

    async def close(self) -> None:
        if self._checking is not None:
            self._checking.cancel()
        if self._opened:
            await self._pool.close()
