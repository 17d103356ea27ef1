"""What a test's own requests do to the database."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from identity.runtime import Runtime

# Set in the test's task only. The app runs the test's requests in that task (httpx's ASGI
# transport), and SQLAlchemy runs a statement in the context of the task that awaits it;
# the mail and webhook senders, which share the engine and may be sending meanwhile what
# the test queued, run in tasks of their own.
_IN_TEST = ContextVar("in_test", default=False)


@contextmanager
def counting_statements(runtime: Runtime) -> Iterator[list[str]]:
    """The statements the test's own task runs meanwhile, in order."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if _IN_TEST.get():
            seen.append(statement)

    engine = runtime.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    marked = _IN_TEST.set(True)
    try:
        yield seen
    finally:
        _IN_TEST.reset(marked)
        event.remove(engine, "before_cursor_execute", count)


@contextmanager
def counting_transactions(runtime: Runtime) -> Iterator[list[Any]]:
    """The ORM transactions the test's own task begins meanwhile, whether or not they run a
    statement: an empty one still costs a session, its begin and its commit."""
    seen: list[Any] = []

    def count(_session: Any, transaction: Any) -> None:
        if _IN_TEST.get() and transaction.parent is None:
            seen.append(transaction)

    event.listen(Session, "after_transaction_create", count)
    marked = _IN_TEST.set(True)
    try:
        yield seen
    finally:
        _IN_TEST.reset(marked)
        event.remove(Session, "after_transaction_create", count)
