"""The migrations produce exactly the models, and go down and up again, on the test database."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    String,
    Text,
    Uuid,
    column,
    insert,
    inspect,
    select,
    table,
    text,
)
from sqlalchemy.exc import IntegrityError

from identity.clock import utcnow
from identity.db import migrate
from identity.db.engine import create_engine
from identity.db.migrate import compare_type, render_item
from identity.db.models import metadata
from identity.settings import Settings
from identity.webhooks import url_key
from tests.backends import TEST_DATABASE_URL
from tests.processes import run_identity

# The subscriptions table as the revisions before 0013 left it, without url_digest.
SUBSCRIPTIONS_BEFORE_0013 = table(
    "webhook_subscriptions",
    column("id", Uuid()),
    column("url", String()),
    column("event_types", JSON()),
    column("secret_ciphertext", Text()),
    column("description", String()),
    column("created_at", DateTime(timezone=True)),
)


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


async def test_subscriptions_to_one_url_before_0012_are_merged_into_the_oldest(
    settings: Settings,
) -> None:
    """The unique index could not be built over them: the oldest stays, with every event type
    and every event any of them was to deliver, once each."""
    await asyncio.to_thread(migrate.upgrade, settings, "0011")
    subscriptions = SUBSCRIPTIONS_BEFORE_0013
    events = metadata.tables["webhook_events"]
    deliveries = metadata.tables["webhook_deliveries"]
    now = utcnow()
    oldest, later, elsewhere = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    removed, disabled = uuid.uuid4(), uuid.uuid4()
    hook = "https://billing.example.com/hooks"
    subscription = {"secret_ciphertext": "x", "description": ""}
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(subscriptions),
                [
                    subscription
                    | {"id": later, "url": hook, "event_types": ["user.disabled"]}
                    | {"created_at": now - timedelta(hours=1)},
                    subscription
                    | {"id": oldest, "url": hook, "event_types": ["member.removed"]}
                    | {"created_at": now - timedelta(hours=2)},
                    subscription
                    | {"id": elsewhere, "url": hook + "/other", "event_types": ["user.disabled"]}
                    | {"created_at": now},
                ],
            )
            await connection.execute(
                insert(events),
                [
                    {"id": removed, "type": "member.removed", "occurred_at": now, "body": "{}"},
                    {"id": disabled, "type": "user.disabled", "occurred_at": now, "body": "{}"},
                ],
            )
            await connection.execute(
                insert(deliveries),
                [
                    {"id": uuid.uuid4(), "event_id": event, "subscription_id": to}
                    | {"attempts": 0, "next_attempt_at": now}
                    for event, to in [
                        (removed, oldest),
                        (removed, later),  # the oldest has its own: dropped
                        (disabled, later),  # the oldest has none: moved to it
                        (disabled, elsewhere),
                    ]
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            kept = await connection.execute(select(subscriptions.c.id, subscriptions.c.event_types))
            sent = await connection.execute(
                select(deliveries.c.event_id, deliveries.c.subscription_id)
            )
            assert dict(kept.all()) == {
                oldest: ["member.removed", "user.disabled"],
                elsewhere: ["user.disabled"],
            }
            assert sorted(sent.all()) == sorted(
                [(removed, oldest), (disabled, oldest), (disabled, elsewhere)]
            )
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    insert(metadata.tables["webhook_subscriptions"]).values(
                        subscription | {"url": hook, "event_types": ["user.enabled"]}
                    )
                )
    finally:
        await engine.dispose()


# Outside the tests, SQLite's migrations and PostgreSQL's run the same code: a URL of over
# 2,700 bytes broke the index of URLs that 0012 built on PostgreSQL alone. Characters that do
# not repeat, or PostgreSQL would compress the entry to fit.
LONG_URL = "https://billing.example.com/" + "".join(chr(0x4E00 + i) for i in range(1900))


async def test_a_url_too_long_for_an_index_of_urls_is_kept_unique_by_its_digest(
    settings: Settings,
) -> None:
    """0012 as released failed on PostgreSQL with "index row size exceeds" over such a URL,
    stored when its limit was counted in characters."""
    await asyncio.to_thread(migrate.upgrade, settings, "0011")
    subscription = {"secret_ciphertext": "x", "description": "", "event_types": ["user.enabled"]}
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(SUBSCRIPTIONS_BEFORE_0013).values(
                    subscription | {"id": uuid.uuid4(), "url": LONG_URL, "created_at": utcnow()}
                )
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        subscriptions = metadata.tables["webhook_subscriptions"]
        async with engine.connect() as connection:
            stored = await connection.execute(
                select(subscriptions.c.url, subscriptions.c.url_digest)
            )
            assert stored.all() == [(LONG_URL, url_key.digest(LONG_URL))]
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    insert(subscriptions).values(subscription | {"url": LONG_URL})
                )
    finally:
        await engine.dispose()


async def test_reset_tokens_from_before_0014_hold_the_password_the_clock_said_they_were_for(
    settings: Settings,
) -> None:
    """A token issued after its user's password was set holds that password's changed_at and
    works on; one the old rule already refused (the password set after it) and one for a
    user with no password hold none, and work only while the user has no password."""
    await asyncio.to_thread(migrate.upgrade, settings, "0013")
    users = metadata.tables["users"]
    credentials = metadata.tables["password_credentials"]
    tokens = metadata.tables["password_reset_tokens"]
    now = utcnow()
    set_at = now - timedelta(hours=1)
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            ada, bo = uuid.uuid4(), uuid.uuid4()
            await connection.execute(
                insert(users),
                [{"id": ada, "email": "ada@example.com"}, {"id": bo, "email": "bo@example.com"}],
            )
            await connection.execute(
                insert(credentials).values(
                    user_id=ada, hash="$argon2id$stand-in", changed_at=set_at
                )
            )
            issued = {
                "after": (ada, set_at + timedelta(minutes=1)),
                "before": (ada, set_at - timedelta(minutes=1)),
                "no-password": (bo, now),
            }
            await connection.execute(
                insert(tokens),
                [
                    {"user_id": user_id, "token_hash": name, "created_at": at}
                    | {"expires_at": now + timedelta(hours=1)}
                    for name, (user_id, at) in issued.items()
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            held = await connection.execute(select(tokens.c.token_hash, tokens.c.password_set_at))
            assert dict(held.all()) == {"after": set_at, "before": None, "no-password": None}
    finally:
        await engine.dispose()


async def test_users_from_before_0015_start_their_email_change_count_at_0(
    settings: Settings,
) -> None:
    await asyncio.to_thread(migrate.upgrade, settings, "0014")
    users = metadata.tables["users"]
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(insert(users).values(id=uuid.uuid4(), email="ada@example.com"))
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            counts = await connection.execute(select(users.c.email_change_epoch))
            assert counts.scalars().all() == [0]
    finally:
        await engine.dispose()


async def test_refresh_tokens_from_before_0017_hold_their_sessions_sid_where_it_is_left(
    settings: Settings,
) -> None:
    await asyncio.to_thread(migrate.upgrade, settings, "0016")
    now = utcnow()
    users, clients = metadata.tables["users"], metadata.tables["oauth_clients"]
    sessions, tokens = metadata.tables["browser_sessions"], metadata.tables["refresh_tokens"]
    sid = uuid.uuid4()
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            user = insert(users).values(email="ada@example.com").returning(users.c.id)
            user_id = await connection.scalar(user)
            await connection.execute(insert(clients).values(client_id="app", name="App"))
            browser = {"user_id": user_id, "auth_time": now, "expires_at": now}
            kept = await connection.scalar(
                insert(sessions)
                .values(browser | {"token_hash": "kept", "sid": sid})
                .returning(sessions.c.id)
            )
            token = {"client_id": "app", "scope": "openid", "family_id": uuid.uuid4()}
            await connection.execute(
                insert(tokens),
                [
                    token | {"token_hash": "kept", "session_id": kept, "expires_at": now},
                    token
                    | {"token_hash": "deleted", "session_id": uuid.uuid4(), "expires_at": now},
                    token | {"token_hash": "none", "session_id": None, "expires_at": now},
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            held = await connection.execute(select(tokens.c.token_hash, tokens.c.sid))
            assert dict(held.all()) == {"kept": sid, "deleted": None, "none": None}
    finally:
        await engine.dispose()


async def test_clients_stopped_before_0018_refuse_their_own_tokens_issued_until_the_upgrade(
    settings: Settings,
) -> None:
    # A client disabled, or without client_credentials, may have been stopped a moment
    # before the upgrade with its own tokens still live: they must not come back with it.
    await asyncio.to_thread(migrate.upgrade, settings, "0017")
    clients = metadata.tables["oauth_clients"]
    service = ["client_credentials"]
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(clients).values(name="App"),
                [
                    {"client_id": "acting", "grant_types": service, "disabled": False},
                    {"client_id": "disabled", "grant_types": service, "disabled": True},
                    {"client_id": "no-grant", "grant_types": ["refresh_token"], "disabled": False},
                ],
            )
        before = utcnow()
        await asyncio.to_thread(migrate.upgrade, settings)
        after = utcnow()
        async with engine.connect() as connection:
            held = await connection.execute(
                select(clients.c.client_id, clients.c.own_tokens_not_before)
            )
            marks = dict(held.all())
        assert marks["acting"] is None
        assert before <= marks["disabled"] == marks["no-grant"] <= after
    finally:
        await engine.dispose()


async def test_consents_from_before_0019_keep_their_scopes_and_name_no_account(
    settings: Settings,
) -> None:
    """They then cover requests without an account only: the user is asked once more. An
    account named later goes with the account."""
    before = ScriptDirectory.from_config(migrate.alembic_config(settings))
    await asyncio.to_thread(migrate.upgrade, settings, before.get_revision("0019").down_revision)
    users, clients = metadata.tables["users"], metadata.tables["oauth_clients"]
    accounts, consents = metadata.tables["accounts"], metadata.tables["consents"]
    consent_accounts = metadata.tables["consent_accounts"]
    now = utcnow()
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            user_id = await connection.scalar(
                insert(users).values(email="ada@example.com").returning(users.c.id)
            )
            await connection.execute(insert(clients).values(client_id="app", name="App"))
            consent = {"user_id": user_id, "client_id": "app", "scope": "openid profile"}
            consent_id = await connection.scalar(
                insert(consents)
                .values(consent | {"created_at": now, "updated_at": now})
                .returning(consents.c.id)
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.begin() as connection:
            assert (await connection.execute(select(consents.c.scope))).scalars().all() == [
                "openid profile"
            ]
            assert (await connection.execute(select(consent_accounts))).all() == []
            account_id = await connection.scalar(
                insert(accounts).values(name="Acme", created_at=now).returning(accounts.c.id)
            )
            await connection.execute(
                insert(consent_accounts).values(consent_id=consent_id, account_id=account_id)
            )
            await connection.execute(accounts.delete())
            assert (await connection.execute(select(consent_accounts))).all() == []
    finally:
        await engine.dispose()


async def test_the_per_subscription_index_0020_built_before_a_run_stopped_is_kept(
    settings: Settings,
) -> None:
    """On PostgreSQL 0020 builds its index outside the revision's transaction: a run
    stopped after the build, before 0020 was recorded, must finish when run again."""
    await asyncio.to_thread(migrate.upgrade, settings, "0019")
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE INDEX ix_webhook_deliveries_waiting_per_subscription_id"
                    " ON webhook_deliveries (subscription_id, next_attempt_at)"
                    " WHERE delivered_at IS NULL AND failed_at IS NULL"
                )
            )
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrate.upgrade, settings)
    assert await _inspect(settings, _differences) == []


async def test_the_index_of_urls_0012_built_as_released_gives_way_to_the_digests(
    settings: Settings,
) -> None:
    await asyncio.to_thread(migrate.upgrade, settings, "0012")
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    "CREATE UNIQUE INDEX ix_webhook_subscriptions_url"
                    " ON webhook_subscriptions (url)"
                )
            )
    finally:
        await engine.dispose()
    await asyncio.to_thread(migrate.upgrade, settings)
    assert await _inspect(settings, _differences) == []
    await asyncio.to_thread(migrate.downgrade, settings, "0011")
    assert await _inspect(settings, _version) == "0011"


def _schema(connection: Connection) -> dict[str, list[str]]:
    found = inspect(connection)
    return {
        table: sorted(column["name"] for column in found.get_columns(table))
        for table in found.get_table_names()
    }


def _version(connection: Connection) -> str | None:
    return connection.scalar(text("SELECT version_num FROM alembic_version"))


async def _add_rows(settings: Settings) -> None:
    """A user with a password and an authorization code, rows every revision since 0001 keeps."""
    users = metadata.tables["users"]
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            user = insert(users).values(email="ada@example.com").returning(users.c.id)
            user_id = await connection.scalar(user)
            await connection.execute(
                insert(metadata.tables["password_credentials"]).values(
                    user_id=user_id, hash="$argon2id$stand-in"
                )
            )
            await connection.execute(
                insert(metadata.tables["oauth_clients"]).values(client_id="app", name="App")
            )
            now = utcnow()
            await connection.execute(
                insert(metadata.tables["authorization_codes"]).values(
                    code_hash="code",
                    client_id="app",
                    user_id=user_id,
                    redirect_uri="https://app.example.com/callback",
                    scope="openid",
                    auth_time=now,
                    expires_at=now,
                )
            )
    finally:
        await engine.dispose()


def _rows(connection: Connection) -> dict[str, list[Any]]:
    return {
        "users": list(connection.scalars(text("SELECT email FROM users"))),
        "password_credentials": list(
            connection.scalars(text("SELECT hash FROM password_credentials"))
        ),
        "authorization_codes": list(
            connection.scalars(text("SELECT code_hash FROM authorization_codes"))
        ),
    }


_ROWS = {
    "users": ["ada@example.com"],
    "password_credentials": ["$argon2id$stand-in"],
    "authorization_codes": ["code"],
}


# `identity migrate`, stopped just before a statement of a later revision: by an error (a full
# disk, say) or by SIGKILL (a crash, the machine losing power).
_INTERRUPTED_MIGRATE = """
import os, signal, sys
from sqlalchemy import Engine, event
from identity.cli import main

how, stop_at = sys.argv[1:]

def interrupt(connection, cursor, statement, *_):
    if statement.lstrip().startswith(stop_at):
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise RuntimeError("interrupted")

event.listen(Engine, "before_cursor_execute", interrupt)
sys.exit(main(["migrate"]))
"""


@pytest.mark.parametrize("how", ["raise", "kill"])
@pytest.mark.parametrize(
    ("before", "stop_at"),
    [
        # 0003's second table, after its first
        ("0002", "CREATE TABLE webhook_events"),
        # 0007's update, after it added a column to authorization_codes and refresh_tokens
        ("0006", "UPDATE refresh_tokens"),
    ],
)
async def test_a_migration_stopped_part_way_leaves_the_revision_before(
    how: str, before: str, stop_at: str, env: dict[str, str], settings: Settings
) -> None:
    """On SQLite each statement of a revision was committed on its own: 0003's first table
    stayed while the version stayed 0002, and every later `identity migrate` failed with
    "table webhook_subscriptions already exists" until the operator repaired the file."""
    await asyncio.to_thread(migrate.upgrade, settings, before)
    await _add_rows(settings)
    schema = await _inspect(settings, _schema)

    stopped = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _INTERRUPTED_MIGRATE, how, stop_at],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if how == "kill":
        assert stopped.returncode == -signal.SIGKILL
    else:
        assert stopped.returncode != 0
        assert "interrupted" in stopped.stderr
    assert await _inspect(settings, _version) == before
    assert await _inspect(settings, _schema) == schema
    assert await _inspect(settings, _rows) == _ROWS

    again = await asyncio.to_thread(run_identity, "migrate", env=env)
    assert again.returncode == 0, again.stderr
    assert await _inspect(settings, _differences) == []
    assert await _inspect(settings, _rows) == _ROWS


def _with_revision(tmp_path: Path, settings: Settings, upgrade: str) -> Config:
    """The project's migrations and, after their head, one more whose upgrade is ``upgrade``."""
    folder = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = migrate.alembic_config(settings)
    config.set_main_option("script_location", str(folder))
    head = ScriptDirectory.from_config(config).get_current_head()
    body = textwrap.indent(textwrap.dedent(upgrade).strip(), "    ")
    script = f"""
import uuid

import sqlalchemy as sa
from alembic import op

revision = "after_head"
down_revision = "{head}"

def upgrade() -> None:
{body}
"""
    (folder / "versions" / "99999999_after_head.py").write_text(script)
    return config


async def test_a_revision_that_rebuilds_a_table_keeps_the_rows_that_reference_it(
    tmp_path: Path, settings: Settings
) -> None:
    """SQLite alters a column by copying the table and dropping the original, and dropping a
    table while foreign keys are on deletes the rows that reference it (ON DELETE CASCADE):
    a revision changing users.email would have deleted every password. Foreign keys cannot
    be turned off inside the revision's transaction, so they are off around it."""
    config = _with_revision(
        tmp_path,
        settings,
        """
        with op.batch_alter_table("users") as batch_op:
            batch_op.alter_column("email", type_=sa.String(400), existing_nullable=False)
        """,
    )
    await asyncio.to_thread(migrate.upgrade, settings)
    await _add_rows(settings)
    await asyncio.to_thread(command.upgrade, config, "head")
    assert await _inspect(settings, _version) == "after_head"
    assert await _inspect(settings, _rows) == _ROWS


async def test_a_revision_that_breaks_a_reference_is_rolled_back(
    tmp_path: Path, settings: Settings
) -> None:
    # With foreign keys off during SQLite's migrations, only the check before each commit
    # stops a revision from leaving a password whose user does not exist.
    config = _with_revision(
        tmp_path,
        settings,
        f"""
        passwords = sa.table("password_credentials", sa.column("user_id", sa.Uuid()))
        op.execute(passwords.update().values(user_id=sa.literal(uuid.UUID("{uuid.uuid4()}"))))
        """,
    )
    await asyncio.to_thread(migrate.upgrade, settings)
    head = await _inspect(settings, _version)
    await _add_rows(settings)
    with pytest.raises((RuntimeError, IntegrityError)):
        await asyncio.to_thread(command.upgrade, config, "head")
    assert await _inspect(settings, _version) == head
    assert await _inspect(settings, _rows) == _ROWS


@pytest.mark.skipif(
    TEST_DATABASE_URL is None, reason="only PostgreSQL builds indexes CONCURRENTLY (.ci/run)"
)
async def test_an_index_left_invalid_by_an_interrupted_build_is_built_again(
    settings: Settings,
) -> None:
    """An interrupted CREATE INDEX CONCURRENTLY leaves the index behind, marked invalid: no
    query uses it and it is still written on every insert. IF NOT EXISTS alone would take it
    for done, so running the migration again must build it anew."""
    await asyncio.to_thread(migrate.upgrade, settings, "0007")
    engine = create_engine(settings)
    valid = text(
        "SELECT indisvalid FROM pg_index"
        " WHERE indexrelid = to_regclass('ix_authorization_codes_user_id')"
    )
    try:
        async with engine.begin() as connection:
            # The state a build stopped part-way leaves (as a cancelled or failed one does).
            await connection.execute(
                text("CREATE INDEX ix_authorization_codes_user_id ON authorization_codes (user_id)")
            )
            await connection.execute(
                text(
                    "UPDATE pg_index SET indisvalid = false"
                    " WHERE indexrelid = to_regclass('ix_authorization_codes_user_id')"
                )
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            assert await connection.scalar(valid) is True
    finally:
        await engine.dispose()


async def test_subscriptions_to_one_url_spelled_two_ways_are_merged_into_the_oldest(
    settings: Settings,
) -> None:
    """Merged as 0012 merges those written alike: since 0013 they are one URL."""
    await asyncio.to_thread(migrate.upgrade, settings, "0012")
    now = utcnow()
    oldest, later = uuid.uuid4(), uuid.uuid4()
    subscription = {"secret_ciphertext": "x", "description": ""}
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(SUBSCRIPTIONS_BEFORE_0013),
                [
                    subscription
                    | {"id": later, "url": "https://billing.example.com:443/hooks"}
                    | {"event_types": ["user.disabled"], "created_at": now},
                    subscription
                    | {"id": oldest, "url": "https://Billing.Example.com/hooks"}
                    | {"event_types": ["member.removed"], "created_at": now - timedelta(hours=1)},
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        subscriptions = metadata.tables["webhook_subscriptions"]
        async with engine.connect() as connection:
            kept = await connection.execute(
                select(subscriptions.c.id, subscriptions.c.url, subscriptions.c.event_types)
            )
            assert kept.all() == [
                (oldest, "https://Billing.Example.com/hooks", ["member.removed", "user.disabled"])
            ]
    finally:
        await engine.dispose()


async def test_subscriptions_whose_urls_one_trailing_dot_or_escape_case_told_apart_are_merged(
    settings: Settings,
) -> None:
    """Stored under the digests of the earlier rule, which kept such spellings apart: each
    digest is made again, and the subscriptions that now share one merge into the oldest, with
    its pending events once each, as 0012 merges URLs written alike. Going down keeps them so."""
    scripts = ScriptDirectory.from_config(migrate.alembic_config(settings))
    before = scripts.get_revision("0016").down_revision
    assert isinstance(before, str)
    await asyncio.to_thread(migrate.upgrade, settings, before)
    subscriptions = metadata.tables["webhook_subscriptions"]
    events = metadata.tables["webhook_events"]
    deliveries = metadata.tables["webhook_deliveries"]
    now = utcnow()
    dotted, plain, lower, upper = (uuid.uuid4() for _ in range(4))
    removed, disabled = uuid.uuid4(), uuid.uuid4()
    stored = {
        plain: ("https://billing.example.com/hooks", ["user.disabled"], now),
        dotted: (
            "https://billing.example.com./hooks",
            ["member.removed"],
            now - timedelta(hours=1),
        ),
        upper: ("https://crm.example.com/h?to=a%2Fb", ["user.disabled"], now),
        lower: ("https://crm.example.com/h?to=a%2fb", ["user.disabled"], now - timedelta(hours=1)),
    }
    engine = create_engine(settings)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                insert(subscriptions),
                [
                    {"id": id_, "url": url, "event_types": types, "created_at": at}
                    # The earlier rule's digest: each URL is as it normalised it already.
                    | {"url_digest": hashlib.sha256(url.encode()).hexdigest()}
                    | {"secret_ciphertext": "x", "description": ""}
                    for id_, (url, types, at) in stored.items()
                ],
            )
            await connection.execute(
                insert(events),
                [
                    {"id": removed, "type": "member.removed", "occurred_at": now, "body": "{}"},
                    {"id": disabled, "type": "user.disabled", "occurred_at": now, "body": "{}"},
                ],
            )
            await connection.execute(
                insert(deliveries),
                [
                    {"id": uuid.uuid4(), "event_id": event, "subscription_id": to}
                    | {"attempts": 0, "next_attempt_at": now}
                    for event, to in [
                        (removed, dotted),
                        (disabled, plain),  # the oldest has none: moved to it
                        (disabled, lower),
                        (disabled, upper),  # the oldest has its own: dropped
                    ]
                ],
            )
        await asyncio.to_thread(migrate.upgrade, settings)
        async with engine.connect() as connection:
            kept = await connection.execute(
                select(subscriptions.c.id, subscriptions.c.event_types, subscriptions.c.url_digest)
            )
            sent = await connection.execute(
                select(deliveries.c.event_id, deliveries.c.subscription_id)
            )
            assert sorted(kept.all()) == sorted(
                [
                    (dotted, ["member.removed", "user.disabled"], url_key.digest(stored[plain][0])),
                    (lower, ["user.disabled"], url_key.digest(stored[upper][0])),
                ]
            )
            assert sorted(sent.all()) == sorted(
                [(removed, dotted), (disabled, dotted), (disabled, lower)]
            )
        with pytest.raises(IntegrityError):
            async with engine.begin() as connection:
                await connection.execute(
                    insert(subscriptions).values(
                        url=stored[plain][0], event_types=["user.enabled"], secret_ciphertext="x"
                    )
                )
        await asyncio.to_thread(migrate.downgrade, settings, before)
        async with engine.connect() as connection:
            left = await connection.execute(select(subscriptions.c.id))
            assert sorted(left.scalars().all()) == sorted([dotted, lower])
    finally:
        await engine.dispose()
