"""A role changed or deleted while it is being granted, and two edits of one role at once:
clean answers, no grant of a deleted role, and the holders' tokens end as they should."""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.audit.models import AuditEvent
from identity.clock import utcnow
from identity.errors import InvalidInput
from identity.permissions import account_roles, repository
from identity.permissions.grants import RoleGrant
from identity.runtime import Runtime
from tests.integration.account_helpers import (
    SYSTEM,
    account_with_member,
    add_member,
    effective,
    give_refresh_token,
    make_account,
    make_user,
    refresh_token_revoked,
    staff_headers,
)

BURST = 10


async def _role(client: httpx.AsyncClient, base: str, headers: dict[str, str]) -> str:
    created = await client.post(
        f"{base}/roles", json={"name": "Helpdesk", "permissions": ["tickets"]}, headers=headers
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_a_role_deleted_while_it_is_being_given_leaves_no_grant_and_no_500(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, member, account = await account_with_member(runtime)
    token = await give_refresh_token(runtime, member, account)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}"
    role_id = await _role(client, base, headers)
    member_url = f"{base}/members/{member.id}"

    gives = [
        client.post(f"{member_url}/roles", json={"role_id": role_id}, headers=headers)
        if i % 2
        else client.patch(member_url, json={"roles": [{"role_id": role_id}]}, headers=headers)
        for i in range(BURST - 1)
    ]
    deleted, *given = await asyncio.gather(
        client.delete(f"{base}/roles/{role_id}", headers=headers), *gives
    )

    assert deleted.status_code == 204, deleted.text
    # Before the delete: given (201, 200); after it: an unknown role (422).
    assert set(Counter(r.status_code for r in given)) <= {200, 201, 422}, [r.text for r in given]
    assert await effective(runtime, member, account) == frozenset()
    if any(r.status_code in (200, 201) for r in given):
        # The member held the role when it was deleted: their tokens narrowed with it.
        assert await refresh_token_revoked(runtime, token)


async def test_a_member_edited_while_their_role_is_deleted_gets_a_clean_answer(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, member = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}"
    role_id = await _role(client, base, headers)
    await add_member(runtime, account, member, roles=[RoleGrant(uuid.UUID(role_id))])

    # Each edit keeps the role as it is (roles not sent) and changes the direct grants.
    edits = [
        client.patch(
            f"{base}/members/{member.id}",
            json={"permissions": [{"name": ("quotes", "orders")[i % 2]}]},
            headers=headers,
        )
        for i in range(BURST - 1)
    ]
    deleted, *edited = await asyncio.gather(
        client.delete(f"{base}/roles/{role_id}", headers=headers), *edits
    )

    assert deleted.status_code == 204, deleted.text
    assert Counter(r.status_code for r in edited) == {200: BURST - 1}, [r.text for r in edited]
    assert "tickets" not in await effective(runtime, member, account)


async def test_concurrent_edits_of_one_role_each_see_the_one_before(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}"
    role_id = await _role(client, base, headers)
    choices = ("quotes", "orders", "domains")

    responses = await asyncio.gather(
        *(
            client.patch(
                f"{base}/roles/{role_id}",
                json={"permissions": ["tickets", choices[i % 3]]},
                headers=headers,
            )
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {200: BURST}, [
        r.text for r in responses if r.status_code != 200
    ]
    async with runtime.db.transaction() as session:
        updates = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "role.updated")
                .order_by(AuditEvent.id)
            )
        )
    # An edit that found the role as it would leave it changed nothing, and is not recorded.
    assert 1 <= len(updates) <= BURST
    for before, after in itertools.pairwise(updates):
        assert after.details["old"]["permissions"] == before.details["new"]["permissions"]
    current = await client.get(f"{base}/roles/{role_id}", headers=headers)
    assert current.json()["permissions"] == updates[-1].details["new"]["permissions"]


@pytest.mark.parametrize("where", ["account", "templates"])
async def test_one_role_name_created_many_times_at_once_makes_one_role(
    client: httpx.AsyncClient, runtime: Runtime, where: str
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    url = f"/api/v1/accounts/{account.id}/roles" if where == "account" else "/api/v1/roles"
    spellings = ("Night shift", "night shift", "NIGHT SHIFT")
    # Open the pool's connections first, or opening them would space the creations out.
    await asyncio.gather(*(client.get(url, headers=headers) for _ in range(BURST)))

    responses = await asyncio.gather(
        *(
            client.post(
                url, json={"name": spellings[i % 3], "permissions": ["tickets"]}, headers=headers
            )
            for i in range(BURST)
        )
    )

    assert Counter(r.status_code for r in responses) == {201: 1, 409: BURST - 1}
    listed = await client.get(url, headers=headers)
    assert [r["name"].lower() for r in listed.json()].count("night shift") == 1


async def test_two_roles_renamed_to_one_name_at_once_keep_their_names_apart(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await staff_headers(runtime)
    base = f"/api/v1/accounts/{account.id}/roles"
    ids = []
    for name in ("Early", "Late"):
        created = await client.post(base, json={"name": name}, headers=headers)
        ids.append(created.json()["id"])

    responses = await asyncio.gather(
        *(client.patch(f"{base}/{i}", json={"name": "Weekend"}, headers=headers) for i in ids)
    )

    assert sorted(r.status_code for r in responses) == [200, 409]


async def test_a_role_deleted_while_a_member_is_added_with_it_leaves_no_500(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Adding a member reads the roles it gives before its first write. On SQLite that read
    held nothing: a deletion committed right after it, and the grant then met the deleted
    role's foreign key (a 500). The deletion must wait for the addition, or go first."""
    owner, newcomer = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    base = f"/api/v1/accounts/{account.id}"
    role_id = uuid.UUID(await _role(client, base, await staff_headers(runtime)))
    real_get_user = repository.get_user
    deletions: list[asyncio.Task[None]] = []

    async def delete_role() -> None:
        async with runtime.db.transaction() as session:
            await account_roles.delete_role(session, SYSTEM, account.id, role_id, utcnow())

    async def get_user_as_the_role_goes(*args: Any, **kwargs: Any) -> Any:
        # After the roles were checked: the deletion gets its chance to commit in between.
        if not deletions:
            deletions.append(asyncio.create_task(delete_role()))
            await asyncio.wait(deletions, timeout=1)
        return await real_get_user(*args, **kwargs)

    monkeypatch.setattr(repository, "get_user", get_user_as_the_role_goes)
    try:
        await add_member(runtime, account, newcomer, roles=[RoleGrant(role_id)])
    except InvalidInput as refused:  # the role was gone when it was checked: a 422
        assert refused.extra["errors"][0]["field"] == "roles"
    await deletions[0]

    assert await effective(runtime, newcomer, account) == frozenset()
