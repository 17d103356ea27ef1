"""Alembic environment: runs migrations through the same async engine as the service."""

from __future__ import annotations

import asyncio
import os

from alembic import context
from sqlalchemy import Connection

from identity.db.engine import create_engine
from identity.db.migrate import compare_type, render_item
from identity.db.models import metadata
from identity.settings import Settings

config = context.config


def do_run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        render_item=render_item,
        compare_type=compare_type,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    settings = config.attributes.get("settings") or Settings.from_env(os.environ)
    asyncio.run(run_async_migrations(settings))


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run them against a database")
run_migrations_online()
