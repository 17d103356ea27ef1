"""Roles: templates from policies/roles.toml and from staff, and an account's own roles."""

from __future__ import annotations

import uuid

import httpx

from identity.permissions.service import RoleGrant
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    add_member,
    effective,
    make_account,
    make_user,
    staff_headers,
    user_headers,
)


async def _templates(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict]:
    response = await client.get("/api/v1/roles", headers=headers)
    assert response.status_code == 200, response.text
    return {role["key"] or role["name"]: role for role in response.json()}


async def test_file_templates_are_offered_with_english_and_spanish_names(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    user = await make_user(runtime)
    templates = await _templates(client, await user_headers(runtime, user))
    assert {"billing", "technical", "support"} <= set(templates)
    billing = templates["billing"]
    assert (billing["name"], billing["name_es"]) == ("Billing", "Facturación")
    assert set(billing["permissions"]) == {"invoices", "quotes", "orders", "emails"}


async def test_a_role_adds_its_permissions_to_the_members_direct_ones(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    billing = (await _templates(client, await user_headers(runtime, owner)))["billing"]
    await add_member(runtime, account, clerk, ["tickets"])
    response = await client.post(
        f"/api/v1/accounts/{account.id}/members/{clerk.id}/roles",
        json={"role_id": billing["id"]},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 201, response.text
    assert response.json()["roles"][0]["name"] == "Billing"
    assert await effective(runtime, clerk, account) == {
        "tickets",
        "invoices",
        "quotes",
        "orders",
        "emails",
    }


async def test_an_owner_defines_a_custom_role_for_their_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    created = await client.post(
        f"/api/v1/accounts/{account.id}/roles",
        json={"name": "Domain desk", "permissions": ["domains", "managedomains"]},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    role = created.json()
    assert role["account_id"] == str(account.id)
    await add_member(runtime, account, clerk, roles=[RoleGrant(uuid.UUID(role["id"]))])
    assert await effective(runtime, clerk, account) == {"domains", "managedomains"}
    changed = await client.patch(
        f"/api/v1/accounts/{account.id}/roles/{role['id']}",
        json={"permissions": ["domains"]},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text
    assert await effective(runtime, clerk, account) == {"domains"}
    deleted = await client.delete(
        f"/api/v1/accounts/{account.id}/roles/{role['id']}", headers=headers
    )
    assert deleted.status_code == 204
    assert await effective(runtime, clerk, account) == frozenset()


async def test_another_accounts_role_cannot_be_granted(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, rival, clerk = [await make_user(runtime) for _ in range(3)]
    account, other = await make_account(runtime, owner), await make_account(runtime, rival)
    foreign = await client.post(
        f"/api/v1/accounts/{other.id}/roles",
        json={"name": "Theirs", "permissions": ["invoices"]},
        headers=await user_headers(runtime, rival),
    )
    await add_member(runtime, account, clerk)
    response = await client.post(
        f"/api/v1/accounts/{account.id}/members/{clerk.id}/roles",
        json={"role_id": foreign.json()["id"]},
        headers=await user_headers(runtime, owner),
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "roles"


async def test_role_names_are_unique_within_an_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    url = f"/api/v1/accounts/{account.id}/roles"
    await client.post(url, json={"name": "Desk", "permissions": []}, headers=headers)
    again = await client.post(url, json={"name": "desk", "permissions": []}, headers=headers)
    assert again.status_code == 409
    assert again.json()["errors"][0]["field"] == "name"


async def test_staff_manage_templates_but_not_those_of_the_file(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    created = await client.post(
        "/api/v1/roles",
        json={"name": "Sales", "name_es": "Ventas", "permissions": ["orders", "quotes"]},
        headers=staff,
    )
    assert created.status_code == 201, created.text
    assert created.json()["account_id"] is None
    renamed = await client.patch(
        f"/api/v1/roles/{created.json()['id']}", json={"name": "Sales desk"}, headers=staff
    )
    assert renamed.json()["name"] == "Sales desk"
    billing = (await _templates(client, staff))["billing"]
    refused = await client.patch(
        f"/api/v1/roles/{billing['id']}", json={"permissions": []}, headers=staff
    )
    assert refused.status_code == 409
    assert "roles.toml" in refused.json()["detail"]


async def test_a_template_is_not_reachable_as_an_account_role(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    billing = (await _templates(client, headers))["billing"]
    response = await client.delete(
        f"/api/v1/accounts/{account.id}/roles/{billing['id']}", headers=headers
    )
    assert response.status_code == 404
