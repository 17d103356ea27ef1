"""One page of a list the management API shows: ``offset`` items skipped, at most ``limit``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select

Statement = TypeVar("Statement", bound=Select[Any])


@dataclass(frozen=True, slots=True)
class Page:
    offset: int
    limit: int


def paged(statement: Statement, page: Page | None) -> Statement:
    """``statement`` cut to ``page``; whole without one (the hosted pages show an account's
    members, roles and invitations all at once). Its order must be total, or an item could
    show on two pages and another on none."""
    if page is None:
        return statement
    return statement.offset(page.offset).limit(page.limit)
