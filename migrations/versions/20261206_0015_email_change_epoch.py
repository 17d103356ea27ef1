"""email change links hold a count of the user's disables and email changes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 21:00:00

A pending email change link was refused once asked no later than the time of the user's last
disable or change of sign-in email, kept in the short-lived store: a disable stamped by a
server whose clock is behind the asking one's seemed earlier than the link, which then
outlived it. Each user now has a count, raised by every disable and every change of sign-in
email, that a link must still find as it was when asked for. Every user starts at 0; the
links pending at the upgrade hold no count and are refused (they live an hour: the user asks
again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("email_change_epoch", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_change_epoch")
