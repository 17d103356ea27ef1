"""One member, one moment, three answers: POST /api/v1/authz/check, the access token's
``permissions`` as the resource kit reads them (``permits``), and the kit's live
introspection. A service may rely on any of them, so they must agree, for owners, "all
permissions" members, grants that end or have just ended, and users disabled by staff."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from sqlalchemy import update

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.clock import utcnow
from identity.permissions import account_roles, registration
from identity.permissions.grants import Grant, RoleGrant
from identity.permissions.models import MembershipPermission, MembershipRole, Permission
from identity.resource import ResourceServer, ResourceServerConfig, permits
from identity.resource.decisions import Introspector
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    make_account,
    make_user,
    service_headers,
)
from tests.integration.oauth_helpers import RegisteredClient, make_client, signed_in_tokens

ISSUER = "http://testserver.local"
ASKED = ("invoices", "tickets", "domains", "users", "billing:refunds", "billing:unknown")


async def _checked(
    http: httpx.AsyncClient, runtime: Runtime, users: Sequence[User], account_id: uuid.UUID
) -> dict[uuid.UUID, set[str]]:
    """What /authz/check allows each user, of ``ASKED``."""
    response = await http.post(
        "/api/v1/authz/check",
        json={
            "checks": [
                {"user_id": str(u.id), "account_id": str(account_id), "permission": p}
                for u in users
                for p in ASKED
            ]
        },
        headers=await service_headers(runtime),
    )
    assert response.status_code == 200, response.text
    answers = iter(response.json()["allowed"])
    return {u.id: {p for p in ASKED if next(answers)} for u in users}


@asynccontextmanager
async def _kit(
    http: httpx.AsyncClient, runtime: Runtime, app: RegisteredClient
) -> AsyncIterator[tuple[ResourceServer, Introspector]]:
    caller = await make_client(runtime, grant_types=["client_credentials"], redirect_uris=[])
    config = ResourceServerConfig(ISSUER, audience=app.client_id)
    async with ResourceServer(config, http=http) as server:
        yield server, server.introspector(caller.client_id, caller.secret or "")


async def test_check_token_and_introspection_agree_for_every_kind_of_member(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    async with runtime.db.transaction() as session:
        await registration.register_permission(
            session,
            SYSTEM,
            Permission(name="billing:refunds", label_en="Refunds", label_es="Reembolsos"),
            runtime.catalogue,
        )
        crew = await account_roles.create_role(
            session,
            SYSTEM,
            None,
            name="Crew",
            permissions=["domains", "users"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    owner, helper, clerk, lapsed = members = [await make_user(runtime) for _ in range(4)]
    account = await make_account(runtime, owner)
    soon, later = utcnow() + timedelta(hours=1), utcnow() + timedelta(hours=2)
    await add_member(runtime, account, helper, all_permissions=True)
    await add_member(
        runtime,
        account,
        clerk,
        ["invoices", "billing:refunds", Grant("tickets", later)],
        roles=[RoleGrant(crew.role.id, later)],
    )
    await add_member(
        runtime,
        account,
        lapsed,
        ["invoices", Grant("tickets", soon)],
        roles=[RoleGrant(crew.role.id, soon)],
    )
    async with runtime.db.transaction() as session:
        # ``lapsed``'s "tickets" and role ended a second ago.
        for table in (MembershipPermission, MembershipRole):
            await session.execute(
                update(table)
                .where(table.expires_at == soon)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
    app = await make_client(runtime)
    raw = {
        m.id: (await signed_in_tokens(client, runtime, app, user=m, account_id=account.id))[
            "access_token"
        ]
        for m in members
    }

    checked = await _checked(client, runtime, members, account.id)
    async with _kit(client, runtime, app) as (server, introspector):
        for m in members:
            token = await server.validate(raw[m.id])
            in_token = {p for p in ASKED if permits(token, p, account.id)}
            live = {p for p in ASKED if await introspector.permits(raw[m.id], p, account.id)}
            assert checked[m.id] == in_token == live, m.email
    everything = set(ASKED) - {"billing:unknown"}
    assert checked[owner.id] == checked[helper.id] == everything
    assert checked[clerk.id] == everything
    assert checked[lapsed.id] == {"invoices"}

    # Disabled by staff: nothing, whatever the token issued before says (it keeps its claims
    # until it expires; the live answers do not).
    async with runtime.db.transaction() as session:
        for user in (owner, clerk):
            await disable_user(session, SYSTEM, user.id, "account takeover", utcnow())
    checked = await _checked(client, runtime, [owner, clerk], account.id)
    assert checked == {owner.id: set(), clerk.id: set()}
    async with _kit(client, runtime, app) as (_, introspector):
        for user in (owner, clerk):
            for p in ASKED:
                assert not await introspector.permits(raw[user.id], p, account.id)
