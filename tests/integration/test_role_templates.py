"""The templates of policies/roles.toml, copied into the roles table by each process."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.db.engine import Database
from identity.permissions import repository
from identity.permissions.access import hold_member_rights
from identity.permissions.catalogue import Catalogue, Policies, install, load_policies
from identity.permissions.grants import RoleGrant
from identity.permissions.models import Account, Role, RolePermission
from identity.runtime import Runtime
from identity.settings import Settings
from tests.integration.account_helpers import (
    account_with_member,
    effective,
    give_refresh_token,
    refresh_token_revoked,
    signed_in_member,
    staff_headers,
    told_permissions_changed,
)
from tests.integration.oauth_helpers import RegisteredClient, refresh
from tests.integration.recovery_helpers import until_waiting_or_done

PROCESSES = 4


async def test_processes_starting_together_copy_the_templates_once(database: Settings) -> None:
    # Several server processes meet the empty roles table with their first requests at once:
    # each must get on with its request, and the table must hold each template once.
    databases = [Database.from_settings(database) for _ in range(PROCESSES)]
    policies = load_policies(database.policies_dir)
    try:
        await asyncio.gather(*(Catalogue(policies).ensure_templates(db) for db in databases))
        async with databases[0].transaction() as session:
            roles = (await session.scalars(select(Role).where(Role.key.is_not(None)))).all()
            held = {
                role.key: set(
                    (
                        await session.scalars(
                            select(RolePermission.permission).where(
                                RolePermission.role_id == role.id
                            )
                        )
                    ).all()
                )
                for role in roles
            }
    finally:
        await asyncio.gather(*(db.dispose() for db in databases))
    assert len(roles) == len(policies.roles)
    assert held == {key: set(t.permissions) for key, t in policies.roles.items()}


# --- a template changed in roles.toml between restarts ---------------------------------------


def _with_template(policies: Policies, key: str, permissions: tuple[str, ...]) -> Policies:
    """``policies`` with the template ``key`` holding ``permissions``, as after an edit of
    roles.toml and a restart."""
    changed = replace(policies.roles[key], permissions=permissions)
    return replace(policies, roles=policies.roles | {key: changed})


def _without_template(policies: Policies, key: str) -> Policies:
    """``policies`` with the template ``key`` taken out of roles.toml."""
    return replace(policies, roles={k: t for k, t in policies.roles.items() if k != key})


async def _template_holder(runtime: Runtime, key: str) -> tuple[User, Account, uuid.UUID]:
    """A member holding the template ``key`` and their live refresh token for the account."""
    async with runtime.db.transaction() as session:
        role = await session.scalar(select(Role).where(Role.key == key))
    assert role is not None
    _, member, account = await account_with_member(runtime, roles=[RoleGrant(role.id)])
    return member, account, await give_refresh_token(runtime, member, account)


async def _restart_with(runtime: Runtime, policies: Policies) -> None:
    await Catalogue(policies).ensure_templates(runtime.db)


async def test_a_template_narrowed_in_the_file_ends_its_holders_refresh_tokens(
    runtime: Runtime,
) -> None:
    await runtime.catalogue.ensure_templates(runtime.db)
    policies = runtime.catalogue.policies
    key, template = next(iter(policies.roles.items()))
    assert len(template.permissions) > 1
    member, account, token = await _template_holder(runtime, key)

    await _restart_with(runtime, _with_template(policies, key, template.permissions[:1]))

    assert await refresh_token_revoked(runtime, token)
    assert await told_permissions_changed(runtime) == [(str(account.id), str(member.id))]
    assert await effective(runtime, member, account) == set(template.permissions[:1])


async def test_a_template_widened_in_the_file_tells_its_holders_and_keeps_their_tokens(
    runtime: Runtime,
) -> None:
    await runtime.catalogue.ensure_templates(runtime.db)
    policies = runtime.catalogue.policies
    key, template = next(iter(policies.roles.items()))
    extra = next(name for name in policies.permissions if name not in template.permissions)
    member, account, token = await _template_holder(runtime, key)

    await _restart_with(runtime, _with_template(policies, key, (*template.permissions, extra)))

    assert not await refresh_token_revoked(runtime, token)
    assert await told_permissions_changed(runtime) == [(str(account.id), str(member.id))]


async def test_a_restart_with_the_file_unchanged_tells_nobody(runtime: Runtime) -> None:
    await runtime.catalogue.ensure_templates(runtime.db)
    key = next(iter(runtime.catalogue.policies.roles))
    _, _, token = await _template_holder(runtime, key)

    await _restart_with(runtime, runtime.catalogue.policies)

    assert not await refresh_token_revoked(runtime, token)
    assert await told_permissions_changed(runtime) == []


async def _role_updates(runtime: Runtime) -> list[AuditEvent]:
    async with runtime.db.transaction() as session:
        found = await session.scalars(
            select(AuditEvent).where(AuditEvent.action == "role.updated").order_by(AuditEvent.id)
        )
        return list(found.all())


async def test_a_template_changed_in_the_file_is_in_the_audit_log(runtime: Runtime) -> None:
    # Its holders' rights change and their refresh tokens end: whoever reads the log after
    # an incident must find why, as for an edit through the API.
    await runtime.catalogue.ensure_templates(runtime.db)
    policies = runtime.catalogue.policies
    key, template = next(iter(policies.roles.items()))
    await _template_holder(runtime, key)

    await _restart_with(runtime, policies)
    assert [e.details for e in await _role_updates(runtime)] == []
    await _restart_with(runtime, _with_template(policies, key, template.permissions[:1]))

    [entry] = await _role_updates(runtime)
    async with runtime.db.transaction() as session:
        role = await session.scalar(select(Role).where(Role.key == key))
    assert role is not None
    assert (entry.target_type, entry.target_id, entry.account_id) == ("role", str(role.id), None)
    assert entry.actor_user_id is None and entry.actor_client_id is None and entry.ip is None
    assert entry.details["old"]["permissions"] == sorted(template.permissions)
    assert entry.details["new"]["permissions"] == [template.permissions[0]]
    assert entry.details["source"] == "policies/roles.toml"


async def test_a_template_taken_out_of_the_file_is_left_to_staff(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # Its holders keep it across the restart (nothing changes anyone's rights unasked), but
    # staff must then be able to edit or delete it: "change it in policies/roles.toml" is no
    # answer for a template that is not there, and left so it was granted on for ever.
    await runtime.catalogue.ensure_templates(runtime.db)
    key, template = next(iter(runtime.catalogue.policies.roles.items()))
    member, account, token = await _template_holder(runtime, key)
    async with runtime.db.transaction() as session:
        role = await session.scalar(select(Role).where(Role.key == key))
    assert role is not None
    runtime.catalogue = Catalogue(_without_template(runtime.catalogue.policies, key))
    await runtime.catalogue.ensure_templates(runtime.db)
    assert await effective(runtime, member, account) == set(template.permissions)
    headers = await staff_headers(runtime)

    renamed = await client.patch(
        f"/api/v1/roles/{role.id}", json={"name": "Retired template"}, headers=headers
    )
    assert renamed.status_code == 200, renamed.text
    deleted = await client.delete(f"/api/v1/roles/{role.id}", headers=headers)
    assert deleted.status_code == 204, deleted.text

    assert await effective(runtime, member, account) == set()
    assert await refresh_token_revoked(runtime, token)


# --- what tokens carry after such a restart -------------------------------------------------


async def _signed_in_template_holder(
    http: httpx.AsyncClient, runtime: Runtime, key: str
) -> tuple[Account, RegisteredClient, dict[str, Any]]:
    """A member holding the template ``key``, signed in to a client for the account: the
    account, the client and the token response."""
    async with runtime.db.transaction() as session:
        role = await session.scalar(select(Role).where(Role.key == key))
    assert role is not None
    _, account, registered, body = await signed_in_member(http, runtime, roles=[RoleGrant(role.id)])
    return account, registered, body


def _started_again_with(runtime: Runtime, policies: Policies) -> None:
    """The process as started again with an edited roles.toml: nothing applied yet."""
    runtime.catalogue = Catalogue(policies)
    install(policies)


@pytest.fixture
async def narrowed(
    client: httpx.AsyncClient, runtime: Runtime
) -> AsyncIterator[tuple[tuple[str, ...], RegisteredClient, dict[str, Any]]]:
    """A template holder signed in, then the process started again with the template narrowed
    in the file; its first request is the test's own. What the template keeps, the client and
    the token response from before."""
    await runtime.catalogue.ensure_templates(runtime.db)
    policies = runtime.catalogue.policies
    key, template = next(iter(policies.roles.items()))
    assert len(template.permissions) > 1
    _, registered, body = await _signed_in_template_holder(client, runtime, key)
    kept = template.permissions[:1]
    _started_again_with(runtime, _with_template(policies, key, kept))
    yield kept, registered, body
    install(policies)


async def test_a_refresh_first_after_the_restart_ends_as_after_an_edit_of_the_role(
    client: httpx.AsyncClient,
    narrowed: tuple[tuple[str, ...], RegisteredClient, dict[str, Any]],
) -> None:
    """Services read ``permissions`` from the token alone: a refresh must not hand out what
    the file took away because no request to the management API or the Users page came first."""
    _, registered, body = narrowed

    refreshed = await refresh(client, registered, body["refresh_token"])

    assert refreshed.status_code == 400, refreshed.text
    assert refreshed.json()["error"] == "invalid_grant"


async def test_introspection_first_after_the_restart_narrows_to_what_the_template_keeps(
    client: httpx.AsyncClient,
    narrowed: tuple[tuple[str, ...], RegisteredClient, dict[str, Any]],
) -> None:
    kept, registered, body = narrowed

    introspected = await client.post(
        "/introspect", data={"token": body["access_token"]}, headers=registered.basic
    )

    assert introspected.json()["permissions"] == sorted(kept)


async def test_a_template_copy_and_a_grant_by_a_holder_of_another_template_both_complete(
    runtime: Runtime,
) -> None:
    # A member changing the account share-locks the roles they hold (``hold_member_rights``),
    # then a grant share-locks the roles it gives: two batches. A roles.toml copy that
    # changes both templates locked them exclusively in id order: holding "low" it waited for
    # "high", which the member held while waiting for "low". PostgreSQL broke the cycle by
    # aborting one of them (a 503 for the member, or a failed start).
    await runtime.catalogue.ensure_templates(runtime.db)
    policies = runtime.catalogue.policies
    async with runtime.db.transaction() as session:
        templates = (await session.scalars(select(Role).where(Role.key.is_not(None)))).all()
    low, high = sorted(templates, key=lambda role: role.id)[:2]
    _, member, account = await account_with_member(runtime, roles=[RoleGrant(high.id)])
    for role in (low, high):
        assert role.key is not None
        policies = _with_template(policies, role.key, policies.roles[role.key].permissions[:1])
    holding, go_on = asyncio.Event(), asyncio.Event()

    async def grant_low_holding_high() -> None:
        async with runtime.db.transaction() as session:
            assert await hold_member_rights(session, account.id, member.id)
            holding.set()
            await go_on.wait()
            assert [role.id for role in await repository.roles_by_id(session, [low.id])] == [low.id]

    granting = asyncio.create_task(grant_low_holding_high())
    await holding.wait()
    copying = asyncio.create_task(_restart_with(runtime, policies))
    await until_waiting_or_done(runtime, copying, table="roles")
    go_on.set()
    await asyncio.gather(granting, copying)
    async with runtime.db.transaction() as session:
        held = await repository.role_permissions(session, [low.id, high.id])
    assert {role_id: set(names) for role_id, names in held.items()} == {
        role.id: set(policies.roles[role.key or ""].permissions) for role in (low, high)
    }
