"""webhook subscriptions are unique by a digest of their URL

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 18:00:00

0012 as released made URLs unique with an index of the URLs themselves, which PostgreSQL
cannot build or extend over a URL of more than about 2,700 bytes. The index is dropped where
it was built, and a fixed-size digest of each URL (identity.webhooks.url_key) is indexed
instead, after merging the subscriptions whose URLs share one (identity.webhooks.duplicates).
The digest is of the URL as the client posts it (scheme and host in lower case, the host in
IDNA form, no default port), so URLs 0012 kept apart, such as https://Billing.example.com/h
and https://billing.example.com:443/h, are merged here as it merged URLs written alike.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from identity.webhooks import duplicates, url_key

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index(
        op.f("ix_webhook_subscriptions_url"), table_name="webhook_subscriptions", if_exists=True
    )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("url_digest", sa.String(length=64), nullable=True))
    duplicates.merge_by_digest(url_key.digest)
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.alter_column("url_digest", existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(
            batch_op.f("ix_webhook_subscriptions_url_digest"), ["url_digest"], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_url_digest"))
        batch_op.drop_column("url_digest")
