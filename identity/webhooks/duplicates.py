"""Merging subscriptions that share a URL, for the migrations that make URLs unique.

The oldest for each URL stays, with every event type any of them wanted; each delivery of the
others moves to it unless it has its own delivery of that event, and the others go (the secret
the consumer keeps cannot be known: the oldest's is the one it had first).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

subscriptions = sa.table(
    "webhook_subscriptions",
    sa.column("id", sa.Uuid()),
    sa.column("url", sa.String()),
    sa.column("event_types", sa.JSON()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("url_digest", sa.String()),
)
deliveries = sa.table(
    "webhook_deliveries",
    sa.column("id", sa.Uuid()),
    sa.column("event_id", sa.Uuid()),
    sa.column("subscription_id", sa.Uuid()),
)


def merge(key: Callable[[str], str]) -> dict[object, str]:
    """Merge the subscriptions whose URLs have one ``key``; each one kept, with its key."""
    connection = op.get_bind()
    kept: dict[str, tuple[object, set[str]]] = {}
    rows = connection.execute(
        sa.select(subscriptions.c.id, subscriptions.c.url, subscriptions.c.event_types).order_by(
            subscriptions.c.created_at, subscriptions.c.id
        )
    )
    for subscription_id, url, event_types in rows.all():
        same = key(url)
        if same not in kept:
            kept[same] = (subscription_id, set(event_types))
            continue
        oldest, wanted = kept[same]
        wanted.update(event_types)
        _merge(subscription_id, into=oldest)
    for oldest, wanted in kept.values():
        connection.execute(
            subscriptions.update()
            .where(subscriptions.c.id == oldest)
            .values(event_types=sorted(wanted))
        )
    return {oldest: same for same, (oldest, _) in kept.items()}


def merge_by_digest(digest: Callable[[str], str]) -> None:
    """Merge the subscriptions whose URLs have one ``digest`` and store it on each one kept.
    Row by row, yet the unique index never sees two alike: a digest stored already is of the
    URL as an earlier rule read it, and URLs an earlier rule read alike this one reads alike,
    so the subscription holding it was merged with any kept one whose new digest it is."""
    connection = op.get_bind()
    for kept, same in merge(digest).items():
        connection.execute(
            subscriptions.update().where(subscriptions.c.id == kept).values(url_digest=same)
        )


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
