"""A revocation that races a refresh takes the token that refresh issues with it.

Revoking a family (reuse of a rotated refresh token, a replayed code, a sign-out
everywhere) is an UPDATE of the family's live rows. A rotation running at the same time
holds the row it rotates and inserts the next token; the revocation waits for that row,
and on PostgreSQL then updates the rows its statement saw when it began, which did not
include the new token. The new token lived on in a revoked family.
"""

from __future__ import annotations

import asyncio

import httpx

from identity.clock import utcnow
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.revocation import revoke_all_for_user
from tests.integration.oauth_helpers import (
    RegisteredClient,
    fresh_code,
    make_client,
    make_user,
    redeemed_code,
    refresh,
    signed_in_tokens,
)

FAMILIES = 6


async def _family_survivors(
    http: httpx.AsyncClient, app: RegisteredClient, answers: list[httpx.Response]
) -> list[str]:
    """The refresh tokens that racing refreshes handed out and that still refresh."""
    issued = [a.json()["refresh_token"] for a in answers if a.status_code == 200]
    survivors = []
    for token in issued:
        if (await refresh(http, app, token)).status_code == 200:
            survivors.append(token)
    return survivors


async def test_reuse_of_a_rotated_token_revokes_a_refresh_racing_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    pairs = []
    for _ in range(FAMILIES):
        _, first = await redeemed_code(client, runtime, app)
        second = (await refresh(client, app, first["refresh_token"])).json()
        pairs.append((first["refresh_token"], second["refresh_token"]))

    answers = await asyncio.gather(
        *(
            request
            for stolen, current in pairs
            for request in (refresh(client, app, current), refresh(client, app, stolen))
        )
    )

    assert all(a.status_code in (200, 400) for a in answers), [a.text for a in answers]
    assert await _family_survivors(client, app, answers) == []


async def test_a_replayed_code_revokes_a_refresh_racing_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    app = await make_client(runtime)
    families = [await redeemed_code(client, runtime, app) for _ in range(FAMILIES)]

    answers = await asyncio.gather(
        *(
            request
            for fresh, tokens in families
            for request in (refresh(client, app, tokens["refresh_token"]), fresh.redeem(client))
        )
    )

    assert all(a.status_code in (200, 400) for a in answers), [a.text for a in answers]
    assert await _family_survivors(client, app, answers) == []


async def test_signing_a_user_out_everywhere_revokes_refreshes_racing_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """What a password reset or change does to the user's refresh tokens."""
    app = await make_client(runtime)
    user = await make_user(runtime)
    tokens = []
    for _ in range(FAMILIES):
        fresh = await fresh_code(runtime, app, user=user)
        tokens.append((await fresh.redeem(client)).json()["refresh_token"])

    async def sign_out_everywhere() -> None:
        async with runtime.db.write_transaction() as session:
            await revoke_all_for_user(session, user.id, utcnow())

    *answers, _ = await asyncio.gather(
        *(refresh(client, app, token) for token in tokens), sign_out_everywhere()
    )

    assert await _family_survivors(client, app, answers) == []


async def test_signing_out_a_browser_revokes_refreshes_racing_it(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """What /logout does to the refresh tokens issued through the browser's session."""
    app = await make_client(runtime)
    user = await make_user(runtime)
    async with runtime.db.transaction() as session:
        browser = await sessions.establish(
            session, user_id=user.id, amr=["pwd"], now=utcnow(),
            lifetime=runtime.settings.session_lifetime,
            previous_token=None, ip=None, user_agent=None,
        )  # fmt: skip
    through_browser = {"user": user, "session_id": browser.session.id}
    tokens = [
        (await signed_in_tokens(client, runtime, app, **through_browser))["refresh_token"]
        for _ in range(FAMILIES)
    ]

    async def sign_out() -> None:
        async with runtime.db.write_transaction() as session:
            await sessions.end(session, browser.token, utcnow())

    *answers, _ = await asyncio.gather(
        *(refresh(client, app, token) for token in tokens), sign_out()
    )

    assert await _family_survivors(client, app, answers) == []
