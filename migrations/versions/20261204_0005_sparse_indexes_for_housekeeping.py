"""sparse indexes for housekeeping: used recovery codes, grants with an expiry

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 20:10:00

Built CONCURRENTLY on PostgreSQL, as 0004's. Each holds only the rows whose column is set (a
partial index): most recovery codes are never used and most grants never expire, so a full
index would be mostly nulls that housekeeping never looks for.
"""

from collections.abc import Sequence

from identity.db import online_indexes

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("recovery_codes", "used_at"),
    ("membership_permissions", "expires_at"),
    ("membership_roles", "expires_at"),
)


def upgrade() -> None:
    online_indexes.create(INDEXES, sparse=True)


def downgrade() -> None:
    online_indexes.drop(INDEXES)
