"""Recording who changed what, in the same transaction as the change itself.

Because the event is written with the change, a rolled-back change leaves no event and a
committed one always has its event.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit import repository
from identity.audit.models import AuditEvent
from identity.audit.repository import EventFilter
from identity.clock import utcnow
from identity.display_names import display_name

__all__ = [
    "Actor",
    "EventFilter",
    "list_events",
    "readable",
    "readable_details",
    "record_as",
    "required_reason",
]

MAX_REASON = 500
_UNPAIRED_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who makes a change, and from where: what every audit event names."""

    user_id: uuid.UUID | None = None
    client_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    # ``user@host`` of whoever ran an ``identity`` command: no request, no signed-in user.
    command_line: str | None = None
    # A file the server applied as it started (policies/roles.toml): nobody asked for the
    # change, so the entry names where it came from instead.
    source: str | None = None


def readable(text: str) -> str:
    """``text`` with its unpaired surrogates, which no JSON answer can hold, written as
    escapes: a byte that was not UTF-8 (Python hands one over as U+DC80 to U+DCFF, PEP 383:
    a login name in Latin-1, josé) as ``\\xNN``, any other as ``\\uXXXX``."""
    return _UNPAIRED_SURROGATE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def readable_details(value: Any) -> Any:
    """An entry's details with every text in them ``readable``: one written before such
    text was refused (a non-UTF-8 login name) made every page holding it a 500."""
    if isinstance(value, str):
        return readable(value)
    if isinstance(value, dict):
        return {readable(k): readable_details(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable_details(v) for v in value]
    return value


def required_reason(raw: str) -> str:
    """The reason staff must give for a change (a recovery, switching a user off or on),
    trimmed: other staff read it in the audit log, so it is held to the rules of a name shown
    to people (no NUL, control character or direction override), or ``InvalidInput`` naming
    ``reason``."""
    return display_name(raw, MAX_REASON, field="reason", what="reason")


async def record_as(
    session: AsyncSession,
    actor: Actor,
    action: str,
    *,
    account_id: uuid.UUID | None,
    target: tuple[str, Any],
    old: Any = None,
    new: Any = None,
    reason: str | None = None,
) -> None:
    """Record ``action`` on ``target`` (type, id) by ``actor``. Details hold the old and new
    values, the ``reason`` staff gave where they must give one, and who ran the command
    when the change came from the command line (or the file it came from)."""
    details: dict[str, Any] = {"old": old, "new": new}
    if reason is not None:
        details["reason"] = reason
    if actor.command_line is not None:
        details["command_line"] = actor.command_line
    if actor.source is not None:
        details["source"] = actor.source
    await repository.insert_event(
        session,
        AuditEvent(
            occurred_at=utcnow(),
            action=action,
            actor_user_id=actor.user_id,
            actor_client_id=actor.client_id,
            account_id=account_id,
            target_type=target[0],
            target_id=str(target[1]),
            ip=actor.ip[:45] if actor.ip else None,
            request_id=actor.request_id,
            details=details,
        ),
    )


async def list_events(
    session: AsyncSession, where: EventFilter, before_id: int | None = None, limit: int = 50
) -> Sequence[AuditEvent]:
    return await repository.list_events(session, where, before_id, limit)
