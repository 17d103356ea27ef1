"""outgoing mail and webhook deliveries indexed by next attempt only while they wait

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 02:50:00

Each process's mail sender and webhook poster ask every 2 seconds for the work due now, the
longest waiting first. Sent mail and delivered deliveries keep their old next-attempt times
and are kept a day (IDENTITY_SENT_RETENTION), so on PostgreSQL each poll read through the
whole day of finished work (a scan of the table) to find the few rows still waiting. The
index now holds waiting rows alone. Built CONCURRENTLY on PostgreSQL
(``identity.db.online_indexes``): requests write rows to both tables.
"""

from collections.abc import Sequence

from alembic import op

from identity.db import online_indexes

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each table and the column that marks its work done.
TABLES = (("outgoing_emails", "sent_at"), ("webhook_deliveries", "delivered_at"))
FULL = tuple((table, "next_attempt_at") for table, _ in TABLES)


def upgrade() -> None:
    with op.get_context().autocommit_block():
        for table, done in TABLES:
            where = f"{done} IS NULL AND failed_at IS NULL"
            online_indexes.create_one(f"ix_{table}_waiting", table, "next_attempt_at", where)
    online_indexes.drop(FULL)


def downgrade() -> None:
    online_indexes.create(FULL)
    with op.get_context().autocommit_block():
        for table, _ in TABLES:
            op.drop_index(
                f"ix_{table}_waiting",
                table_name=table,
                if_exists=True,
                postgresql_concurrently=True,
            )
