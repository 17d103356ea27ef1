"""Row locks taken by a no-op write: read-check-write code that must run one at a time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Update, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute


def lock_statement(column: InstrumentedAttribute[Any], *where: ColumnElement[bool]) -> Update:
    """``lock_rows``'s statement, for a lock taken on every request to build once.

    Columns kept up to date on every write (``onupdate``, such as ``users.updated_at``, the
    ID token's claim) are set to themselves as well: a lock changes nothing in the row."""
    table = column.class_.__table__
    unchanged = {c: c for c in table.columns if c.onupdate is not None}
    return (
        update(column.class_)
        .where(*where)
        .values({**unchanged, column.expression: column.expression})
        .execution_options(synchronize_session=False)
    )


async def lock_rows(
    session: AsyncSession, column: InstrumentedAttribute[Any], *where: ColumnElement[bool]
) -> int:
    """Hold the rows of ``column``'s table that match ``where`` until the transaction ends,
    by setting ``column`` to itself; returns how many it holds.

    On PostgreSQL that takes the rows' lock: a second caller waits, and its later statements
    see the first one's commit. ``column`` is one no foreign key refers to, so the lock does
    not block inserts of rows that refer to these. On SQLite any write, even one that
    matches no row, takes the database's one write lock before anything else is read.
    """
    result = await session.execute(lock_statement(column, *where))
    return int(result.rowcount)  # type: ignore[attr-defined]
