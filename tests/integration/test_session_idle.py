"""A browser session ends once unused for IDENTITY_SESSION_IDLE, and lasts IDENTITY_SESSION_TTL
from its sign-in at most, however often it is used (Keycloak's SSO Session Idle and Max)."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from identity.clock import utcnow
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from tests.integration.page_helpers import SECURITY, sign_in_to_security_page
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"
SLACK = timedelta(seconds=30)  # the time the test itself takes


@pytest.fixture
def env(env: dict[str, str]) -> dict[str, str]:
    return env | {"IDENTITY_SESSION_TTL": "12h", "IDENTITY_SESSION_IDLE": "30m"}


@pytest.fixture
async def signed_in(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await new_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD)
    assert page.status_code == 200, page.text


async def _session(runtime: Runtime) -> BrowserSession:
    async with runtime.db.transaction() as session:
        found = await session.scalar(
            select(BrowserSession).where(BrowserSession.revoked_at.is_(None))
        )
    assert found is not None
    return found


async def _as_if(runtime: Runtime, *, signed_in: timedelta, used: timedelta) -> None:
    """Move the session back: signed in ``signed_in`` ago, last used ``used`` ago, with the
    expiry its last use gave it."""
    now = utcnow()
    async with runtime.db.transaction() as session:
        browser = await session.scalar(select(BrowserSession))
        assert browser is not None
        browser.created_at = browser.auth_time = now - signed_in
        browser.last_seen_at = now - used
        browser.expires_at = runtime.settings.session_lifetime.expiry(now - signed_in, now - used)


def _close(value: datetime, expected: datetime) -> bool:
    return abs(value - expected) < SLACK


async def test_a_new_session_lasts_the_idle_time_until_it_is_used(
    runtime: Runtime, signed_in: None
) -> None:
    browser = await _session(runtime)
    assert _close(browser.expires_at, utcnow() + timedelta(minutes=30))


async def test_using_the_session_moves_its_idle_expiry_on(
    client: httpx.AsyncClient, runtime: Runtime, signed_in: None
) -> None:
    await _as_if(runtime, signed_in=timedelta(hours=1), used=timedelta(minutes=29))

    assert (await client.get(SECURITY)).status_code == 200
    await runtime.background.drain()  # a use is recorded once the answer has left

    browser = await _session(runtime)
    assert _close(browser.last_seen_at, utcnow())
    assert _close(browser.expires_at, utcnow() + timedelta(minutes=30))


async def test_a_session_unused_for_the_idle_time_is_signed_out(
    client: httpx.AsyncClient, runtime: Runtime, signed_in: None
) -> None:
    await _as_if(runtime, signed_in=timedelta(hours=1), used=timedelta(minutes=31))

    answer = await client.get(SECURITY)

    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?flow=")


async def test_use_does_not_take_a_session_past_its_lifetime_from_sign_in(
    client: httpx.AsyncClient, runtime: Runtime, signed_in: None
) -> None:
    await _as_if(runtime, signed_in=timedelta(hours=11, minutes=50), used=timedelta(minutes=5))

    assert (await client.get(SECURITY)).status_code == 200
    await runtime.background.drain()  # a use is recorded once the answer has left

    browser = await _session(runtime)
    assert _close(browser.expires_at, browser.created_at + timedelta(hours=12))
    assert _close(browser.expires_at, utcnow() + timedelta(minutes=10))


async def test_uses_within_a_minute_write_nothing(
    client: httpx.AsyncClient, runtime: Runtime, signed_in: None
) -> None:
    await _as_if(runtime, signed_in=timedelta(minutes=5), used=timedelta(seconds=20))
    before = await _session(runtime)

    assert (await client.get(SECURITY)).status_code == 200
    await runtime.background.drain()  # a use is recorded once the answer has left

    after = await _session(runtime)
    assert (after.last_seen_at, after.expires_at) == (before.last_seen_at, before.expires_at)
