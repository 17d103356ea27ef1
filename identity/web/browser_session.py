"""The browser's sign-in: its session cookie, and the live session it names.

Every page and endpoint that asks who the browser is signed in as asks here, so reading a
session is a use of it (its idle expiry moves on) wherever it happens.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from identity.settings import Settings
from identity.web import cookies


def cookie_token(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    """The session token the browser's cookie holds, if any (not yet known to be live)."""
    return cookies.read(request.cookies, settings, cookies.SESSION)


async def live(
    session: AsyncSession, runtime: Runtime, token: str | None, now: datetime | None = None
) -> BrowserSession | None:
    """The live session of ``token``, if any; reading it counts as its use, recorded once
    the answer has left (``sessions.record_use``)."""
    now = now or utcnow()
    found = await sessions.current(session, token, now)
    if found is not None and sessions.use_to_record(found, now):
        runtime.background.start(
            _record_use(runtime, found.id, found.created_at, now), name="session-use"
        )
    return found


async def _record_use(
    runtime: Runtime, session_id: uuid.UUID, created_at: datetime, now: datetime
) -> None:
    async with runtime.db.write_transaction() as session:
        lifetime = runtime.settings.session_lifetime
        await sessions.record_use(session, session_id, created_at, now, lifetime)


async def signed_in(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    runtime: Runtime,
    now: datetime | None = None,
) -> BrowserSession | None:
    """The live session the browser's cookie names, if any."""
    return await live(session, runtime, cookie_token(request, runtime.settings), now)
