"""What a grant is, and how far a manager may hand grants out.

Values and rules only: no SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from identity.errors import Forbidden

# Any later expiry, in the time zone it was given in, may have no UTC equivalent to store
# (9999-12-31T23:00-05:00 is in the year 10000); none is meant as a real date anyway.
LATEST_EXPIRY = datetime(9999, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Grant:
    """A permission granted directly, until ``expires_at`` (None: until revoked)."""

    name: str
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RoleGrant:
    role_id: uuid.UUID
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class GrantFields:
    """The request fields a refused grant is reported under: the lists of a member, an
    invitation or a new membership by default; a single grant's own body fields below."""

    permission: str = "permissions"
    role: str = "roles"
    permission_expiry: str = "permissions"
    role_expiry: str = "roles"


GRANT_LISTS = GrantFields()
ONE_PERMISSION = GrantFields(permission="name", permission_expiry="expires_at")
ONE_ROLE = GrantFields(role="role_id", role_expiry="expires_at")


BEYOND_DELEGATION = "beyond_delegation"


@dataclass(frozen=True, slots=True)
class Delegation:
    """What a manager may hand out: only permissions they hold, each for no longer than
    they hold it (``until``; None: with no end). Otherwise a manager could give themselves,
    or a second address of their own, every permission one by one, or keep ``users`` past
    the expiry an owner set on it. Owners and staff hand out anything (no Delegation).
    ``everything``: an "all permissions" member holds every permission, with no end, so
    may hand out any one of them (but not "all permissions" itself: ``check_manager_edit``)."""

    until: Mapping[str, datetime | None]
    everything: bool = False

    def covers(self, name: str, expires_at: datetime | None) -> bool:
        if self.everything:
            return True
        if name not in self.until:
            return False
        limit = self.until[name]
        return limit is None or (expires_at is not None and expires_at <= limit)

    def check(self, names: Iterable[str], expires_at: datetime | None) -> None:
        """``Forbidden`` naming the permissions not covered for that long."""
        beyond = sorted({name for name in names if not self.covers(name, expires_at)})
        if beyond:
            raise Forbidden(
                "A manager can grant only permissions they hold, for no longer than they "
                "hold them: " + ", ".join(beyond) + ".",
                reason=BEYOND_DELEGATION,
            )

    def check_grants(
        self,
        permissions: Sequence[Grant],
        roles: Sequence[RoleGrant],
        held_by_role: Mapping[uuid.UUID, Sequence[str]],
    ) -> None:
        """``check`` for each permission given, and for each role's (``held_by_role``), for
        as long as it is given."""
        for grant in permissions:
            self.check([grant.name], grant.expires_at)
        for role_grant in roles:
            self.check(held_by_role[role_grant.role_id], role_grant.expires_at)


def lapsed(expires_at: datetime | None, now: datetime) -> bool:
    """A grant with this expiry gives nothing any more (it is kept, and listed, a while)."""
    return expires_at is not None and expires_at <= now
