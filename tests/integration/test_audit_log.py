"""The audit log: every change to memberships, permissions, roles and invitations, with who,
from where, and the old and new values; read-only through the API."""

from __future__ import annotations

import httpx

from identity.runtime import Runtime
from tests.integration.account_helpers import (
    account_with_member,
    add_member,
    make_account,
    make_user,
    staff_headers,
    user_headers,
)


async def _actions(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> list[dict]:
    response = await client.get(url, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["events"]


async def test_every_kind_of_change_is_recorded_with_actor_ip_and_values(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, clerk, account = await account_with_member(runtime, ["tickets"])
    headers = await user_headers(runtime, owner) | {"X-Request-ID": "req-audit-1"}
    base = f"/api/v1/accounts/{account.id}"
    role = await client.post(
        f"{base}/roles", json={"name": "Desk", "permissions": ["tickets"]}, headers=headers
    )
    await client.patch(
        f"{base}/members/{clerk.id}", json={"permissions": [{"name": "invoices"}]}, headers=headers
    )
    await client.post(
        f"{base}/members/{clerk.id}/roles", json={"role_id": role.json()["id"]}, headers=headers
    )
    invitation = await client.post(
        f"{base}/invitations", json={"email": "x@example.com"}, headers=headers
    )
    await client.delete(f"{base}/invitations/{invitation.json()['id']}", headers=headers)
    await client.delete(f"{base}/members/{clerk.id}", headers=headers)

    events = await _actions(client, f"{base}/audit", headers)
    actions = [e["action"] for e in reversed(events)]
    assert actions == [
        "account.created",
        "member.added",
        "member.added",
        "role.created",
        "member.grants_changed",
        "member.role_granted",
        "invitation.created",
        "invitation.cancelled",
        "member.removed",
    ]
    changed = next(e for e in events if e["action"] == "member.grants_changed")
    assert changed["actor_user_id"] == str(owner.id)
    assert changed["ip"] == "127.0.0.1"
    assert changed["request_id"] == "req-audit-1"
    assert changed["target_id"] == str(clerk.id)
    assert [p["name"] for p in changed["details"]["old"]["permissions"]] == ["tickets"]
    assert [p["name"] for p in changed["details"]["new"]["permissions"]] == ["invoices"]


async def test_a_refused_change_leaves_no_event(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    refused = await client.delete(
        f"/api/v1/accounts/{account.id}/members/{owner.id}", headers=headers
    )
    assert refused.status_code == 409
    events = await _actions(client, f"/api/v1/accounts/{account.id}/audit", headers)
    assert "member.removed" not in {e["action"] for e in events}


async def test_owners_see_only_their_accounts_log_and_staff_see_all(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, rival = await make_user(runtime), await make_user(runtime)
    account, other = await make_account(runtime, owner), await make_account(runtime, rival)
    mine = await _actions(
        client, f"/api/v1/accounts/{account.id}/audit", await user_headers(runtime, owner)
    )
    assert {e["account_id"] for e in mine} == {str(account.id)}
    theirs = await client.get(
        f"/api/v1/accounts/{other.id}/audit", headers=await user_headers(runtime, owner)
    )
    assert theirs.status_code == 404
    everything = await _actions(client, "/api/v1/audit", await staff_headers(runtime))
    assert {str(account.id), str(other.id)} <= {e["account_id"] for e in everything}


async def test_the_log_is_filtered_and_paged_newest_first(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    for _ in range(5):
        await add_member(runtime, account, await make_user(runtime))
    staff = await staff_headers(runtime)
    url = f"/api/v1/audit?account_id={account.id}&action=member.added&limit=4"
    first = (await client.get(url, headers=staff)).json()
    assert len(first["events"]) == 4 and first["next_before_id"] is not None
    second = (await client.get(f"{url}&before_id={first['next_before_id']}", headers=staff)).json()
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert len(ids) == 6  # the owner and five members
    assert ids == sorted(ids, reverse=True)
    assert second["next_before_id"] is None


async def test_the_log_cannot_be_changed_through_the_api(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    staff = await staff_headers(runtime)
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        response = await client.request(method, "/api/v1/audit", headers=staff)
        assert response.status_code == 405, method


async def test_a_roles_description_and_spanish_name_are_recorded_when_they_change(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Members read both beside the role's name: a change of either was recorded as
    ``role.updated`` with the same old and new values, so nobody could tell what changed."""
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    base = f"/api/v1/accounts/{account.id}"
    role = await client.post(
        f"{base}/roles",
        json={"name": "Desk", "name_es": "Mostrador", "description": "Front desk"},
        headers=headers,
    )
    changed = await client.patch(
        f"{base}/roles/{role.json()['id']}",
        json={"name_es": "Recepción", "description": "Answers the phone"},
        headers=headers,
    )
    assert changed.status_code == 200, changed.text

    events = await _actions(client, f"{base}/audit", headers)
    created = next(e for e in events if e["action"] == "role.created")
    assert created["details"]["new"]["name_es"] == "Mostrador"
    assert created["details"]["new"]["description"] == "Front desk"
    updated = next(e for e in events if e["action"] == "role.updated")
    old, new = updated["details"]["old"], updated["details"]["new"]
    assert (old["name_es"], old["description"]) == ("Mostrador", "Front desk")
    assert (new["name_es"], new["description"]) == ("Recepción", "Answers the phone")


async def test_a_rename_or_role_edit_to_what_is_stored_records_nothing(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """Saved unchanged, an account or a role was recorded as renamed or updated with equal
    old and new values: changes nobody made, in the log read after an incident."""
    owner = await make_user(runtime)
    account = await make_account(runtime, owner)
    headers = await user_headers(runtime, owner)
    base = f"/api/v1/accounts/{account.id}"
    role = await client.post(
        f"{base}/roles", json={"name": "Desk", "permissions": ["tickets"]}, headers=headers
    )
    before = await _actions(client, f"{base}/audit", headers)

    renamed = await client.patch(base, json={"name": account.name}, headers=headers)
    assert renamed.status_code == 200, renamed.text
    edited = await client.patch(
        f"{base}/roles/{role.json()['id']}",
        json={"name": "Desk", "permissions": ["tickets"], "description": ""},
        headers=headers,
    )
    assert edited.status_code == 200, edited.text

    assert await _actions(client, f"{base}/audit", headers) == before


async def test_a_target_id_finds_its_entries_however_the_uuid_is_written(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Ids are recorded as the API writes them (lower case, hyphens); a user id copied from a
    # tool that shows UUIDs in capitals, or without hyphens, named the same user and found
    # nothing, where actor_user_id and account_id, read as UUIDs, took either.
    account = await make_account(runtime, await make_user(runtime))
    member = await make_user(runtime)
    await add_member(runtime, account, member)
    staff = await staff_headers(runtime)
    for written in (str(member.id).upper(), member.id.hex, f"{{{member.id}}}"):
        events = await _actions(client, f"/api/v1/audit?target_id={written}", staff)
        assert [e["action"] for e in events] == ["member.added"], written
        assert events[0]["target_id"] == str(member.id)


async def test_since_and_until_take_rfc_3339_date_times_in_any_offset(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    owner, _, account = await account_with_member(runtime, ["tickets"])
    headers = await user_headers(runtime, owner)
    url = f"/api/v1/accounts/{account.id}/audit"

    past = await _actions(client, f"{url}?since=2000-01-01T01:00:00%2B01:00", headers)
    future = await _actions(client, f"{url}?since=2999-12-31t23:59:59z", headers)
    before = await _actions(client, f"{url}?until=2000-01-01 00:00:00Z", headers)

    assert {e["action"] for e in past} == {"account.created", "member.added"}
    assert future == before == []
