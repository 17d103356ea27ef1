"""webhook URL digests read a trailing dot and percent-escapes as consumers do

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 21:00:00

The digest 0013 made told https://billing.example.com./h from https://billing.example.com/h,
and /a%2fb from /a%2Fb or /%7Eada from /~ada, though each pair names one consumer: two
subscriptions could point at it, and every event went there twice. Every digest is made
again with the rule that reads them alike (identity.webhooks.url_key), after merging the
subscriptions that now share one into the oldest (identity.webhooks.duplicates).

Going down leaves them merged, with the new digests: URLs the earlier rule read as one still
share a digest, so its uniqueness holds.
"""

from collections.abc import Sequence

from identity.webhooks import duplicates, url_key

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    duplicates.merge_by_digest(url_key.digest)


def downgrade() -> None:
    pass
