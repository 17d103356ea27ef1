"""refresh tokens keep the sid of the session that granted them

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 21:40:00

An ID token issued by a refresh named its session by looking the session up, and housekeeping
deletes a session once it has expired while its refresh tokens live on: from then on those
ID tokens carried no ``sid``. Each refresh token now holds it. Tokens already issued get their
session's, where the session is still there; the others have lost it already and stay without.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sid", sa.Uuid(), nullable=True))
    refresh_tokens = sa.table(
        "refresh_tokens", sa.column("session_id", sa.Uuid()), sa.column("sid", sa.Uuid())
    )
    sessions = sa.table("browser_sessions", sa.column("id", sa.Uuid()), sa.column("sid", sa.Uuid()))
    op.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.session_id.is_not(None))
        .values(
            sid=sa.select(sessions.c.sid)
            .where(sessions.c.id == refresh_tokens.c.session_id)
            .scalar_subquery()
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("sid")
