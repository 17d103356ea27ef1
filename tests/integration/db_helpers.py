"""What a test's own requests do to the database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
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
def _recording(target: Any, name: str, item: Callable[..., Any]) -> Iterator[list[Any]]:
    """What ``item`` makes of each ``name`` event of ``target`` that the test's own task
    fires meanwhile, in order (None: left out)."""
    seen: list[Any] = []

    def record(*args: Any) -> None:
        if _IN_TEST.get() and (found := item(*args)) is not None:
            seen.append(found)

    event.listen(target, name, record)
    marked = _IN_TEST.set(True)
    try:
        yield seen
    finally:
        _IN_TEST.reset(marked)
        event.remove(target, name, record)


def counting_statements(runtime: Runtime) -> AbstractContextManager[list[str]]:
    """The statements the test's own task runs meanwhile, in order."""
    return _recording(
        runtime.db.engine.sync_engine,
        "before_cursor_execute",
        lambda _conn, _cursor, statement, *_: statement,
    )


def counting_transactions(runtime: Runtime) -> AbstractContextManager[list[Any]]:
    """The ORM transactions the test's own task begins meanwhile, whether or not they run a
    statement: an empty one still costs a session, its begin and its commit."""
    return _recording(
        Session,
        "after_transaction_create",
        lambda _session, transaction: transaction if transaction.parent is None else None,
    )
