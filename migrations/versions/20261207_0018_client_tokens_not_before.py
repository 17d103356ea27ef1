"""clients remember when they last stopped acting for themselves

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 09:00:00

A client's own access tokens (client_credentials) are recorded nowhere to be denied: while the
client was disabled, or without client_credentials, they were refused, and once staff enabled
it again or gave the grant back they were accepted until they expired, a thief's as well. Each
client now holds the time it was last stopped, and its own tokens issued until then stay
refused.

A client disabled or without client_credentials at the upgrade may have been stopped moments
before, with its tokens still live: it is taken to have been stopped at the upgrade, which
refuses only tokens issued before it. Every other client has no such time.
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

clients = sa.table(
    "oauth_clients",
    sa.column("client_id", sa.String(length=64)),
    sa.column("disabled", sa.Boolean()),
    sa.column("grant_types", sa.JSON()),
    sa.column("own_tokens_not_before", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("own_tokens_not_before", sa.DateTime(timezone=True), nullable=True)
        )
    # Read here: a JSON list is searched differently on each backend.
    bind = op.get_bind()
    upgraded_at = datetime.now(UTC)
    rows = bind.execute(sa.select(clients.c.client_id, clients.c.disabled, clients.c.grant_types))
    stopped = [
        client_id
        for client_id, disabled, grant_types in rows
        if disabled or "client_credentials" not in (grant_types or [])
    ]
    if stopped:
        bind.execute(
            clients.update()
            .where(clients.c.client_id == sa.bindparam("stopped_id"))
            .values(own_tokens_not_before=sa.bindparam("stopped_at")),
            [{"stopped_id": client_id, "stopped_at": upgraded_at} for client_id in stopped],
        )


def downgrade() -> None:
    with op.batch_alter_table("oauth_clients", schema=None) as batch_op:
        batch_op.drop_column("own_tokens_not_before")
