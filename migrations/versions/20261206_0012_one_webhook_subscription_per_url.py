"""one webhook subscription per URL

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:00:00

A second subscription to a URL posted every event there twice, the second time signed with a
secret the consumer did not keep; a POST retried after a timeout was enough to make one.
Subscriptions already doubled are merged (identity.webhooks.duplicates).

As released, this revision then built a unique index of the URLs themselves, which PostgreSQL
refuses to build over a URL of more than about 2,700 bytes ("index row size exceeds"), so the
upgrade failed there. It builds none now: 0013 keeps URLs unique through a digest, and drops
this index where the released revision made it.
"""

from collections.abc import Sequence

from alembic import op

from identity.webhooks import duplicates

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The index the released revision built.
URL_INDEX = "ix_webhook_subscriptions_url"


def upgrade() -> None:
    duplicates.merge(lambda url: url)


def downgrade() -> None:
    op.drop_index(op.f(URL_INDEX), table_name="webhook_subscriptions", if_exists=True)
