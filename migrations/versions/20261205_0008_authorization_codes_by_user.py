"""authorization codes indexed by user: every sign-out looks up the user's codes

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 20:40:00

A sign-out, a password change or reset and a disabled user end the user's unredeemed codes
and deny the access tokens redeemed codes issued, finding them by user; redeemed codes are
kept a day, so without an index each of these read every code of that day. Deleting a user
(ON DELETE CASCADE) looks them up the same way. Built CONCURRENTLY on PostgreSQL
(``identity.db.online_indexes``): each authorization request writes a code.
"""

from collections.abc import Sequence

from identity.db import online_indexes

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (("authorization_codes", "user_id"),)


def upgrade() -> None:
    online_indexes.create(INDEXES)


def downgrade() -> None:
    online_indexes.drop(INDEXES)
