"""Failure throttles hold under concurrent bursts: a burst of guesses sent at once gets no
more checks than the same guesses sent one after another.

Each throttle used to ask "blocked?" before checking and count the failure after it, so
every request of a burst passed the question before the first failure was counted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import Any

import httpx
import pytest

from identity.app import create_app
from identity.clock import utcnow
from identity.errors import RateLimited
from identity.mfa.service import InvalidCode, SecondFactor
from identity.runtime import Runtime
from identity.settings import Settings
from tests.browser import (
    EMAIL,
    add_user,
    authorize_params,
    open_login,
    submit_login,
)
from tests.conftest import serving
from tests.integration.page_helpers import served_for_sign_in
from tests.integration.recovery_helpers import change_password_elsewhere, enrolled_user

BURST = 12
WRONG = "Wrong!Password1"

Started = tuple[httpx.AsyncClient, Runtime]


@pytest.fixture
def start(database: Settings) -> Callable[..., AbstractAsyncContextManager[Started]]:
    return functools.partial(served_for_sign_in, database)


async def _login_burst(http: httpx.AsyncClient, emails: list[str]) -> list[int]:
    """Open one login page per attempt, then submit them all at once."""
    pages = [await open_login(http, authorize_params(prompt="login")) for _ in emails]
    answers = await asyncio.gather(
        *(
            submit_login(http, page, email=email, password=WRONG)
            for page, email in zip(pages, emails, strict=True)
        )
    )
    return [answer.status_code for answer in answers]


async def test_a_burst_of_wrong_passwords_gets_no_more_checks_than_the_account_limit(
    start: Any,
) -> None:
    async with start(login_max_failures=3) as (http, _):
        statuses = await _login_burst(http, [EMAIL] * BURST)
        # 400: the password was checked and wrong; 429: refused unchecked.
        assert statuses.count(400) == 3, statuses
        assert statuses.count(429) == BURST - 3
        # The right password too, until the window ends.
        page = await open_login(http, authorize_params())
        assert (await submit_login(http, page)).status_code == 429


async def test_a_burst_over_many_accounts_gets_no_more_checks_than_the_address_limit(
    start: Any,
) -> None:
    async with start(login_max_failures_per_ip=4) as (http, _):
        emails = [f"{uuid.uuid4().hex[:8]}@example.com" for _ in range(BURST)]
        statuses = await _login_burst(http, emails)
        assert statuses.count(400) == 4, statuses
        assert statuses.count(429) == BURST - 4


async def test_a_right_password_does_not_use_up_the_address_limit(start: Any) -> None:
    async with start(login_max_failures_per_ip=2) as (http, _):
        for _ in range(3):
            page = await open_login(http, authorize_params(prompt="login"))
            assert (await submit_login(http, page)).status_code == 303
        statuses = await _login_burst(http, ["someone@example.com"] * 3)
        assert sorted(statuses) == [400, 400, 429]


async def test_a_burst_of_wrong_second_factor_codes_gets_no_more_checks_than_the_limit(
    database: Settings,
) -> None:
    app = create_app(dataclasses.replace(database, login_max_failures=3))
    async with serving(app) as _:
        runtime: Runtime = app.state.runtime
        mfa = SecondFactor.from_runtime(runtime)
        user, generator, _ = await enrolled_user(runtime)
        now = utcnow()
        live = {generator.at(now + timedelta(seconds=s)) for s in (-30, 0, 30)}

        async def verify(code: str) -> Any:
            async with runtime.db.transaction() as session:
                return await mfa.verify(session, user.id, code, utcnow())

        codes = [c for c in (f"{n:06d}" for n in range(BURST + 3)) if c not in live][:BURST]
        results = await asyncio.gather(*(verify(c) for c in codes), return_exceptions=True)
        checked = sum(isinstance(r, InvalidCode) for r in results)
        refused = sum(isinstance(r, RateLimited) for r in results)
        assert (checked, refused) == (3, BURST - 3), results


async def test_a_burst_of_wrong_current_passwords_gets_no_more_checks_than_the_limit(
    database: Settings,
) -> None:
    app = create_app(dataclasses.replace(database, login_max_failures=3))
    async with serving(app) as _:
        runtime: Runtime = app.state.runtime
        user = await add_user(runtime, "burst@example.com")

        changes = (
            change_password_elsewhere(runtime, user, WRONG, "An0ther!Secret#9")
            for _ in range(BURST)
        )
        results = await asyncio.gather(*changes, return_exceptions=True)
        refused = sum(isinstance(r, RateLimited) for r in results)
        assert refused == BURST - 3, results
