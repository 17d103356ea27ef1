"""Members of an account and what each may do: /api/v1/accounts/{account_id}/members."""

from __future__ import annotations

import uuid
from datetime import datetime
from functools import partial
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.permissions import members
from identity.permissions.access import (
    Action,
    Relation,
    check_manager_edit,
    delegation_for,
    removal,
)
from identity.permissions.catalogue import Catalogue
from identity.permissions.grants import Grant, RoleGrant
from identity.runtime import Runtime
from identity.web.api import schemas
from identity.web.api.auth import Principal
from identity.web.api.common import (
    CatalogueDep,
    PageDep,
    PrincipalDep,
    allow,
    created,
    grants_in,
    member_out,
    role_grants_in,
)
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


async def _allow_member_edit(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: Action,
    now: datetime,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
) -> Relation:
    """The matrix allows ``action``, and a manager is not touching an owner."""
    relation = await allow(session, runtime, principal, action, now, account_id)
    check_manager_edit(relation, await members.membership_of(session, account_id, user_id))
    return relation


async def _grant_one(
    runtime: Runtime,
    principal: Principal,
    catalogue: Catalogue,
    account_id: uuid.UUID,
    user_id: uuid.UUID,
    grant: Grant | RoleGrant,
) -> schemas.MemberOut:
    now = utcnow()
    async with runtime.db.transaction() as session:
        relation = await _allow_member_edit(
            session, runtime, principal, Action.MEMBER_GRANTS, now, account_id, user_id
        )
        await members.grant_one(
            session,
            principal.actor,
            account_id,
            user_id,
            grant,
            catalogue=catalogue,
            now=now,
            delegation=await delegation_for(
                session, principal.caller.user_id, relation, account_id, now
            ),
        )
        view = await members.member(session, account_id, user_id, now, catalogue)
    return member_out(view, now)


class MemberController(Controller):
    path = "/accounts/{account_id:uuid}/members"
    tags = ["members"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="The account's members with their grants (owner, manager, staff)")
    async def list_members(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        page: PageDep,
    ) -> list[schemas.MemberOut]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.MEMBER_READ, now, account_id)
            views = await members.list_members(session, account_id, now, catalogue, page)
        return [member_out(view, now) for view in views]

    @post(
        "",
        summary="Add an existing user directly, without an invitation (staff)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def add(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.MemberAdd],
    ) -> Response[schemas.MemberOut]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.MEMBER_ADD, now, account_id)
            await members.add_member(
                session,
                principal.actor,
                account_id,
                data.user_id,
                all_permissions=data.all_permissions,
                permissions=grants_in(data.permissions) or [],
                roles=role_grants_in(data.roles) or [],
                is_owner=data.owner,
                catalogue=catalogue,
                now=now,
            )
            view = await members.member(session, account_id, data.user_id, now, catalogue)
        return created(request, member_out(view, now), data.user_id)

    @get("/{user_id:uuid}", summary="One member (owner, manager, staff)")
    async def read(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
    ) -> schemas.MemberOut:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.MEMBER_READ, now, account_id)
            view = await members.member(session, account_id, user_id, now, catalogue)
        return member_out(view, now)

    @patch(
        "/{user_id:uuid}",
        summary="Change a member: owner flag (owner, staff) and grants (owner, manager, staff)",
        responses=problems(409, 422),
    )
    async def update(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.MemberUpdate],
    ) -> schemas.MemberOut:
        now = utcnow()
        actor = principal.actor
        given = data.given()
        owner: bool | None = given.get("owner")
        all_permissions: bool | None = given.get("all_permissions")
        changes_grants = bool(given.keys() & {"all_permissions", "permissions", "roles"})
        async with runtime.db.transaction() as session:
            # Every check before any change: an owner who demotes themselves in this request
            # must not lose the right to the rest of it half-way.
            if owner is not None:
                await allow(session, runtime, principal, Action.OWNERSHIP_CHANGE, now, account_id)
            if changes_grants or owner is None:
                relation = await allow(
                    session, runtime, principal, Action.MEMBER_GRANTS, now, account_id
                )
                target = await members.membership_of(session, account_id, user_id)
                check_manager_edit(relation, target, all_permissions=all_permissions)
                delegation = await delegation_for(
                    session, principal.caller.user_id, relation, account_id, now
                )
            if owner is not None:
                await members.set_owner(session, actor, account_id, user_id, owner, now)
            if changes_grants:
                await members.set_grants(
                    session,
                    actor,
                    account_id,
                    user_id,
                    all_permissions=all_permissions,
                    permissions=grants_in(given.get("permissions")),
                    roles=role_grants_in(given.get("roles")),
                    catalogue=catalogue,
                    now=now,
                    delegation=delegation,
                    judge=partial(check_manager_edit, relation, all_permissions=all_permissions),
                )
            view = await members.member(session, account_id, user_id, now, catalogue)
        return member_out(view, now)

    @delete(
        "/{user_id:uuid}",
        summary="Remove a member (owner, manager, staff), or leave (any member)",
        responses=problems(409),
    )
    async def remove(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            action = removal(principal.caller, user_id)
            relation = await allow(session, runtime, principal, action, now, account_id)
            await members.remove_member(
                session,
                principal.actor,
                account_id,
                user_id,
                now,
                judge=partial(check_manager_edit, relation),
            )

    @post(
        "/{user_id:uuid}/permissions",
        summary="Grant one permission, perhaps until a date",
        responses=problems(422),
    )
    async def grant_permission(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.GrantIn],
    ) -> schemas.MemberOut:
        return await _grant_one(
            runtime, principal, catalogue, account_id, user_id, Grant(data.name, data.expires_at)
        )

    @delete(
        "/{user_id:uuid}/permissions/{name:str}",
        summary="Revoke a direct permission",
        responses=problems(422),
    )
    async def revoke_permission(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        name: FromPath[str],
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await _allow_member_edit(
                session, runtime, principal, Action.MEMBER_GRANTS, now, account_id, user_id
            )
            await members.revoke_one(session, principal.actor, account_id, user_id, name, now)

    @post(
        "/{user_id:uuid}/roles",
        summary="Give a member a role, perhaps until a date",
        responses=problems(422),
    )
    async def grant_role(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.RoleGrantIn],
    ) -> schemas.MemberOut:
        grant = RoleGrant(data.role_id, data.expires_at)
        return await _grant_one(runtime, principal, catalogue, account_id, user_id, grant)

    @delete("/{user_id:uuid}/roles/{role_id:uuid}", summary="Take a role from a member")
    async def revoke_role(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        user_id: FromPath[uuid.UUID],
        role_id: FromPath[uuid.UUID],
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await _allow_member_edit(
                session, runtime, principal, Action.MEMBER_GRANTS, now, account_id, user_id
            )
            await members.revoke_one(session, principal.actor, account_id, user_id, role_id, now)
