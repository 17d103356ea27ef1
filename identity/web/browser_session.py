"""The browser's sign-in: its session cookie, and the live session it names.

Every page and endpoint that asks who the browser is signed in as asks here, so reading a
session is a use of it (its idle expiry moves on) wherever it happens.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from identity.settings import Settings
from identity.web import cookies


def cookie_token(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    """The session token the browser's cookie holds, if any (not yet known to be live)."""
    return cookies.read(request.cookies, settings, cookies.SESSION)


async def live(
    session: AsyncSession, settings: Settings, token: str | None, now: datetime | None = None
) -> BrowserSession | None:
    """The live session of ``token``, if any; reading it counts as its use."""
    return await sessions.current(session, token, now or utcnow(), settings.session_lifetime)


async def signed_in(
    session: AsyncSession,
    request: Request[Any, Any, Any],
    settings: Settings,
    now: datetime | None = None,
) -> BrowserSession | None:
    """The live session the browser's cookie names, if any."""
    return await live(session, settings, cookie_token(request, settings), now)
