"""Indexes a migration adds to tables that are written on every request.

On PostgreSQL they are built CONCURRENTLY, outside the migration's transaction: a plain
CREATE INDEX would block every write to the table (each token request, each sign-in) while
it reads the whole table. IF NOT EXISTS lets a run that stopped half-way be run again; a
build interrupted there leaves its index behind marked invalid (never read, still written),
which is dropped first so that the run builds it anew.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


def create(indexes: Sequence[tuple[str, str]], *, sparse: bool = False) -> None:
    """One index per (table, column), named as SQLAlchemy's ``index=True`` names it; a sparse
    one holds only the rows whose column is set."""
    with op.get_context().autocommit_block():
        for table, column in indexes:
            create_one(
                op.f(f"ix_{table}_{column}"),
                table,
                column,
                f"{column} IS NOT NULL" if sparse else None,
            )


def create_one(
    name: str, table: str, columns: str | Sequence[str], where: str | None = None
) -> None:
    """One index on ``columns`` (one column, or several in order), of only the rows ``where``
    holds for when given; inside an ``autocommit_block``."""
    _drop_if_invalid(name)
    condition = sa.text(where) if where else None
    op.create_index(
        name,
        table,
        [columns] if isinstance(columns, str) else list(columns),
        unique=False,
        if_not_exists=True,
        postgresql_concurrently=True,
        postgresql_where=condition,
        sqlite_where=condition,
    )


def _drop_if_invalid(name: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    invalid = bind.scalar(
        sa.text("SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    )
    if invalid:
        op.execute(sa.text(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"'))


def drop(indexes: Sequence[tuple[str, str]]) -> None:
    with op.get_context().autocommit_block():
        for table, column in reversed(indexes):
            op.drop_index(
                op.f(f"ix_{table}_{column}"),
                table_name=table,
                if_exists=True,
                postgresql_concurrently=True,
            )
