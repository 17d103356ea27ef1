"""consents name the customer accounts they were given for

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 10:00:00

A user's access token names the customer account chosen at sign-in and carries its
permissions, but consent was remembered per client and scope only: a third-party client
allowed once, for one account, could pre-select any other account of the user and act there
with no question asked. A consent now also remembers the accounts it was given for.

They are rows of a child table, not a JSON list on ``consents``: a foreign key to each side
with ON DELETE CASCADE drops an account's rows when the account goes (a list would keep ids
of accounts long deleted) and drops them with the consent (a client or user deleted); the
check is an indexed lookup of one (consent, account) pair on every authorization, and adding
an account under the consent's row lock is an insert, not a rewrite of the list.

Consents stored before this name no account: they cover requests without one (a user in no
account) only, so a user in an account is asked once more by each third-party client.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "consent_accounts",
        sa.Column("consent_id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_consent_accounts_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["consent_id"],
            ["consents.id"],
            name=op.f("fk_consent_accounts_consent_id_consents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("consent_id", "account_id", name=op.f("pk_consent_accounts")),
    )
    with op.batch_alter_table("consent_accounts", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_consent_accounts_account_id"), ["account_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("consent_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consent_accounts_account_id"))
    op.drop_table("consent_accounts")
