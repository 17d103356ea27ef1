"""What every management API handler shares: dependencies, the authorization step, and the
conversion of domain objects to response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, TypeAlias, TypeVar
from urllib.parse import quote

from litestar import Request, Response
from litestar.di import NamedDependency
from litestar.params import Parameter
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.audit.models import AuditEvent
from identity.audit.service import readable_details
from identity.db.paging import Page
from identity.permissions.access import Action, Relation, authorize
from identity.permissions.account_roles import RoleView
from identity.permissions.catalogue import Catalogue, once_each
from identity.permissions.grants import Grant, RoleGrant, lapsed
from identity.permissions.members import MemberView
from identity.permissions.models import Account, Invitation
from identity.runtime import Runtime
from identity.web.api import schemas
from identity.web.api.auth import Principal
from identity.web.dependencies import RuntimeDep

PrincipalDep: TypeAlias = NamedDependency[Principal]
CatalogueDep: TypeAlias = NamedDependency[Catalogue]
Offset = Annotated[int, Parameter(ge=0, le=1_000_000, description="items to skip")]
Limit = Annotated[int, Parameter(ge=1, le=200, description="items per page")]
PageDep: TypeAlias = NamedDependency[Page]
Body = TypeVar("Body")


def provide_page(offset: Offset = 0, limit: Limit = 50) -> Page:
    """The page of a list the query asks for: every list takes the same two parameters,
    with the same limits (out of range is 400 naming the parameter, never clamped)."""
    return Page(offset, limit)


def created(request: Request[Any, Any, Any], body: Body, new_id: object) -> Response[Body]:
    """201 naming what was made in ``Location`` (RFC 9110 §15.3.2): without it, the created
    resource is the URL the request was sent to, the collection. Each collection keeps its
    items one path segment below it."""
    location = f"{request.url.path.rstrip('/')}/{quote(str(new_id), safe='')}"
    return Response(body, status_code=201, headers={"Location": location})


async def provide_catalogue(runtime: RuntimeDep) -> Catalogue:
    # Role templates must be rows before anything lists or grants them.
    await runtime.catalogue.ensure_templates(runtime.db)
    return runtime.catalogue


async def allow(
    session: AsyncSession,
    runtime: Runtime,
    principal: Principal,
    action: Action,
    now: datetime,
    account_id: uuid.UUID | None = None,
) -> Relation:
    return await authorize(session, principal.caller, action, now, runtime.catalogue, account_id)


def grants_in(items: list[schemas.GrantIn] | None) -> list[Grant] | None:
    if items is None:
        return None
    once_each("permissions", [g.name for g in items])
    return [Grant(g.name, g.expires_at) for g in items]


def role_grants_in(items: list[schemas.RoleGrantIn] | None) -> list[RoleGrant] | None:
    if items is None:
        return None
    once_each("roles", [g.role_id for g in items])
    return [RoleGrant(g.role_id, g.expires_at) for g in items]


def account_out(account: Account) -> schemas.AccountOut:
    return schemas.AccountOut(account.id, account.name, account.created_at)


def member_out(view: MemberView, now: datetime) -> schemas.MemberOut:
    membership, user = view.membership, view.user
    return schemas.MemberOut(
        user_id=user.id,
        email=user.email,
        name=user.name,
        owner=membership.is_owner,
        all_permissions=membership.all_permissions,
        permissions=[
            schemas.PermissionGrantOut(g.permission, g.expires_at, lapsed(g.expires_at, now))
            for g in view.permissions
        ],
        roles=[
            schemas.RoleGrantOut(r.id, r.name, g.expires_at, lapsed(g.expires_at, now))
            for g, r in view.roles
        ],
        effective_permissions=sorted(view.effective),
        joined_at=membership.created_at,
        disabled=user.disabled,
    )


def role_out(view: RoleView) -> schemas.RoleOut:
    role = view.role
    return schemas.RoleOut(
        id=role.id,
        account_id=role.account_id,
        name=role.name,
        name_es=role.name_es,
        description=role.description,
        permissions=view.permissions,
        key=role.key,
    )


def invitation_out(invitation: Invitation) -> schemas.InvitationOut:
    return schemas.InvitationOut(
        id=invitation.id,
        email=invitation.email,
        all_permissions=invitation.all_permissions,
        grants=invitation.grants,
        locale=invitation.locale,
        invited_by=invitation.invited_by,
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
    )


def user_out(user: User) -> schemas.UserOut:
    return schemas.UserOut(
        id=user.id,
        email=user.email,
        name=user.name,
        email_verified=user.email_verified,
        is_admin=user.is_admin,
        disabled=user.disabled,
        created_at=user.created_at,
    )


def event_out(event: AuditEvent) -> schemas.AuditEventOut:
    return schemas.AuditEventOut(
        id=event.id,
        occurred_at=event.occurred_at,
        action=event.action,
        actor_user_id=event.actor_user_id,
        actor_client_id=event.actor_client_id,
        account_id=event.account_id,
        target_type=event.target_type,
        target_id=event.target_id,
        ip=event.ip,
        request_id=event.request_id,
        details=readable_details(event.details),
    )
