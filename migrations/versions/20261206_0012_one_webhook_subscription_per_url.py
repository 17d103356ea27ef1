"""one webhook subscription per URL

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 14:00:00

A second subscription to a URL posted every event there twice, the second time signed with a
secret the consumer did not keep; a POST retried after a timeout was enough to make one. A
unique index now refuses it, also to two requests at once. Subscriptions already doubled are
merged first, in the same transaction: the oldest for each URL stays, with every event type
any of them wanted; each delivery of the others moves to it unless it has its own delivery of
that event, and the others go (the secret the consumer keeps cannot be known: the oldest's
is the one it had first).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

subscriptions = sa.table(
    "webhook_subscriptions",
    sa.column("id", sa.Uuid()),
    sa.column("url", sa.String()),
    sa.column("event_types", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.Uuid()),
    sa.column("event_id", sa.Uuid()),
    sa.column("subscription_id", sa.Uuid()),
)


def upgrade() -> None:
    connection = op.get_bind()
    kept: dict[str, tuple[object, set[str]]] = {}
    rows = connection.execute(
        sa.select(subscriptions.c.id, subscriptions.c.url, subscriptions.c.event_types).order_by(
            subscriptions.c.created_at, subscriptions.c.id
        )
    )
    for subscription_id, url, event_types in rows.all():
        if url not in kept:
            kept[url] = (subscription_id, set(event_types))
            continue
        oldest, wanted = kept[url]
        wanted.update(event_types)
        _merge(subscription_id, into=oldest)
    for oldest, wanted in kept.values():
        connection.execute(
            subscriptions.update()
            .where(subscriptions.c.id == oldest)
            .values(event_types=sorted(wanted))
        )
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_webhook_subscriptions_url"), ["url"], unique=True)


def _merge(duplicate: object, *, into: object) -> None:
    """Move the deliveries of ``duplicate`` to ``into`` and delete it. Explicitly: SQLite's
    migrations run with foreign keys off, so no cascade would take them."""
    connection = op.get_bind()
    own = sa.select(deliveries.c.event_id).where(deliveries.c.subscription_id == into)
    connection.execute(
        deliveries.delete().where(
            deliveries.c.subscription_id == duplicate, deliveries.c.event_id.in_(own)
        )
    )
    connection.execute(
        deliveries.update()
        .where(deliveries.c.subscription_id == duplicate)
        .values(subscription_id=into)
    )
    connection.execute(subscriptions.delete().where(subscriptions.c.id == duplicate))


def downgrade() -> None:
    with op.batch_alter_table("webhook_subscriptions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_subscriptions_url"))
