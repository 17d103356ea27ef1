"""Accounts, their members and what each member may do, through the service and the API."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select

from identity.accounts.service import disable_user
from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.errors import Forbidden
from identity.permissions import members, registration
from identity.permissions.grants import Grant
from identity.permissions.models import Permission
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    CLIENT_ID,
    SYSTEM,
    account_with_member,
    add_member,
    effective,
    give_refresh_token,
    make_account,
    make_user,
    refresh_token_revoked,
    staff_headers,
    token_claims,
    told_permissions_changed,
    user_headers,
)

WHMCS = {
    "profile",
    "contacts",
    "products",
    "manageproducts",
    "productsso",
    "domains",
    "managedomains",
    "invoices",
    "quotes",
    "tickets",
    "affiliates",
    "emails",
    "orders",
    "users",
}


async def test_the_owner_holds_the_whole_catalogue(runtime: Runtime) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    assert await effective(runtime, owner, account) == WHMCS


async def test_a_member_holds_only_what_was_granted(runtime: Runtime) -> None:
    _, clerk, account = await account_with_member(runtime, ["invoices", "tickets"])
    assert await effective(runtime, clerk, account) == {"invoices", "tickets"}


async def test_a_non_member_holds_nothing(runtime: Runtime) -> None:
    owner, stranger = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    assert await effective(runtime, stranger, account) == frozenset()


async def test_all_permissions_covers_a_permission_registered_later(runtime: Runtime) -> None:
    owner, deputy, account = await account_with_member(runtime, all_permissions=True)
    async with runtime.db.transaction() as session:
        await registration.register_permission(
            session,
            SYSTEM,
            Permission(name="billing:refunds", label_en="Refunds", label_es="Reembolsos"),
            runtime.catalogue,
        )
    assert "billing:refunds" in await effective(runtime, deputy, account)
    assert "billing:refunds" in await effective(runtime, owner, account)


async def test_token_claims_name_the_account_and_the_effective_permissions(
    runtime: Runtime,
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets", "invoices"])
    async with runtime.db.transaction() as session:
        claims = await token_claims(session, clerk.id, account.id, utcnow())
        owner_claims = await token_claims(session, owner.id, account.id, utcnow())
    assert claims == {
        "account_id": str(account.id),
        "permissions": ["invoices", "tickets"],
        "account_owner": False,
    }
    assert owner_claims["account_owner"] is True
    assert set(owner_claims["permissions"]) == WHMCS


async def test_token_claims_refuse_a_user_who_is_not_a_member(runtime: Runtime) -> None:
    owner, stranger = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    async with runtime.db.transaction() as session:
        with pytest.raises(Forbidden):
            await token_claims(session, stranger.id, account.id, utcnow())


async def test_staff_create_an_account_whose_owner_is_the_named_user(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    response = await client.post(
        "/api/v1/accounts",
        json={"name": "Acme Hosting", "owner_user_id": str(owner.id)},
        headers=await staff_headers(runtime),
    )
    assert response.status_code == 201, response.text
    account_id = response.json()["id"]
    mine = await client.get("/api/v1/me/accounts", headers=await user_headers(runtime, owner))
    assert mine.json() == [
        {"id": account_id, "name": "Acme Hosting", "owner": True, "permissions": sorted(WHMCS)}
    ]


async def test_the_members_list_and_a_member_say_whether_staff_disabled_them(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A disabled member holds nothing in tokens or authz/check: an owner reading the list
    # must not take them for one who can act.
    owner, clerk, account = await account_with_member(runtime, ["tickets"])
    async with runtime.db.transaction() as session:
        await disable_user(session, SYSTEM, clerk.id, "Left the company", utcnow())
    headers = await user_headers(runtime, owner)
    base = f"/api/v1/accounts/{account.id}/members"

    listed = await client.get(base, headers=headers)
    one = await client.get(f"{base}/{clerk.id}", headers=headers)

    assert listed.status_code == 200, listed.text
    assert {m["user_id"]: m.get("disabled") for m in listed.json()} == {
        str(owner.id): False,
        str(clerk.id): True,
    }
    assert one.status_code == 200, one.text
    assert one.json().get("disabled") is True


async def test_owner_replaces_a_members_permissions_and_roles(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets"])
    headers = await user_headers(runtime, owner)
    response = await client.patch(
        f"/api/v1/accounts/{account.id}/members/{clerk.id}",
        json={"permissions": [{"name": "invoices"}, {"name": "quotes"}]},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [p["name"] for p in body["permissions"]] == ["invoices", "quotes"]
    assert body["effective_permissions"] == ["invoices", "quotes"]
    assert await effective(runtime, clerk, account) == {"invoices", "quotes"}


async def test_a_permission_or_role_listed_twice_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Stored, the last entry won; the audit log's "new" listed both, unlike what was kept
    # (and unlike the next change's "old"), and the caller could not tell which one stood.
    owner, clerk, newcomer = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, clerk, ["tickets"])
    staff = await staff_headers(runtime)
    role = await client.post(
        f"/api/v1/accounts/{account.id}/roles", json={"name": "Desk"}, headers=staff
    )
    later = "2030-01-01T00:00:00Z"
    permissions = [{"name": "invoices"}, {"name": "invoices", "expires_at": later}]
    roles = [{"role_id": role.json()["id"], "expires_at": later}, {"role_id": role.json()["id"]}]
    base = f"/api/v1/accounts/{account.id}"
    for method, path, body in (
        ("PATCH", f"{base}/members/{clerk.id}", {"permissions": permissions}),
        ("PATCH", f"{base}/members/{clerk.id}", {"roles": roles}),
        ("POST", f"{base}/members", {"user_id": str(newcomer.id), "permissions": permissions}),
        ("POST", f"{base}/members", {"user_id": str(newcomer.id), "roles": roles}),
        ("POST", f"{base}/invitations", {"email": "new@example.com", "permissions": permissions}),
        ("POST", f"{base}/invitations", {"email": "new@example.com", "roles": roles}),
    ):
        response = await client.request(method, path, json=body, headers=staff)
        assert response.status_code == 422, (path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        (field,) = body.keys() - {"user_id", "email"}
        assert [e["field"] for e in response.json()["errors"]] == [field]
    assert await effective(runtime, clerk, account) == {"tickets"}


async def test_removing_a_member_takes_their_rights_and_refresh_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets"])
    token_id = await give_refresh_token(runtime, clerk, account)
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{clerk.id}",
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 204, response.text
    assert await effective(runtime, clerk, account) == frozenset()
    assert await refresh_token_revoked(runtime, token_id)


async def test_a_plain_member_leaves_on_their_own_and_the_account_is_then_not_found(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, clerk, account = await account_with_member(runtime, ["tickets"])
    token_id = await give_refresh_token(runtime, clerk, account)
    headers = await user_headers(runtime, clerk)
    member = f"/api/v1/accounts/{account.id}/members/{clerk.id}"

    left = await client.delete(member, headers=headers)

    assert left.status_code == 204, left.text
    assert await effective(runtime, clerk, account) == frozenset()
    assert await refresh_token_revoked(runtime, token_id)
    async with runtime.db.transaction() as session:
        assert await members.left_on_their_own(session, account.id, clerk.id)
    read = await client.get(f"/api/v1/accounts/{account.id}", headers=headers)
    again = await client.delete(member, headers=headers)
    assert (read.status_code, again.status_code) == (404, 404)


async def test_a_plain_member_cannot_remove_another_member(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets"])
    colleague = await make_user(runtime)
    await add_member(runtime, account, colleague, ["tickets"])
    headers = await user_headers(runtime, clerk)
    members_path = f"/api/v1/accounts/{account.id}/members"

    for other in (colleague, owner):
        response = await client.delete(f"{members_path}/{other.id}", headers=headers)
        assert response.status_code == 403, response.text
    assert await effective(runtime, colleague, account) == {"tickets"}


async def test_the_last_owner_cannot_leave(client: httpx.AsyncClient, runtime: Runtime) -> None:
    owner, _, account = await account_with_member(runtime)

    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{owner.id}",
        headers=await user_headers(runtime, owner),
    )

    assert response.status_code == 409, response.text
    assert response.json()["reason"] == "last_owner"
    async with runtime.db.transaction() as session:
        assert (await members.membership_of(session, account.id, owner.id)).is_owner


async def test_narrowing_permissions_revokes_refresh_tokens_for_the_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets", "invoices"])
    token_id = await give_refresh_token(runtime, clerk, account)
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{clerk.id}/permissions/invoices",
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 204, response.text
    assert await refresh_token_revoked(runtime, token_id)
    assert await effective(runtime, clerk, account) == {"tickets"}


async def test_owner_hands_ownership_over_to_a_member(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, heir, account = await account_with_member(runtime)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/ownership-transfer",
        json={"to_user_id": str(heir.id)},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 204, response.text
    async with runtime.db.transaction() as session:
        old = await members.membership_of(session, account.id, owner.id)
        new = await members.membership_of(session, account.id, heir.id)
    assert (old.is_owner, new.is_owner) == (False, True)


@pytest.mark.parametrize("heir", ["self", "non-member"])
async def test_handing_ownership_to_no_other_member_names_to_user_id(
    client: httpx.AsyncClient, runtime: Runtime, heir: str
) -> None:
    owner, _, account = await account_with_member(runtime)
    to_user = owner if heir == "self" else await make_user(runtime)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/ownership-transfer",
        json={"to_user_id": str(to_user.id)},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 422, response.text
    assert [e["field"] for e in response.json()["errors"]] == ["to_user_id"]
    async with runtime.db.transaction() as session:
        assert (await members.membership_of(session, account.id, owner.id)).is_owner


async def test_a_manager_cannot_grant_all_permissions_nor_touch_an_owner(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, manager, clerk = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, manager, ["users", "tickets"])
    await add_member(runtime, account, clerk)
    headers = await user_headers(runtime, manager)
    members = f"/api/v1/accounts/{account.id}/members"
    escalate = await client.patch(
        f"{members}/{manager.id}", json={"all_permissions": True}, headers=headers
    )
    remove_owner = await client.delete(f"{members}/{owner.id}", headers=headers)
    grant_clerk = await client.post(
        f"{members}/{clerk.id}/permissions", json={"name": "tickets"}, headers=headers
    )
    assert (escalate.status_code, remove_owner.status_code) == (403, 403)
    assert grant_clerk.status_code == 201, grant_clerk.text
    assert await effective(runtime, clerk, account) == {"tickets"}


async def test_a_manager_may_send_back_all_permissions_a_member_holds_already(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # As any grant a member has: a client that reads the member, changes the rest and sends
    # it all back is not granting "all permissions", so it is not refused for it.
    owner, manager, deputy = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, manager, ["users", "tickets"])
    await add_member(runtime, account, deputy, all_permissions=True)
    headers = await user_headers(runtime, manager)
    member = f"/api/v1/accounts/{account.id}/members/{deputy.id}"

    edited = await client.patch(
        member,
        json={"all_permissions": True, "permissions": [{"name": "tickets"}]},
        headers=headers,
    )

    assert edited.status_code == 200, edited.text
    assert edited.json()["all_permissions"] is True
    assert [g["name"] for g in edited.json()["permissions"]] == ["tickets"]


async def test_the_access_token_client_is_the_audit_actors_client(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    await client.patch(
        f"/api/v1/accounts/{account.id}",
        json={"name": "Renamed"},
        headers=await user_headers(runtime, owner),
    )
    page = await client.get(
        f"/api/v1/accounts/{account.id}/audit", headers=await user_headers(runtime, owner)
    )
    renamed = [e for e in page.json()["events"] if e["action"] == "account.renamed"]
    assert renamed[0]["actor_client_id"] == CLIENT_ID
    assert renamed[0]["actor_user_id"] == str(owner.id)


async def test_renames_at_once_each_record_the_name_before_them(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner, "Acme")
    headers = await staff_headers(runtime)
    url = f"/api/v1/accounts/{account.id}"
    # Open the pool's connections first, or opening them would space the renames out.
    await asyncio.gather(*(client.get(url, headers=headers) for _ in range(5)))

    responses = await asyncio.gather(
        *(client.patch(url, json={"name": f"Acme {i}"}, headers=headers) for i in range(5))
    )

    assert [r.status_code for r in responses] == [200] * 5
    async with runtime.db.transaction() as session:
        renames = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "account.renamed")
                .order_by(AuditEvent.id)
            )
        )
    # Each rename replaced the name the one before it stored, and the last one's is kept.
    names = ["Acme", *(event.details["new"]["name"] for event in renames)]
    assert [event.details["old"]["name"] for event in renames] == names[:-1]
    assert (await client.get(url, headers=headers)).json()["name"] == names[-1]


async def _record_counts(runtime: Runtime) -> tuple[int, int]:
    """How many audit events and webhook events there are."""
    async with runtime.db.transaction() as session:
        events = len((await session.scalars(select(AuditEvent))).all())
    return events, len(await told_permissions_changed(runtime))


async def test_sending_a_members_grants_back_unchanged_records_and_tells_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """The Users page saves the whole form: a save with nothing changed was recorded as
    ``member.grants_changed`` with equal old and new values, and every consuming service was
    told the member's permissions had changed, as a second disable records nothing."""
    until = "2090-01-31T09:00:00+00:00"
    owner, member, account = await account_with_member(
        runtime, [Grant("tickets", datetime.fromisoformat(until)), "invoices"]
    )
    headers = await user_headers(runtime, owner)
    base = f"/api/v1/accounts/{account.id}"
    url = f"{base}/members/{member.id}"
    role = (await client.post(f"{base}/roles", json={"name": "Desk"}, headers=headers)).json()
    given = await client.post(f"{url}/roles", json={"role_id": role["id"]}, headers=headers)
    assert given.status_code == 201, given.text
    before = await _record_counts(runtime)

    same = {
        "permissions": [{"name": "invoices"}, {"name": "tickets", "expires_at": until}],
        "roles": [{"role_id": role["id"]}],
        "all_permissions": False,
    }
    response = await client.patch(url, json=same, headers=headers)
    assert response.status_code == 200, response.text
    for tail, body in (
        ("permissions", {"name": "tickets", "expires_at": until}),
        ("roles", {"role_id": role["id"]}),
    ):
        again = await client.post(f"{url}/{tail}", json=body, headers=headers)
        assert again.status_code == 201, again.text

    assert await _record_counts(runtime) == before
    assert {p["name"] for p in response.json()["permissions"]} == {"tickets", "invoices"}
    assert [r["role_id"] for r in response.json()["roles"]] == [role["id"]]
