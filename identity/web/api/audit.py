"""The audit log, read-only: all of it for staff (/api/v1/audit), an account's own for its
owners (/api/v1/accounts/{account_id}/audit). There are no routes that change it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, FromQuery, Parameter

from identity.audit.service import EventFilter, list_events
from identity.clock import utcnow
from identity.permissions.access import Action
from identity.permissions.catalogue import invalid_field
from identity.runtime import Runtime
from identity.web.api import schemas
from identity.web.api.auth import Principal
from identity.web.api.common import Limit, PrincipalDep, allow, event_out
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import problems

Action_ = Annotated[str | None, Parameter(max_length=100, description="e.g. member.added")]
# Ids are 64-bit: a larger one could only be refused by the database, as a 500.
BeforeId = Annotated[
    int | None, Parameter(ge=1, le=2**63 - 1, description="next_before_id of the last page")
]
# Read as text and parsed here: as a datetime, Litestar also took a bare number as a Unix
# time (since=2026 was 1970-01-01T00:33:46Z), silently the wrong page for someone who meant
# a year. The document still says what is taken: an RFC 3339 date-time.
When = Annotated[
    str | None,
    Parameter(
        max_length=64,
        description="RFC 3339 date-time with a time zone, e.g. 2026-01-31T09:00:00Z",
        schema_extra={"format": "date-time"},
    ),
]


def _utc(text: str | None, name: str) -> datetime | None:
    """Also refused: a date-time without an offset, which names no moment; and one at the
    edge of the calendar (0001-01-01T00:00+01:00), which has no UTC equivalent."""
    if text is None:
        return None
    try:
        value = msgspec.convert(text, datetime, strict=True)
    except msgspec.ValidationError:
        raise invalid_field(
            name, "Give an RFC 3339 date-time with a time zone, e.g. 2026-01-31T09:00:00Z."
        ) from None
    if value.tzinfo is None:
        raise invalid_field(name, "Give the time zone, e.g. 2026-01-31T09:00:00Z.")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise invalid_field(name, "The date is out of range.") from None


def _as_recorded(target_id: str | None) -> str | None:
    """The target id as entries record it: a UUID (a user, account, role, invitation...) in
    lower case with hyphens, whichever way it was written (capitals, no hyphens, braces), as
    ``actor_user_id`` takes it. Other ids (a client's, a key's, a permission's name) hold
    characters no UUID does, and are taken as they are."""
    if target_id is None:
        return None
    try:
        return str(uuid.UUID(target_id))
    except ValueError:
        return target_id


def _filter(
    account_id: uuid.UUID | None,
    action: str | None,
    actor_user_id: uuid.UUID | None,
    target_id: str | None,
    since: str | None,
    until: str | None,
) -> EventFilter:
    """The filters both views take, as the entries record them."""
    return EventFilter(
        account_id,
        action,
        actor_user_id,
        _as_recorded(target_id),
        _utc(since, "since"),
        _utc(until, "until"),
    )


async def _page(
    runtime: Runtime,
    principal: Principal,
    action: Action,
    where: EventFilter,
    before_id: int | None,
    limit: int,
    account_id: uuid.UUID | None,
) -> schemas.AuditPage:
    """``account_id`` is what the caller is authorized against: None for the staff's view."""
    async with runtime.db.transaction() as session:
        await allow(session, runtime, principal, action, utcnow(), account_id)
        events = await list_events(session, where, before_id, limit)
    last = events[-1].id if len(events) == limit else None
    return schemas.AuditPage([event_out(event) for event in events], last)


class AuditController(Controller):
    tags = ["audit"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("/audit", summary="The whole audit log, newest first (staff)", responses=problems(422))
    async def all_events(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromQuery[uuid.UUID | None] = None,
        action: Action_ = None,
        actor_user_id: FromQuery[uuid.UUID | None] = None,
        target_id: Annotated[str | None, Parameter(max_length=100)] = None,
        since: When = None,
        until: When = None,
        before_id: BeforeId = None,
        limit: Limit = 50,
    ) -> schemas.AuditPage:
        where = _filter(account_id, action, actor_user_id, target_id, since, until)
        return await _page(runtime, principal, Action.AUDIT_READ_ALL, where, before_id, limit, None)

    @get(
        "/accounts/{account_id:uuid}/audit",
        summary="An account's audit log (owner, staff)",
        responses=problems(422),
    )
    async def account_events(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        action: Action_ = None,
        actor_user_id: FromQuery[uuid.UUID | None] = None,
        target_id: Annotated[str | None, Parameter(max_length=100)] = None,
        since: When = None,
        until: When = None,
        before_id: BeforeId = None,
        limit: Limit = 50,
    ) -> schemas.AuditPage:
        where = _filter(account_id, action, actor_user_id, target_id, since, until)
        return await _page(
            runtime, principal, Action.ACCOUNT_AUDIT_READ, where, before_id, limit, account_id
        )
