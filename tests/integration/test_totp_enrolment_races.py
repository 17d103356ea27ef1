"""Two-step set-up posted twice at once (a double click, two tabs): no 500, one set-up."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mfa import repository
from identity.mfa.models import TotpSecret
from identity.mfa.service import InvalidCode, SecondFactor
from identity.runtime import Runtime
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    post_form,
    sign_in_to_security_page,
    totp_secret,
)
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"


async def _secrets(runtime: Runtime, user: User) -> int:
    async with runtime.db.transaction() as session:
        statement = select(func.count()).where(TotpSecret.user_id == user.id)
        return await session.scalar(statement) or 0


async def test_concurrent_set_ups_each_answer_and_one_is_kept(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA, name="Ana")
    page = await sign_in_to_security_page(client, ANA, PASSWORD)

    # As many as the password throttle lets through at once: it counts checks in flight.
    tabs = runtime.settings.login_max_failures
    answers = await asyncio.gather(
        *(
            post_form(client, page, f"{SECURITY}/totp", current_password=PASSWORD)
            for _ in range(tabs)
        )
    )

    assert [a.status_code for a in answers] == [303] * tabs, [a.text[:300] for a in answers]
    assert await _secrets(runtime, ana) == 1
    # Each tab shows the secret it made, or (already replaced by another tab's) none; the
    # one kept is among those shown, and its code turns two-step verification on.
    shown = [await client.get(answer.headers["location"]) for answer in answers]
    set_ups = [page for page in shown if "data-totp-secret" in page.text]
    assert set_ups
    for replaced in (page for page in shown if page not in set_ups):
        assert alert(replaced) == "This set-up has expired. Start again."
    confirmed = 0
    for set_up in set_ups:
        code = pyotp.TOTP(totp_secret(set_up)).now()
        done = await post_form(client, set_up, f"{SECURITY}/totp/confirm", code=code)
        confirmed += done.status_code == 303
    assert confirmed == 1


async def test_a_set_up_restarted_while_the_first_is_confirmed_is_not_turned_on(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second set-up (another tab) replaces the pending secret after the confirmation has
    checked the first one's code and before it turns it on. The confirmation must not turn
    on the replacement, whose secret no code has proved (the app holds the first one)."""
    ana = await new_user(runtime, ANA)
    mfa = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        first = await mfa.begin_enrolment(session, ana, utcnow())
    real_confirm = repository.confirm

    async def confirm_after_a_restart(*args: Any, **kwargs: Any) -> bool:
        async with runtime.db.transaction() as other:
            await mfa.begin_enrolment(other, ana, utcnow())
        return await real_confirm(*args, **kwargs)

    monkeypatch.setattr(repository, "confirm", confirm_after_a_restart)
    with pytest.raises(InvalidCode):
        async with runtime.db.transaction() as session:
            await mfa.confirm_enrolment(
                session, Actor(ana.id), ana.id, pyotp.TOTP(first.secret).now(), utcnow()
            )
    async with runtime.db.transaction() as session:
        assert not await mfa.is_enrolled(session, ana.id)
