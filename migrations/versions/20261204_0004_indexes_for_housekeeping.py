"""indexes for housekeeping: the columns its deletions look rows up by

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:15:06

Built CONCURRENTLY on PostgreSQL (``identity.db.online_indexes``): refresh_tokens is written
on each token request and browser_sessions on each sign-in.
"""

from collections.abc import Sequence

from identity.db import online_indexes

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("authorization_codes", "expires_at"),
    ("browser_sessions", "expires_at"),
    ("browser_sessions", "revoked_at"),
    ("refresh_tokens", "expires_at"),
)


def upgrade() -> None:
    online_indexes.create(INDEXES)


def downgrade() -> None:
    online_indexes.drop(INDEXES)
