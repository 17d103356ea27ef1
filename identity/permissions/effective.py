"""What a member holds now: effective permissions, an access token's account claims, and
batched allow/deny checks for consuming services.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.errors import Forbidden
from identity.permissions import repository
from identity.permissions.catalogue import Catalogue, or_installed
from identity.permissions.models import Membership


async def held_until(
    session: AsyncSession, membership_id: uuid.UUID, now: datetime
) -> dict[str, datetime | None]:
    """Each permission a (partial) member holds now, with when it stops: a permission held
    several ways lasts as long as its longest grant (None: no end)."""
    until: dict[str, datetime | None] = {}
    for name, expires_at in await repository.held_until(session, membership_id, now):
        held = until.get(name, expires_at)
        until[name] = None if held is None or expires_at is None else max(held, expires_at)
    return until


async def effective_of(
    session: AsyncSession, memberships: Sequence[Membership], now: datetime, catalogue: Catalogue
) -> dict[uuid.UUID, frozenset[str]]:
    full = [m.id for m in memberships if m.is_owner or m.all_permissions]
    everything = await catalogue.names(session) if full else frozenset()
    found: dict[uuid.UUID, set[str]] = {m.id: set() for m in memberships}
    partial = [m.id for m in memberships if m.id not in full]
    granted = await repository.live_permissions(session, partial, now)
    # A grant outlives its name's removal from policies/permissions.toml, and gives nothing.
    existing = await catalogue.among(session, {permission for _, permission in granted})
    for membership_id, permission in granted:
        if permission in existing:
            found[membership_id].add(permission)
    return {
        membership_id: everything if membership_id in full else frozenset(names)
        for membership_id, names in found.items()
    }


async def effective_permissions(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> frozenset[str]:
    """Direct grants and roles that have not expired; everything for owners and "all"."""
    membership = await repository.get_membership(session, account_id, user_id)
    if membership is None:
        return frozenset()
    effective = await effective_of(session, [membership], now, or_installed(catalogue))
    return effective[membership.id]


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """An access token's account claims, and ``until``: when the first grant they come from
    ends (None: none ends), past which the token must not speak for them."""

    claims: dict[str, Any]
    until: datetime | None


async def token_claims_lasting(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    *,
    held_past: datetime,
    catalogue: Catalogue | None = None,
) -> TokenClaims:
    """The account claims of an access token: ``account_id``, ``permissions``,
    ``account_owner``; only permissions held beyond ``held_past`` (one ending before is left
    out rather than cutting the token's life short to it).

    Raises ``Forbidden`` when the user is not a member of the account.
    """
    membership = await repository.get_membership(session, account_id, user_id)
    if membership is None:
        raise Forbidden("The user is not a member of this account.")
    held: dict[str, datetime | None]
    catalogue = or_installed(catalogue)
    if membership.is_owner or membership.all_permissions:
        held = dict.fromkeys(await catalogue.names(session))
    else:
        granted = await held_until(session, membership.id, now)
        # As ``effective_of``: a grant of a name no longer in the catalogue gives nothing.
        existing = await catalogue.among(session, granted)
        held = {
            name: until
            for name, until in granted.items()
            if name in existing and (until is None or until > held_past)
        }
    ends = [until for until in held.values() if until is not None]
    claims = {
        "account_id": str(account_id),
        "permissions": sorted(held),
        "account_owner": membership.is_owner,
    }
    return TokenClaims(claims, min(ends, default=None))


async def still_granted(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    issued: Sequence[str],
    issued_owner: bool,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> dict[str, Any] | None:
    """The account claims an access token issued earlier stands for now (introspection):
    None once the user has left the account; else the token's permissions the member still
    holds, and ``account_owner`` only while they still own it. Never more than the token
    says: what was granted since belongs in a new token, not in this one. (A token issued
    before a removal is denied by it, so adding the member back does not revive it.)"""
    try:
        current = await token_claims_lasting(
            session, user_id, account_id, now, held_past=now, catalogue=catalogue
        )
    except Forbidden:
        return None
    held = set(current.claims["permissions"])
    return {
        "account_id": str(account_id),
        "permissions": [name for name in issued if name in held],
        "account_owner": issued_owner and current.claims["account_owner"],
    }


async def check_batch(
    session: AsyncSession,
    checks: Sequence[tuple[uuid.UUID, uuid.UUID, str]],
    now: datetime,
    catalogue: Catalogue | None = None,
) -> list[bool]:
    """Allow or deny each (user_id, account_id, permission), in order, in three queries.
    A disabled user is denied everything, as their tokens and sign-ins are."""
    catalogue = or_installed(catalogue)
    memberships = await repository.live_memberships_for(
        session, {(user_id, account_id) for user_id, account_id, _ in checks}
    )
    by_pair = {(m.user_id, m.account_id): m for m in memberships}
    partial = [m.id for m in memberships if not (m.is_owner or m.all_permissions)]
    held = set(await repository.live_permissions(session, partial, now))
    # Only what exists is held, by owners and by a grant alike (a grant outlives its name's
    # removal from policies/permissions.toml).
    asked = {permission for _, _, permission in checks}
    existing = await catalogue.among(session, asked) if memberships else set()
    decisions = []
    for user_id, account_id, permission in checks:
        membership = by_pair.get((user_id, account_id))
        if membership is None:
            decisions.append(False)
        elif membership.is_owner or membership.all_permissions:
            decisions.append(permission in existing)
        else:
            decisions.append(permission in existing and (membership.id, permission) in held)
    return decisions
