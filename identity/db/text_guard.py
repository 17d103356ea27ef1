"""Text no database of ours can store, refused as bad input before any statement runs.

PostgreSQL refuses a NUL character in any text value, even one only compared with, and no
UTF-8 database can hold an unpaired surrogate (which a JSON escape such as "\\udc80" makes):
the driver raised, and the request was a 500. SQLite stored both, so the same request gave
different answers on the two backends. Every statement's parameters pass through ``check``
(every SQLAlchemy engine's ``before_cursor_execute``, and the lone reads that go to psycopg
directly), so whichever endpoint, form or command a value came from, it is refused the same
way on both. A JSON column's value is checked as it is serialized (``dumps``): in the
statement it is already text, where an escape hides the character.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, event

from identity.errors import UnstorableText

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def check(parameters: object) -> None:
    """Raise ``UnstorableText`` if any text among a statement's parameters (a mapping, a
    sequence, or a list of either for executemany) or in a JSON value (its keys too) holds
    such a character."""
    if isinstance(parameters, str):
        if _UNSTORABLE.search(parameters):
            raise UnstorableText
    elif isinstance(parameters, Mapping):
        for key, value in parameters.items():
            check(key)
            check(value)
    elif isinstance(parameters, Sequence) and not isinstance(parameters, bytes | bytearray):
        for value in parameters:
            check(value)


def dumps(value: object) -> str:
    """Every engine's JSON serializer: the value as a JSON column stores it, once checked."""
    check(value)
    return json.dumps(value)


def install(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _before_cursor_execute)


def _before_cursor_execute(
    connection: Any,
    cursor: Any,
    statement: str,
    parameters: object,
    context: Any,
    executemany: bool,
) -> None:
    check(parameters)
