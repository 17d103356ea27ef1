import logging

import pytest

from identity.logs import configure_logging


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
