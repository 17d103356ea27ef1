"""The migrations produce exactly the models, and go down and up again, on the test database."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, insert, inspect, select

from identity.clock import utcnow
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


async def test_rows_from_before_0007_keep_their_access_tokens_revocable_at_least_as_long(
    settings: Settings,
) -> None:
    """Their access tokens' lifetime is unknown: a refresh token's is taken to end with the
    refresh token, a redeemed code's a day after the code expired (as long as either row was
    kept to revoke it)."""
    await asyncio.to_thread(migrate.upgrade, settings, "0006")
    now = utcnow()
    codes, tokens = metadata.tables["authorization_codes"], metadata.tables["refresh_tokens"]
    users = metadata.tables["users"]
    redeemed = {"consumed_at": now - timedelta(seconds=30), "access_jti": "a"}
    unused = {"consumed_at": None, "access_jti": None}
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            user = insert(users).values(email="ada@example.com").returning(users.c.id)
            user_id = await connection.scalar(user)
            await connection.execute(
                insert(metadata.tables["oauth_clients"]).values(client_id="app", name="App")
            )
            code = {
                "client_id": "app",
                "user_id": user_id,
                "redirect_uri": "https://app.example.com/callback",
                "scope": "openid",
                "auth_time": now,
                "expires_at": now,
            }
            await connection.execute(
                insert(codes),
                [
                    code | {"code_hash": "redeemed"} | redeemed,
                    code | {"code_hash": "unused"} | unused,
                ],
            )
            token = {
                "client_id": "app",
                "scope": "openid",
                "family_id": uuid.uuid4(),
                "expires_at": now + timedelta(days=30),
            }
            await connection.execute(
                insert(tokens),
                [
                    token | {"token_hash": "recorded", "access_jti": "b"},
                    token | {"token_hash": "before_0006", "access_jti": None},
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            code_rows = await connection.execute(
                select(codes.c.code_hash, codes.c.access_expires_at)
            )
            token_rows = await connection.execute(
                select(tokens.c.token_hash, tokens.c.access_expires_at)
            )
            assert dict(code_rows.all()) == {
                "redeemed": now + timedelta(days=1),
                "unused": None,
            }
            assert dict(token_rows.all()) == {
                "recorded": now + timedelta(days=30),
                "before_0006": None,
            }
    finally:
        await engine.dispose()
