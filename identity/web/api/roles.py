"""Roles: templates for every account (/api/v1/roles, staff) and an account's own roles
(/api/v1/accounts/{account_id}/roles). Both kinds share the steps below; only the owning
account (None for templates) and the matrix actions differ."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import utcnow
from identity.db.paging import Page
from identity.permissions import account_roles, grants
from identity.permissions.access import Action, delegation_for
from identity.permissions.catalogue import Catalogue
from identity.runtime import Runtime
from identity.web.api import schemas
from identity.web.api.auth import Principal
from identity.web.api.common import (
    CatalogueDep,
    PageDep,
    PrincipalDep,
    allow,
    created,
    once_each,
    role_out,
)
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


async def _allow_writing(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: Action,
    now: datetime,
    account_id: uuid.UUID | None,
) -> grants.Delegation | None:
    """The matrix allows ``action``; returns what a manager may put in an account's role."""
    relation = await allow(session, runtime, principal, action, now, account_id)
    if account_id is None:
        return None  # templates: staff only
    return await delegation_for(session, principal.caller.user_id, relation, account_id, now)


async def _list(
    runtime: Runtime,
    principal: Principal,
    action: Action,
    account_id: uuid.UUID | None,
    page: Page,
) -> list[schemas.RoleOut]:
    async with runtime.db.transaction() as session:
        await allow(session, runtime, principal, action, utcnow(), account_id)
        views = await account_roles.list_roles(session, account_id, page)
    return [role_out(view) for view in views]


async def _read(
    runtime: Runtime,
    principal: Principal,
    action: Action,
    account_id: uuid.UUID | None,
    role_id: FromPath[uuid.UUID],
) -> schemas.RoleOut:
    async with runtime.db.transaction() as session:
        await allow(session, runtime, principal, action, utcnow(), account_id)
        view = await account_roles.get_role(session, account_id, role_id)
    return role_out(view)


async def _create(
    runtime: Runtime,
    principal: Principal,
    catalogue: Catalogue,
    action: Action,
    account_id: uuid.UUID | None,
    data: schemas.RoleCreate,
) -> schemas.RoleOut:
    now = utcnow()
    async with runtime.db.transaction() as session:
        delegation = await _allow_writing(session, runtime, principal, action, now, account_id)
        once_each("permissions", data.permissions)
        view = await account_roles.create_role(
            session,
            principal.actor,
            account_id,
            name=data.name,
            name_es=data.name_es,
            description=data.description,
            permissions=data.permissions,
            catalogue=catalogue,
            now=now,
            delegation=delegation,
        )
    return role_out(view)


async def _update(
    runtime: Runtime,
    principal: Principal,
    catalogue: Catalogue,
    action: Action,
    account_id: uuid.UUID | None,
    role_id: FromPath[uuid.UUID],
    data: schemas.RoleUpdate,
) -> schemas.RoleOut:
    now = utcnow()
    async with runtime.db.transaction() as session:
        delegation = await _allow_writing(session, runtime, principal, action, now, account_id)
        given = data.given()
        once_each("permissions", given.get("permissions", []))
        view = await account_roles.update_role(
            session,
            principal.actor,
            account_id,
            role_id,
            **given,
            catalogue=catalogue,
            now=now,
            delegation=delegation,
        )
    return role_out(view)


async def _delete(
    runtime: Runtime,
    principal: Principal,
    action: Action,
    account_id: uuid.UUID | None,
    role_id: FromPath[uuid.UUID],
) -> None:
    now = utcnow()
    async with runtime.db.transaction() as session:
        await allow(session, runtime, principal, action, now, account_id)
        await account_roles.delete_role(
            session, principal.actor, account_id, role_id, now, runtime.catalogue
        )


class RoleTemplateController(Controller):
    path = "/roles"
    tags = ["roles"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Role templates offered to every account")
    async def list_templates(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        page: PageDep,
    ) -> list[schemas.RoleOut]:
        return await _list(runtime, principal, Action.TEMPLATE_READ, None, page)

    @post(
        "",
        summary="Create a role template (staff)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        data: JSONBody[schemas.RoleCreate],
    ) -> Response[schemas.RoleOut]:
        role = await _create(runtime, principal, catalogue, Action.TEMPLATE_WRITE, None, data)
        return created(request, role, role.id)

    @get("/{role_id:uuid}", summary="One role template")
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, role_id: FromPath[uuid.UUID]
    ) -> schemas.RoleOut:
        return await _read(runtime, principal, Action.TEMPLATE_READ, None, role_id)

    @patch(
        "/{role_id:uuid}",
        summary="Change a role template made through the API (staff)",
        responses=problems(409, 422),
    )
    async def update(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        role_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.RoleUpdate],
    ) -> schemas.RoleOut:
        return await _update(
            runtime, principal, catalogue, Action.TEMPLATE_WRITE, None, role_id, data
        )

    @delete(
        "/{role_id:uuid}",
        summary="Delete a role template made through the API (staff)",
        responses=problems(409),
    )
    async def remove(
        self, runtime: RuntimeDep, principal: PrincipalDep, role_id: FromPath[uuid.UUID]
    ) -> None:
        await _delete(runtime, principal, Action.TEMPLATE_WRITE, None, role_id)


class AccountRoleController(Controller):
    path = "/accounts/{account_id:uuid}/roles"
    tags = ["roles"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="The account's own roles (owner, manager, staff)")
    async def list_roles(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        page: PageDep,
    ) -> list[schemas.RoleOut]:
        return await _list(runtime, principal, Action.ACCOUNT_ROLE_READ, account_id, page)

    @post(
        "",
        summary="Create a role for this account (owner, manager, staff)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.RoleCreate],
    ) -> Response[schemas.RoleOut]:
        role = await _create(
            runtime, principal, catalogue, Action.ACCOUNT_ROLE_WRITE, account_id, data
        )
        return created(request, role, role.id)

    @get("/{role_id:uuid}", summary="One of the account's roles")
    async def read(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        role_id: FromPath[uuid.UUID],
    ) -> schemas.RoleOut:
        return await _read(runtime, principal, Action.ACCOUNT_ROLE_READ, account_id, role_id)

    @patch(
        "/{role_id:uuid}", summary="Change one of the account's roles", responses=problems(409, 422)
    )
    async def update(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        role_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.RoleUpdate],
    ) -> schemas.RoleOut:
        return await _update(
            runtime, principal, catalogue, Action.ACCOUNT_ROLE_WRITE, account_id, role_id, data
        )

    @delete("/{role_id:uuid}", summary="Delete one of the account's roles", responses=problems(409))
    async def remove(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        role_id: FromPath[uuid.UUID],
    ) -> None:
        await _delete(runtime, principal, Action.ACCOUNT_ROLE_WRITE, account_id, role_id)
