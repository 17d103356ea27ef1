"""webhook deliveries waiting, indexed per subscription

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 14:00:00

The webhook dispatcher takes turns among subscriptions so one consumer's backlog does not
hold up the others' events, but it took them only among the 1,000 longest-waiting deliveries
of all subscriptions together: a consumer answering errors, and so retried rather than
deferred, kept that window full with its own backlog, and another consumer's events waited
until all of it had been tried once. Each batch now reads every subscription's first due
deliveries, a range of this index apiece, whatever the size of a backlog. Built CONCURRENTLY
on PostgreSQL (``identity.db.online_indexes``): every event emitted writes deliveries.
"""

from collections.abc import Sequence

from alembic import op

from identity.db import online_indexes

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "webhook_deliveries"
INDEX = "ix_webhook_deliveries_waiting_per_subscription_id"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        online_indexes.create_one(
            INDEX,
            TABLE,
            ["subscription_id", "next_attempt_at"],
            "delivered_at IS NULL AND failed_at IS NULL",
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, table_name=TABLE, if_exists=True, postgresql_concurrently=True)
