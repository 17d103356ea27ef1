"""refresh tokens remember the access token issued with them

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 23:00:00

Revoking a refresh token family (reuse, a replayed code, RFC 7009) revokes those access tokens
too. Rows issued before this migration have none to revoke: their access tokens expire within
IDENTITY_ACCESS_TOKEN_TTL anyway.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("access_jti", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("refresh_tokens", schema=None) as batch_op:
        batch_op.drop_column("access_jti")
