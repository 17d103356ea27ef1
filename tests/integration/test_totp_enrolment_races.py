"""Two-step set-up posted twice at once (a double click, two tabs): no 500, one set-up."""

from __future__ import annotations

import asyncio
import re

import httpx
import pyotp
from sqlalchemy import func, select

from identity.accounts.models import User
from identity.mfa.models import TotpSecret
from identity.runtime import Runtime
from tests.integration.page_helpers import SECURITY, post_form, sign_in_to_security_page
from tests.integration.recovery_helpers import PASSWORD, new_user

ANA = "ana@example.com"


def _secret(page: httpx.Response) -> str:
    match = re.search(r"data-totp-secret>([A-Z2-7]+)</code>", page.text)
    assert match, page.text
    return match.group(1)


async def _secrets(runtime: Runtime, user: User) -> int:
    async with runtime.db.transaction() as session:
        statement = select(func.count()).where(TotpSecret.user_id == user.id)
        return await session.scalar(statement) or 0


async def test_concurrent_set_ups_each_answer_and_one_is_kept(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    ana = await new_user(runtime, ANA, name="Ana")
    page = await sign_in_to_security_page(client, ANA, PASSWORD)

    answers = await asyncio.gather(*(post_form(client, page, f"{SECURITY}/totp") for _ in range(6)))

    assert [a.status_code for a in answers] == [200] * 6, [a.text[:300] for a in answers]
    assert await _secrets(runtime, ana) == 1
    # One of the secrets shown is the one kept: its code turns two-step verification on.
    confirmed = 0
    for answer in answers:
        code = pyotp.TOTP(_secret(answer)).now()
        done = await post_form(client, answer, f"{SECURITY}/totp/confirm", code=code)
        confirmed += done.status_code == 200
    assert confirmed == 1
