"""Declarative base shared by every table; Alembic reads ``Base.metadata``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, DateTime, Index, MetaData, String, TypeDecorator, Uuid, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from identity.clock import utcnow

# Named constraints let migrations drop and alter them by name on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend.

    SQLite has no time zone type and hands back naive values; comparing those with
    aware ``now()`` raises, so values are stored as naive UTC and read back as aware.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime(),
        uuid.UUID: Uuid(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def now_column() -> Mapped[datetime]:
    return mapped_column(default=utcnow)


# Digests are hex SHA-256: 64 characters.
DIGEST = String(64)


def waiting_index(table: str, done: str, per: str | None = None) -> Index:
    """The index background senders find due work by (``identity.db.work_queue``): next
    attempt times of the rows neither ``done`` nor given up. Finished rows are kept a day for
    operators with their old times, first in a full index: every poll would read them all.
    With ``per``, the times of each value of that column apart: each one's due work is then
    a range of its own, read without passing the others'."""
    where = text(f"{done} IS NULL AND failed_at IS NULL")
    name, columns = f"ix_{table}_waiting", ["next_attempt_at"]
    if per is not None:
        name, columns = f"{name}_per_{per}", [per, *columns]
    return Index(name, *columns, postgresql_where=where, sqlite_where=where)


def sparse_index(table: str, column: str) -> Index:
    """An index of only the rows where ``column`` is set, for a column that is mostly null (a
    used recovery code, a grant's expiry) and that housekeeping looks rows up by: it finds
    them without a scan, and the index is no larger than what it finds."""
    where = text(f"{column} IS NOT NULL")
    return Index(f"ix_{table}_{column}", column, postgresql_where=where, sqlite_where=where)
