"""indexes for housekeeping: the columns its deletions look rows up by

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 17:15:06

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction: a plain
CREATE INDEX would block every write to refresh_tokens (each token request) and
browser_sessions (each sign-in) while it reads the whole table. IF NOT EXISTS lets a run that
stopped half-way be run again.
"""

from collections.abc import Sequence

from alembic import op

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
    with op.get_context().autocommit_block():
        for table, column in INDEXES:
            op.create_index(
                op.f(f"ix_{table}_{column}"),
                table,
                [column],
                unique=False,
                if_not_exists=True,
                postgresql_concurrently=True,
            )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for table, column in reversed(INDEXES):
            op.drop_index(
                op.f(f"ix_{table}_{column}"),
                table_name=table,
                if_exists=True,
                postgresql_concurrently=True,
            )
