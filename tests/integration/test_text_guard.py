"""Text no database can store is refused before any statement runs, on every backend and on
both of ``Database``'s paths (a transaction, and the lone reads of ``Database.scalar``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import bindparam, func, select

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.db import text_guard
from identity.db.engine import Database
from identity.errors import UnstorableText
from identity.settings import Settings

UNSTORABLE = ["a\x00b", "\ud800", "x\udfff"]


@pytest.fixture
async def db(database: Settings) -> AsyncIterator[Database]:
    db = Database.from_settings(database)
    yield db
    await db.dispose()


@pytest.mark.parametrize("value", UNSTORABLE)
async def test_a_transaction_refuses_it_and_writes_nothing(db: Database, value: str) -> None:
    with pytest.raises(UnstorableText):
        async with db.transaction() as session:
            session.add(User(email="fine@example.com"))
            await session.flush()
            session.add(User(email=value))
            await session.flush()
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize("value", UNSTORABLE)
async def test_a_lone_read_refuses_it(db: Database, value: str) -> None:
    statement = select(User.id).where(User.email == bindparam("email"))
    with pytest.raises(UnstorableText):
        await db.scalar(statement, {"email": value})


async def test_storable_text_and_other_values_pass(db: Database) -> None:
    async with db.transaction() as session:
        session.add(User(email="zoë\t@example.com", name="名前 🙂"))
    assert await db.scalar(select(func.count()).select_from(User), {}) == 1


@pytest.mark.parametrize(
    "parameters",
    [
        ("ok", 1, None, "a\x00"),
        {"a": "ok", "b": "\ud800"},
        [{"a": "ok"}, {"a": "\x00"}],  # executemany
        [("ok",), ("\udc80",)],
    ],
)
def test_every_shape_of_parameters_is_looked_into(parameters: object) -> None:
    with pytest.raises(UnstorableText):
        text_guard.check(parameters)


def test_bytes_may_hold_any_byte() -> None:
    text_guard.check((b"\x00\xff", bytearray(b"\x00"), "fine"))


@pytest.mark.parametrize("value", UNSTORABLE)
async def test_text_inside_a_json_value_is_refused_too(db: Database, value: str) -> None:
    # A JSON column's value reaches the statement already serialized, where an escape
    # ("\\ud800") hides the character: SQLite stored it, and every later read of the row
    # handed back text no JSON answer can hold.
    with pytest.raises(UnstorableText):
        async with db.transaction() as session:
            session.add(AuditEvent(action="test", details={"old": [value]}))
    async with db.transaction() as session:
        assert await session.scalar(select(func.count()).select_from(AuditEvent)) == 0
