"""Alembic, driven from code: ``identity migrate``, ``identity serve`` and the tests."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from identity.settings import PACKAGE_ROOT, Settings

MIGRATIONS_DIR = PACKAGE_ROOT.parent / "migrations"


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    """Apply migrations up to ``revision``. Synchronous: call it before the event loop runs."""
    command.upgrade(alembic_config(settings), revision)


def downgrade(settings: Settings, revision: str) -> None:
    command.downgrade(alembic_config(settings), revision)
