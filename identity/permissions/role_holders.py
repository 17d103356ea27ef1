"""What a change of a role's permissions does to the members holding it, wherever the change
comes from: an edit or deletion through the API, or policies/roles.toml edited between
restarts. Consumers are told about each holder; when the role lost permissions, the holders'
refresh tokens for their account end, so their next token shows the loss at once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.permissions import repository
from identity.webhooks.events import PERMISSIONS_CHANGED, about_member, emit


async def replace_permissions(
    session: AsyncSession, role_id: uuid.UUID, permissions: Iterable[str], now: datetime
) -> None:
    """Give the role exactly ``permissions``, and tell its holders if that changed what it
    gives. The caller holds the role's lock (``repository.lock_role``): a grant of the role
    under way has committed, so its holder is among those read here."""
    wanted = dict.fromkeys(permissions)
    before = set((await repository.role_permissions(session, [role_id]))[role_id])
    await repository.replace_role_permissions(session, role_id, wanted)
    if before != set(wanted):
        holders = await repository.role_holders(session, role_id, now)
        await tell_holders(session, holders, narrowed=bool(before - set(wanted)), now=now)


async def tell_holders(
    session: AsyncSession,
    holders: Sequence[repository.MembershipRow],
    *,
    narrowed: bool,
    now: datetime,
) -> None:
    """Tell consumers about each holder of a changed role; when it lost permissions, end the
    holders' refresh tokens for their account, as a narrowed grant of their own does."""
    for holder in holders:
        # Owners and "all permissions" members hold everything whatever the role says: their
        # tokens lose nothing, so they keep them.
        if narrowed and not (holder.is_owner or holder.all_permissions):
            await repository.revoke_refresh_tokens(session, holder.user_id, holder.account_id, now)
        await emit(session, PERMISSIONS_CHANGED, about_member(holder.account_id, holder.user_id))
