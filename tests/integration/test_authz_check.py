"""POST /api/v1/authz/check: batched decisions for services that prefer to ask."""

from __future__ import annotations

import json
import uuid

import httpx

from identity.accounts.service import disable_user
from identity.clock import utcnow
from identity.permissions import account_roles, effective, repository
from identity.permissions.catalogue import MAX_NAME
from identity.permissions.grants import RoleGrant
from identity.permissions.models import MembershipPermission, RolePermission
from identity.runtime import Runtime
from identity.web.api.schemas import MAX_CHECKS
from tests.integration.account_helpers import (
    SYSTEM,
    add_member,
    bearer,
    make_account,
    make_user,
    mint,
    register_service,
    service_headers,
    token_claims,
    user_headers,
)
from tests.integration.db_helpers import counting_statements

# A name policies/permissions.toml once held and no longer does.
RETIRED = "retired"


async def test_each_check_is_answered_in_order(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner, clerk, stranger = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, clerk, ["invoices"])
    asked = [
        (clerk, "invoices", True),
        (clerk, "tickets", False),
        (owner, "tickets", True),
        (owner, "no-such-permission", False),
        (stranger, "invoices", False),
    ]
    response = await client.post(
        "/api/v1/authz/check",
        json={
            "checks": [
                {"user_id": str(u.id), "account_id": str(account.id), "permission": p}
                for u, p, _ in asked
            ]
        },
        headers=await service_headers(runtime),
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"allowed": [expected for _, _, expected in asked]}


async def test_a_batch_costs_a_few_queries_not_one_per_check(runtime: Runtime) -> None:
    owners = [await make_user(runtime) for _ in range(5)]
    accounts = [await make_account(runtime, owner) for owner in owners]
    clerks = [await make_user(runtime) for _ in range(20)]
    for number, clerk in enumerate(clerks):
        await add_member(runtime, accounts[number % 5], clerk, ["tickets", "domains"])
    checks = [
        (user.id, account.id, permission)
        for user in [*owners, *clerks]
        for account in accounts
        for permission in ("tickets", "invoices", "billing:refunds")
    ]
    with counting_statements(runtime) as statements:
        async with runtime.db.transaction() as session:
            decisions = await effective.check_batch(session, checks, utcnow())
    assert len(checks) == 375
    # Owners: tickets and invoices in their own account; clerks: tickets in theirs.
    assert sum(decisions) == 5 * 2 + 20 * 1
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) <= 3


async def test_only_services_with_the_authz_scope_and_staff_may_ask(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    body = {
        "checks": [
            {"user_id": str(owner.id), "account_id": str(account.id), "permission": "tickets"}
        ]
    }
    as_user = await client.post(
        "/api/v1/authz/check", json=body, headers=await user_headers(runtime, owner)
    )
    await register_service(runtime)
    other_scope = bearer(
        await mint(runtime, sub="billing", client_id="billing", scope="identity:accounts")
    )
    as_plain_client = await client.post("/api/v1/authz/check", json=body, headers=other_scope)
    assert as_user.status_code == 403
    assert as_plain_client.status_code == 403
    assert 'error="insufficient_scope"' in as_plain_client.headers["www-authenticate"]


async def test_a_batch_is_bounded(client: httpx.AsyncClient, runtime: Runtime) -> None:
    check = {"user_id": str(uuid.uuid4()), "account_id": str(uuid.uuid4()), "permission": "x"}
    response = await client.post(
        "/api/v1/authz/check",
        json={"checks": [check] * (MAX_CHECKS + 1)},
        headers=await service_headers(runtime),
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"].endswith("checks")


async def test_a_full_batch_of_the_longest_names_is_answered(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # The limit itself must be usable: every pair and name different, each name as long as
    # one may be, written with the spaces Python's json.dumps puts in.
    owner, clerk = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    await add_member(runtime, account, clerk, ["invoices"])
    checks = [
        {
            "user_id": str(uuid.uuid4()),
            "account_id": str(uuid.uuid4()),
            "permission": f"billing:{number:04}".ljust(MAX_NAME, "x"),
        }
        for number in range(MAX_CHECKS - 2)
    ]
    checks += [
        {"user_id": str(u.id), "account_id": str(account.id), "permission": "invoices"}
        for u in (owner, clerk)
    ]
    response = await client.post(
        "/api/v1/authz/check",
        content=json.dumps({"checks": checks}),
        headers={**await service_headers(runtime), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] == [False] * (MAX_CHECKS - 2) + [True, True]


async def test_a_disabled_user_is_allowed_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Staff disabling a user is the strongest "stop" there is; a service that asks instead
    # of trusting the token must see it at once, owners and "all permissions" included.
    owner, clerk, helper = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, clerk, ["invoices"])
    await add_member(runtime, account, helper, all_permissions=True)
    async with runtime.db.transaction() as session:
        for user in (owner, clerk, helper):
            await disable_user(session, SYSTEM, user.id, "account takeover", utcnow())
    response = await client.post(
        "/api/v1/authz/check",
        json={
            "checks": [
                {"user_id": str(u.id), "account_id": str(account.id), "permission": "invoices"}
                for u in (owner, clerk, helper)
            ]
        },
        headers=await service_headers(runtime),
    )
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] == [False, False, False]


async def test_a_permission_taken_out_of_the_catalogue_is_held_by_nobody(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Grants outlive their permission's entry in policies/permissions.toml (nothing deletes
    # them when the file is edited). Owners stop holding a name that is gone; a member given
    # it directly or through a role must stop too, here and in their tokens alike.
    owner, clerk, crew = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, clerk, ["invoices"])
    async with runtime.db.transaction() as session:
        role = await account_roles.create_role(
            session,
            SYSTEM,
            account.id,
            name="Crew",
            permissions=["tickets"],
            catalogue=runtime.catalogue,
            now=utcnow(),
        )
    await add_member(runtime, account, crew, roles=[RoleGrant(role.role.id)])
    async with runtime.db.transaction() as session:
        # What a grant of `affiliates` and a role holding it are once the file drops it.
        membership = await repository.get_membership(session, account.id, clerk.id)
        assert membership is not None
        session.add(MembershipPermission(membership_id=membership.id, permission=RETIRED))
        session.add(RolePermission(role_id=role.role.id, permission=RETIRED))
    response = await client.post(
        "/api/v1/authz/check",
        json={
            "checks": [
                {"user_id": str(u.id), "account_id": str(account.id), "permission": p}
                for u, p in ((owner, RETIRED), (clerk, RETIRED), (crew, RETIRED), (crew, "tickets"))
            ]
        },
        headers=await service_headers(runtime),
    )
    assert response.status_code == 200, response.text
    assert response.json()["allowed"] == [False, False, False, True]
    async with runtime.db.transaction() as session:
        for user in (clerk, crew):
            claims = await token_claims(session, user.id, account.id, utcnow(), runtime.catalogue)
            assert RETIRED not in claims["permissions"]
            held = await effective.effective_permissions(
                session, user.id, account.id, utcnow(), runtime.catalogue
            )
            assert RETIRED not in held
