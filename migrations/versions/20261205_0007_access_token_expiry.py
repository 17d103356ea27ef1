"""codes and refresh tokens remember when the access token issued with them expires

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 11:00:00

Revoking a grant denies its access tokens until they expire, and a redeemed code is kept
until its access token has expired, so that a replay can still deny it. Both used to work
the expiry out as the issue time plus the IDENTITY_ACCESS_TOKEN_TTL of the moment: once it
was lowered, a deny-list entry was deleted while its token still lived, and the revoked token
was accepted again. Each row now keeps the expiry its access token was issued with.

Rows written before this have no such record, and the lifetime their tokens were issued with
is unknown (the setting may have changed since), so they are given the longest reach that
revocation had over them before rather than today's setting: a refresh token's access token
is taken to expire with the refresh token (the row, and with it the means to deny that
access token, was kept that long and no longer), and a redeemed code's a day after the code
expired (how long housekeeping kept a redeemed code under any lifetime up to a day). So a
deny-list entry made from them may outlive its token by up to those bounds; it falls short
only for an access token issued to live longer than its refresh token or, from a code of a
client without refresh tokens, longer than a day.
"""

from collections.abc import Sequence
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# How long housekeeping kept a redeemed code past its expiry until now.
REDEEMED_CODE_KEPT = timedelta(days=1)
TABLES = ("authorization_codes", "refresh_tokens")

refresh_tokens = sa.table(
    "refresh_tokens",
    sa.column("access_jti", sa.String(length=64)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("access_expires_at", sa.DateTime(timezone=True)),
)
codes = sa.table(
    "authorization_codes",
    sa.column("code_hash", sa.String(length=64)),
    sa.column("consumed_at", sa.DateTime(timezone=True)),
    sa.column("expires_at", sa.DateTime(timezone=True)),
    sa.column("access_expires_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("access_expires_at", sa.DateTime(timezone=True), nullable=True)
            )
    op.execute(
        refresh_tokens.update()
        .where(refresh_tokens.c.access_jti.is_not(None))
        .values(access_expires_at=refresh_tokens.c.expires_at)
    )
    # Redeemed codes are few (housekeeping deletes them a day after they expire), and adding
    # a day in SQL is written differently on each backend.
    bind = op.get_bind()
    redeemed = bind.execute(
        sa.select(codes.c.code_hash, codes.c.expires_at).where(codes.c.consumed_at.is_not(None))
    ).all()
    if redeemed:
        bind.execute(
            codes.update()
            .where(codes.c.code_hash == sa.bindparam("redeemed_hash"))
            .values(access_expires_at=sa.bindparam("access_expires")),
            [
                {"redeemed_hash": code_hash, "access_expires": expires_at + REDEEMED_CODE_KEPT}
                for code_hash, expires_at in redeemed
            ],
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("access_expires_at")
