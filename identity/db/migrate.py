"""Alembic, driven from code: ``identity migrate``, ``identity serve`` and the tests."""

from __future__ import annotations

from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import DateTime

from identity.db.base import UTCDateTime
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


def render_item(type_: str, obj: Any, autogen_context: Any) -> str | bool:
    """Autogenerate hook: migrations must not import application types, so ours render plain."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def compare_type(context: Any, inspected: Any, metadata_column: Any, *_: Any) -> bool | None:
    """Autogenerate hook: a UTCDateTime column is a plain timezone-aware DateTime in SQL."""
    if isinstance(metadata_column.type, UTCDateTime) and isinstance(inspected.type, DateTime):
        return False
    return None
