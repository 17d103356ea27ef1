"""reset tokens hold the password they were issued for

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 18:00:00

A reset link was refused once the password's changed_at was later than the link's created_at:
a change stamped by a server whose clock is behind the issuing one's seemed older than the
link, which then outlived it. A token now holds the changed_at of the password it was issued
for (none for a user without one) and works only while that is the password's, matched
exactly. Tokens issued before are given the changed_at the old rule accepts them for: the
user's password's, if it was set no later than the token (the clock comparison, made once,
here, in the transaction that adds the column). The others stay empty, as a token for a user
with no password does, and are refused once a password exists, as they were already.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

tokens = sa.table(
    "password_reset_tokens",
    sa.column("user_id", sa.Uuid()),
    sa.column("created_at", sa.DateTime(timezone=True)),
    sa.column("password_set_at", sa.DateTime(timezone=True)),
)
credentials = sa.table(
    "password_credentials",
    sa.column("user_id", sa.Uuid()),
    sa.column("changed_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    with op.batch_alter_table("password_reset_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=True))
    issued_for = (
        sa.select(credentials.c.changed_at)
        .where(
            credentials.c.user_id == tokens.c.user_id,
            credentials.c.changed_at <= tokens.c.created_at,
        )
        .scalar_subquery()
    )
    op.get_bind().execute(tokens.update().values(password_set_at=issued_for))


def downgrade() -> None:
    with op.batch_alter_table("password_reset_tokens", schema=None) as batch_op:
        batch_op.drop_column("password_set_at")
