"""The audit entries of housekeeping's deletions.

A grant stops counting at its expiry, with nothing recorded; housekeeping deletes it 30 days
later. Each deleted grant is recorded as a revocation through the API is, with no user, the
source ``housekeeping`` (as a role template brought up to roles.toml names its file) and the
expiry it ended at, so that an account's log shows until when a time-limited grant counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.housekeeping import repository
from identity.housekeeping.repository import Rule
from identity.permissions.models import MembershipPermission

HOUSEKEEPING = Actor(source="housekeeping")


def _revoked(rule: Rule, row: Row[Any]) -> tuple[str, dict[str, Any]]:
    """The action and the grant, as ``permissions.members`` records a revocation."""
    expires_at = row.expires_at.isoformat()
    if rule.model is MembershipPermission:
        return "member.permission_revoked", {"name": row.permission, "expires_at": expires_at}
    return "member.role_revoked", {"role_id": str(row.role_id), "expires_at": expires_at}


async def record_deleted(session: AsyncSession, rule: Rule, rows: Sequence[Row[Any]]) -> None:
    """Record each grant of ``rows``, just deleted by ``rule``, in the deletion's transaction."""
    members = await repository.members(session, [row.membership_id for row in rows])
    for row in rows:
        account_id, user_id = members[row.membership_id]
        action, old = _revoked(rule, row)
        await record_as(
            session, HOUSEKEEPING, action, account_id=account_id, target=("user", user_id), old=old
        )
