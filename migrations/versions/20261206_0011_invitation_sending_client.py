"""invitations remember the client that sent them with its own token

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 14:00:00

An invitation lasts only as long as its sender could send it again. One sent by a client
acting for itself (staff through its own identity:admin token) named no user, so nothing was
left to look at and it lasted its whole week even after staff disabled the client or took
identity:admin from it. The client is now recorded. Invitations sent before have none (a
nullable column, so adding it rewrites no rows) and are honoured as they were. No foreign
key: a client deleted since must end its invitations, not turn them into ones with no sender.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invited_by_client", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("invitations", schema=None) as batch_op:
        batch_op.drop_column("invited_by_client")
