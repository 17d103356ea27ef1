"""Two browsers of one user pressing "sign out everywhere else" at once (each fears the other
is a thief's): one of them stays signed in, and neither is answered with an error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from litestar import Litestar
from sqlalchemy import update

from identity.clock import utcnow
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from tests.integration.page_helpers import (
    SECURITY,
    post_form,
    session_live,
    sign_in_to_security_page,
)
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"


@pytest.fixture
async def browsers(
    app: Litestar, client: httpx.AsyncClient, runtime: Runtime
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    await new_user(runtime, ANA)
    transport = httpx.ASGITransport(app=app, client=("198.51.100.7", 50001))
    async with httpx.AsyncClient(transport=transport, base_url=str(client.base_url)) as other:
        yield client, other


async def _last_used(runtime: Runtime, ago: timedelta) -> None:
    """Every session last used ``ago``: a use older than a minute is recorded by the next one."""
    async with runtime.db.transaction() as session:
        await session.execute(update(BrowserSession).values(last_seen_at=utcnow() - ago))


@pytest.mark.parametrize("last_used", [timedelta(minutes=5), timedelta(seconds=0)])
async def test_two_browsers_signing_each_other_out_at_once_leave_one_signed_in(
    browsers: tuple[httpx.AsyncClient, httpx.AsyncClient], runtime: Runtime, last_used: timedelta
) -> None:
    """On PostgreSQL each post held its own session's row (the use it recorded, or its new
    token) and waited for the other's: a deadlock, and one of them was answered 503. Had
    both gone through, each would have ended the other's session: nobody signed in."""
    pages = [await sign_in_to_security_page(browser, ANA, PASSWORD) for browser in browsers]
    await _last_used(runtime, last_used)

    answers = await asyncio.gather(
        *(
            post_form(browser, page, f"{SECURITY}/sessions")
            for browser, page in zip(browsers, pages, strict=True)
        )
    )

    assert [answer.status_code for answer in answers] == [303, 303], [a.text for a in answers]
    live = [await session_live(runtime, b.cookies["identity_session"]) for b in browsers]
    assert sorted(live) == [False, True]
