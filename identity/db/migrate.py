"""Alembic, driven from code: ``identity migrate``, ``identity serve`` and the tests."""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, column, inspect, select, table
from sqlalchemy.ext.asyncio import AsyncSession

from identity.db.base import UTCDateTime
from identity.settings import PACKAGE_ROOT, Settings

MIGRATIONS_DIR = PACKAGE_ROOT.parent / "migrations"
# Where Alembic records the migrations a database is at.
VERSION_TABLE = "alembic_version"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Synchronous: call it before the event loop runs."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)


async def database_revisions(session: AsyncSession) -> Sequence[str]:
    """The migrations the database says it is at (Alembic's own table; one row per head).
    Nothing for a database without that table: no migration ran there, and the statements
    that need its tables say so (a schema made from the metadata, as the tests make it,
    works)."""
    connection = await session.connection()
    if not await connection.run_sync(lambda sync: inspect(sync).has_table(VERSION_TABLE)):
        return []
    version = table(VERSION_TABLE, column("version_num"))
    return (await session.scalars(select(version.c.version_num))).all()


# Read once per process, for both questions below: readiness asks on every probe, and
# parsing the migration files takes milliseconds.
@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory(MIGRATIONS_DIR)


@functools.cache
def known_revisions() -> frozenset[str]:
    """Every migration this version ships."""
    return frozenset(script.revision for script in _scripts().walk_revisions())


@functools.cache
def code_heads() -> frozenset[str]:
    """The last migration of each branch: what this version's SQL expects to find."""
    return frozenset(_scripts().get_heads())


def read_scripts() -> None:
    """Fill the caches above. Parsing the files is blocking file I/O (up to 0.1 s on a cold
    disk): each process calls this at start, off the event loop, so that readiness's first
    probe, with half a second to answer, does none of it."""
    known_revisions()
    code_heads()


def is_behind(revisions: Collection[str]) -> bool:
    """Whether a database at ``revisions`` lacks migrations this version needs: each is
    ours, and not every head is among them. A revision this version does not know is a
    newer version's, whose migrations include ours."""
    return known_revisions().issuperset(revisions) and not code_heads().issubset(revisions)


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate hook: migrations must not import application types, so ours render plain."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def compare_type(context: Any, inspected: Any, metadata_column: Any, *_: Any) -> bool | None:
    """Autogenerate hook: a UTCDateTime column is a plain timezone-aware DateTime in SQL."""
    if isinstance(metadata_column.type, UTCDateTime) and isinstance(inspected.type, DateTime):
        return False
    return None
