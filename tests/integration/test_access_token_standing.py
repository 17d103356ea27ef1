"""One answer to "does this access token still stand?" at the three places that ask it:
/userinfo, introspection and the management API's bearer check (README, "Access tokens").

Each change below is made straight in the database, with no revocation recorded, so that
it is the live rule each endpoint applies that decides, not a deny-list entry written by the
service that would otherwise make the change.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from sqlalchemy import delete, update

from identity.accounts.models import User
from identity.clients.models import OAuthClient
from identity.oauth.scopes import SCOPE_ACCOUNTS
from identity.permissions.models import Account, Membership
from identity.runtime import Runtime
from tests.integration.account_helpers import account_with_member, bearer, mint
from tests.integration.oauth_helpers import RegisteredClient, make_client, signed_in_tokens


@dataclass(frozen=True)
class Issued:
    app: RegisteredClient
    # A confidential client of its own, that still introspects once ``app`` is gone.
    introspector: RegisteredClient
    member: User
    account: Account
    token: str


async def _issued(http: httpx.AsyncClient, runtime: Runtime) -> Issued:
    """A member's token for their account, good at all three endpoints."""
    _, member, account = await account_with_member(runtime, ["invoices"])
    app = await make_client(runtime, scope=f"openid profile {SCOPE_ACCOUNTS}")
    tokens = await signed_in_tokens(
        http,
        runtime,
        app,
        user=member,
        account_id=account.id,
        scope=f"openid profile {SCOPE_ACCOUNTS}",
    )
    return Issued(app, await make_client(runtime), member, account, tokens["access_token"])


async def _verdicts(http: httpx.AsyncClient, issued: Issued) -> dict[str, int | bool]:
    userinfo = await http.get("/userinfo", headers=bearer(issued.token))
    api = await http.get("/api/v1/me/accounts", headers=bearer(issued.token))
    introspected = await http.post(
        "/introspect", data={"token": issued.token}, headers=issued.introspector.basic
    )
    assert introspected.status_code == 200, introspected.text
    return {
        "userinfo": userinfo.status_code,
        "api": api.status_code,
        "introspection": introspected.json()["active"],
    }


Change = Callable[[httpx.AsyncClient, Runtime, Issued], Awaitable[None]]


async def _nothing(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    return None


async def _revoked(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    response = await http.post("/revoke", data={"token": issued.token}, headers=issued.app.basic)
    assert response.status_code == 200, response.text


async def _client_disabled(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == issued.app.client_id)
            .values(disabled=True)
        )
    runtime.clients.forget(issued.app.client_id)


async def _client_deleted(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            delete(OAuthClient).where(OAuthClient.client_id == issued.app.client_id)
        )
    runtime.clients.forget(issued.app.client_id)


async def _user_disabled(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(update(User).where(User.id == issued.member.id).values(disabled=True))


async def _user_deleted(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(delete(User).where(User.id == issued.member.id))


async def _membership_deleted(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(
            delete(Membership).where(
                Membership.account_id == issued.account.id,
                Membership.user_id == issued.member.id,
            )
        )


async def _account_deleted(http: httpx.AsyncClient, runtime: Runtime, issued: Issued) -> None:
    async with runtime.db.transaction() as session:
        await session.execute(delete(Account).where(Account.id == issued.account.id))


@pytest.mark.parametrize(
    ("change", "stands"),
    [
        (_nothing, True),
        (_revoked, False),
        (_client_disabled, False),
        (_client_deleted, False),
        (_user_disabled, False),
        (_user_deleted, False),
        (_membership_deleted, False),
        (_account_deleted, False),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
async def test_the_three_endpoints_agree_whether_a_token_stands(
    client: httpx.AsyncClient, runtime: Runtime, change: Change, stands: bool
) -> None:
    issued = await _issued(client, runtime)
    await change(client, runtime, issued)

    verdicts = await _verdicts(client, issued)

    expected = {"userinfo": 200, "api": 200} if stands else {"userinfo": 401, "api": 401}
    assert verdicts == expected | {"introspection": stands}


async def test_a_scope_taken_from_the_client_is_gone_at_all_three(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    issued = await _issued(client, runtime)
    async with runtime.db.transaction() as session:
        await session.execute(
            update(OAuthClient)
            .where(OAuthClient.client_id == issued.app.client_id)
            .values(scope="openid profile")
        )
    runtime.clients.forget(issued.app.client_id)

    verdicts = await _verdicts(client, issued)
    introspected = await client.post(
        "/introspect", data={"token": issued.token}, headers=issued.introspector.basic
    )

    assert verdicts == {"userinfo": 200, "api": 403, "introspection": True}
    assert introspected.json()["scope"] == "openid profile"


@pytest.mark.parametrize(
    "malformed",
    [
        {"account_id": "not-a-uuid"},
        {"account_id": 7},
        {"permissions": 7},
        {"permissions": [7]},
        {"account_owner": "yes"},
        {"scope": ["openid"]},
        {"sub": 7},
    ],
    ids=lambda value: "-".join(f"{k}={v!r}" for k, v in value.items()),
)
async def test_a_token_of_ours_carrying_claims_we_never_issue_stands_nowhere(
    client: httpx.AsyncClient, runtime: Runtime, malformed: dict[str, Any]
) -> None:
    """Signed with our key, yet shaped as no token we issue (a key that leaked into another
    issuer's hands, or one of our bugs): each endpoint refuses it as it refuses any token it
    cannot read, never with an error of its own (a non-UUID account was a 500)."""
    issued = await _issued(client, runtime)
    extra = {"account_id": str(issued.account.id), "permissions": ["invoices"]} | malformed
    token = await mint(
        runtime,
        sub=str(issued.member.id),
        scope=f"openid profile {SCOPE_ACCOUNTS}",
        client_id=issued.app.client_id,
        extra=extra,
    )

    verdicts = await _verdicts(client, replace(issued, token=token))

    assert verdicts == {"userinfo": 401, "api": 401, "introspection": False}
