"""browser sessions get the sid their ID tokens carry

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 05:45:00

RP-initiated logout signs the browser out without asking only when the id_token_hint belongs
to its current session; the ID token's ``sid`` says which session that is. Sessions begun
before this have none (a nullable column, so adding it rewrites no rows): their ID tokens
carry no ``sid``, and a hint from one gets the question.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sid", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("browser_sessions", schema=None) as batch_op:
        batch_op.drop_column("sid")
