"""Roles: templates from policies/roles.toml and from staff, and an account's own roles."""

from __future__ import annotations

import uuid
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import update

from identity.accounts.models import User
from identity.clock import utcnow
from identity.permissions.grants import RoleGrant
from identity.permissions.models import Account, MembershipRole, RolePermission
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    add_member,
    effective,
    give_refresh_token,
    make_account,
    make_user,
    problem_fields,
    refresh_token_revoked,
    staff_headers,
    told_permissions_changed,
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
    assert response.json()["errors"][0]["field"] == "role_id"


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


async def test_a_permission_listed_twice_in_a_role_is_refused_as_in_a_grant(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Stored once, silently, while a member's grants and an invitation's refuse the same list:
    # the caller could not tell whether the role held what they meant.
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    staff = await staff_headers(runtime)
    twice = ["tickets", "invoices", "tickets"]
    for base in (f"/api/v1/accounts/{account.id}/roles", "/api/v1/roles"):
        created = await client.post(base, json={"name": "Desk"}, headers=staff)
        assert created.status_code == 201, created.text
        role_url = f"{base}/{created.json()['id']}"
        for response in (
            await client.post(base, json={"name": "Other", "permissions": twice}, headers=staff),
            await client.patch(role_url, json={"permissions": twice}, headers=staff),
        ):
            assert response.status_code == 422, (base, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["errors"] == [
                {"field": "permissions", "message": "Listed more than once: tickets."}
            ]
        assert (await client.get(role_url, headers=staff)).json()["permissions"] == []
        listed = (await client.get(base, headers=staff)).json()
        assert "Other" not in {role["name"] for role in listed}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Équipe", "Équipe"),  # SQLite's lower() folds ASCII letters only: both were "Équipe"
        ("Équipe", "équipe"),
        ("ÄRZTE", "ärzte"),
        ("Straße", "STRASSE"),
        # Names that look the same on the Users page, where a role is picked by its name:
        ("Équipe", "E\u0301quipe"),  # the accent composed, and combined
        ("Helpdesk", "Help\u200bdesk"),  # a zero-width space
        ("Helpdesk", "Help\u00addesk"),  # a soft hyphen
    ],
)
async def test_role_names_are_unique_whatever_their_case_beyond_ascii(
    client: httpx.AsyncClient, runtime: Runtime, first: str, second: str
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    staff = await staff_headers(runtime)
    # Templates have no constraint behind the check; an account's roles have one for the
    # exact name only.
    for url in ("/api/v1/roles", f"/api/v1/accounts/{account.id}/roles"):
        created = await client.post(url, json={"name": first}, headers=staff)
        assert created.status_code == 201, created.text
        again = await client.post(url, json={"name": second}, headers=staff)
        assert again.status_code == 409, again.text
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


# --- telling consumers when a role changes under its holders ---------------------------------


def _about(*pairs: tuple[Account, User]) -> list[tuple[str, str]]:
    return sorted((str(account.id), str(user.id)) for account, user in pairs)


async def _account_role(
    client: httpx.AsyncClient, runtime: Runtime, account: Account, owner: User
) -> str:
    """The URL of a new role of the account with "domains" and "managedomains"."""
    url = f"/api/v1/accounts/{account.id}/roles"
    body = {"name": "Domain desk", "permissions": ["domains", "managedomains"]}
    created = await client.post(url, json=body, headers=await user_headers(runtime, owner))
    assert created.status_code == 201, created.text
    return f"{url}/{created.json()['id']}"


def _grant(role_url: str, expires_in: timedelta | None = None) -> list[RoleGrant]:
    """A grant of the role at ``role_url``, until ``expires_in`` from now if given."""
    role_id = uuid.UUID(role_url.rsplit("/", 1)[1])
    return [RoleGrant(role_id, utcnow() + expires_in if expires_in else None)]


async def test_narrowing_a_role_tells_its_holders_and_ends_their_refresh_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, boss, bystander = [await make_user(runtime) for _ in range(4)]
    account, elsewhere = await make_account(runtime, owner), await make_account(runtime, clerk)
    role = await _account_role(client, runtime, account, owner)
    await add_member(runtime, account, clerk, roles=_grant(role))
    await add_member(runtime, account, boss, roles=_grant(role), all_permissions=True)
    await add_member(runtime, account, bystander, ["domains", "managedomains"])
    tokens = {
        name: await give_refresh_token(runtime, user, where)
        for name, user, where in (
            ("clerk", clerk, account),
            ("clerk elsewhere", clerk, elsewhere),
            ("boss", boss, account),
            ("bystander", bystander, account),
        )
    }

    changed = await client.patch(
        role, json={"permissions": ["domains"]}, headers=await user_headers(runtime, owner)
    )

    assert changed.status_code == 200, changed.text
    assert await told_permissions_changed(runtime) == _about((account, clerk), (account, boss))
    revoked = {
        name for name, token in tokens.items() if await refresh_token_revoked(runtime, token)
    }
    # The boss holds everything whatever the role says: nothing narrowed for them.
    assert revoked == {"clerk"}


async def test_widening_a_role_tells_its_holders_and_keeps_their_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    role = await _account_role(client, runtime, account, owner)
    await add_member(runtime, account, clerk, roles=_grant(role))
    token = await give_refresh_token(runtime, clerk, account)

    widened = await client.patch(
        role,
        json={"permissions": ["domains", "managedomains", "invoices"]},
        headers=await user_headers(runtime, owner),
    )

    assert widened.status_code == 200, widened.text
    assert await told_permissions_changed(runtime) == _about((account, clerk))
    assert not await refresh_token_revoked(runtime, token)
    assert await effective(runtime, clerk, account) == {"domains", "managedomains", "invoices"}


async def test_renaming_a_role_or_resending_its_permissions_tells_nobody(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    role = await _account_role(client, runtime, account, owner)
    await add_member(runtime, account, clerk, roles=_grant(role))
    token = await give_refresh_token(runtime, clerk, account)
    headers = await user_headers(runtime, owner)

    for body in (
        {"name": "Domains", "description": "Registrar work"},
        {"permissions": ["managedomains", "domains"]},
    ):
        response = await client.patch(role, json=body, headers=headers)
        assert response.status_code == 200, response.text

    assert await told_permissions_changed(runtime) == []
    assert not await refresh_token_revoked(runtime, token)


async def test_a_role_holding_a_retired_permission_can_still_be_edited(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # A permission taken out of policies/permissions.toml stays in the roles that held it
    # (counting for nothing), as in members' grants: editing the rest of the role, or
    # sending its permissions back as they are, must not fail on it. Only additions are
    # checked against the catalogue.
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    role = await _account_role(client, runtime, account, owner)
    async with runtime.db.transaction() as session:
        session.add(RolePermission(role_id=_grant(role)[0].role_id, permission="retired"))
    headers = await user_headers(runtime, owner)

    renamed = await client.patch(role, json={"name": "Registrar desk"}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    resent = await client.patch(
        role, json={"permissions": ["domains", "managedomains", "retired"]}, headers=headers
    )
    assert resent.status_code == 200, resent.text
    narrowed = await client.patch(role, json={"permissions": ["domains"]}, headers=headers)
    assert narrowed.status_code == 200, narrowed.text
    added = await client.patch(role, json={"permissions": ["domains", "retired"]}, headers=headers)
    assert added.status_code == 422, added.text
    assert problem_fields(added.json()) == {"permissions"}


async def test_deleting_a_role_tells_its_holders_and_ends_their_refresh_tokens(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, lapsed, bystander = [await make_user(runtime) for _ in range(4)]
    account = await make_account(runtime, owner)
    role = await _account_role(client, runtime, account, owner)
    await add_member(runtime, account, clerk, roles=_grant(role))
    await add_member(runtime, account, lapsed, roles=_grant(role, timedelta(days=1)))
    await add_member(runtime, account, bystander, ["domains"])
    async with runtime.db.transaction() as session:
        # The lapsed member's grant of the role has expired: it gave them nothing any more.
        await session.execute(
            update(MembershipRole)
            .where(MembershipRole.expires_at.is_not(None))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    tokens = {
        user.id: await give_refresh_token(runtime, user, account)
        for user in (clerk, lapsed, bystander)
    }

    deleted = await client.delete(role, headers=await user_headers(runtime, owner))

    assert deleted.status_code == 204, deleted.text
    assert await told_permissions_changed(runtime) == _about((account, clerk))
    assert await refresh_token_revoked(runtime, tokens[clerk.id])
    assert not await refresh_token_revoked(runtime, tokens[lapsed.id])
    assert not await refresh_token_revoked(runtime, tokens[bystander.id])


async def test_changing_a_template_reaches_its_holders_in_every_account(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    first_owner, second_owner, clerk, auditor, bystander = [
        await make_user(runtime) for _ in range(5)
    ]
    first, second = (
        await make_account(runtime, first_owner),
        await make_account(runtime, second_owner),
    )
    staff = await staff_headers(runtime)
    created = await client.post(
        "/api/v1/roles", json={"name": "Sales", "permissions": ["orders", "quotes"]}, headers=staff
    )
    assert created.status_code == 201, created.text
    template = f"/api/v1/roles/{created.json()['id']}"
    await add_member(runtime, first, clerk, roles=_grant(template))
    await add_member(runtime, second, auditor, roles=_grant(template))
    await add_member(runtime, second, bystander, ["orders", "quotes"])
    tokens = [
        await give_refresh_token(runtime, user, account)
        for user, account in ((clerk, first), (auditor, second), (bystander, second))
    ]

    narrowed = await client.patch(template, json={"permissions": ["orders"]}, headers=staff)

    assert narrowed.status_code == 200, narrowed.text
    assert await told_permissions_changed(runtime) == _about((first, clerk), (second, auditor))
    assert [await refresh_token_revoked(runtime, token) for token in tokens] == [True, True, False]


@pytest.mark.parametrize(
    "description", ["Billing\x00", "Billing\nAdmin", "\x1b[2JBilling", "Billing\u202egnillib"]
)
async def test_a_description_that_would_misread_is_refused_naming_the_field(
    client: httpx.AsyncClient, runtime: Runtime, description: str
) -> None:
    # Members and staff are shown it: the rules of every other text people are shown.
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    owners, staff = await user_headers(runtime, owner), await staff_headers(runtime)
    role = await _account_role(client, runtime, account, owner)
    body = {"name": "Desk", "description": description, "permissions": ["domains"]}
    for method, url, headers in (
        ("POST", f"/api/v1/accounts/{account.id}/roles", owners),
        ("POST", "/api/v1/roles", staff),
        ("PATCH", role, owners),
    ):
        refused = await client.request(method, url, json=body, headers=headers)
        assert refused.status_code == 422, (method, url, refused.text)
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert problem_fields(refused.json()) == {"description"}, refused.text
    kept = await client.get(role, headers=owners)
    assert (kept.json()["name"], kept.json()["description"]) == ("Domain desk", "")
