import json
import logging

import pytest

from identity.logs import JsonFormatter, configure_logging


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_database_libraries_never_log_statements_or_parameters(level: str) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(level)
        # SQLAlchemy writes each statement with its parameters at INFO, drivers at DEBUG.
        for name in ("sqlalchemy.engine", "aiosqlite", "psycopg", "asyncpg"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


@pytest.mark.parametrize("level", ["DEBUG", "INFO"])
def test_http_client_libraries_never_log_the_urls_they_call(level: str) -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        configure_logging(level)
        # httpx writes every request's URL at INFO: webhook URLs often carry the consumer's
        # token (https://hooks.example/T0/B0/secret, ?token=...).
        for name in ("httpx", "httpcore"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def test_a_record_holding_unicode_line_breaks_is_written_as_one_line() -> None:
    record = logging.LogRecord("identity", logging.WARNING, "", 0, "name\u2028x", (), None)
    record.error = "a\x85b\u2029c"
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert (entry["msg"], entry["error"]) == ("name\u2028x", "a\x85b\u2029c")
