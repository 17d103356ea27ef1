"""What the database engines put into the errors the service logs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import pytest

from identity.background import BackgroundWork
from identity.clock import utcnow
from identity.crypto import random_token
from identity.db.engine import Database
from identity.logs import JsonFormatter
from identity.mail.models import OutgoingEmail
from identity.settings import Settings


@pytest.fixture
async def db(database: Settings) -> AsyncIterator[Database]:
    db = Database.from_settings(database)
    yield db
    await db.dispose()


async def test_a_failed_statement_is_logged_without_its_parameters(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # SQLAlchemy's errors quote every parameter of the statement that failed: a mail body
    # with a reset link, a password hash, an address. The logged traceback must not.
    link = f"https://id.example/reset-password?token={random_token()}"
    email_id = uuid.uuid4()

    def email(body: str) -> OutgoingEmail:
        return OutgoingEmail(
            id=email_id, to_address="a@example.com", subject="Reset", text_body=body,
            next_attempt_at=utcnow(),
        )  # fmt: skip

    async with db.transaction() as session:
        session.add(email("an earlier message"))

    async def queue_twice() -> None:
        async with db.transaction() as session:
            session.add(email(f"Choose a new password: {link}"))

    background = BackgroundWork()
    with caplog.at_level(logging.ERROR):
        background.start(queue_twice(), name="password-reset")
        await background.drain()
    [record] = [r for r in caplog.records if r.exc_info]
    line = JsonFormatter().format(record)
    assert "IntegrityError" in line
    assert link not in line
    assert "a@example.com" not in line
