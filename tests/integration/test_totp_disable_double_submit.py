"""The form that turns two-step verification off, posted twice (a double click): both
answers lead to the security page saying it is off, and the post that found nothing left
to turn off counts no failed attempt."""

from __future__ import annotations

import asyncio

import httpx

from identity.accounts.models import User
from identity.runtime import Runtime
from identity.store.rate_limit import Limit
from tests.integration.page_helpers import (
    SECURITY,
    followed,
    notice,
    post_form,
    sign_in_to_security_page,
)
from tests.integration.recovery_helpers import PASSWORD, enrolled_user

ANA = "ana@example.com"


async def _failed_attempts_to_turn_off(runtime: Runtime, user: User) -> int:
    """The attempts counted against turning the factor off (a success clears them); the
    look counts one more, taken back from the answer."""
    verdict = await runtime.limiter.hit(Limit("mfa-disable-user", 1000, 60), str(user.id))
    return verdict.count - 1


async def _signed_in_with_two_step(
    client: httpx.AsyncClient, runtime: Runtime
) -> tuple[User, httpx.Response, list[str]]:
    user, generator, codes = await enrolled_user(runtime, ANA)
    page = await sign_in_to_security_page(client, ANA, PASSWORD, code=generator.now())
    return user, page, codes


async def test_a_second_post_after_the_first_turned_it_off_shows_the_same_notice(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, page, codes = await _signed_in_with_two_step(client, runtime)
    answers = [
        await post_form(client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code=code)
        for code in (codes[0], codes[0])
    ]
    for answer in answers:
        assert notice(await followed(client, answer)) == "Two-step verification is off."
    assert await _failed_attempts_to_turn_off(runtime, user) == 0


async def test_two_posts_at_once_both_show_it_is_off(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user, page, codes = await _signed_in_with_two_step(client, runtime)
    answers = await asyncio.gather(
        *(
            post_form(client, page, f"{SECURITY}/totp/disable", password=PASSWORD, code=codes[1])
            for _ in range(2)
        )
    )
    for answer in answers:
        assert notice(await followed(client, answer)) == "Two-step verification is off."
    assert await _failed_attempts_to_turn_off(runtime, user) == 0
