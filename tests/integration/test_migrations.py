"""The migrations produce exactly the models, and go down and up again, on the test database."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect

from identity.db import migrate
from identity.db.engine import create_engine
from identity.db.migrate import compare_type, render_item
from identity.db.models import metadata
from identity.settings import Settings


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": compare_type,
            "render_item": render_item,
            "target_metadata": metadata,
        },
    )
    return compare_metadata(context, metadata)


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


async def _inspect(settings: Settings, look: Any) -> Any:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(look)
    finally:
        await engine.dispose()


async def test_migrations_match_the_models_exactly(settings: Settings) -> None:
    await asyncio.to_thread(migrate.upgrade, settings)
    assert await _inspect(settings, _differences) == []
    assert await _inspect(settings, _tables) == set(metadata.tables)


async def test_upgrade_downgrade_upgrade_round_trip(settings: Settings) -> None:
    await asyncio.to_thread(migrate.upgrade, settings)
    await asyncio.to_thread(migrate.downgrade, settings, "base")
    assert await _inspect(settings, _tables) == set()
    await asyncio.to_thread(migrate.upgrade, settings)
    assert await _inspect(settings, _differences) == []
