"""Invitations of an account: /api/v1/accounts/{account_id}/invitations."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Request, Response, delete, get, post
from litestar.params import FromPath, JSONBody

from identity.clock import utcnow
from identity.permissions import invitations
from identity.permissions.access import Action, check_manager_invite, delegation_for
from identity.permissions.invitations import InvitationRequest
from identity.web.api import schemas
from identity.web.api.common import (
    CatalogueDep,
    PageDep,
    PrincipalDep,
    allow,
    created,
    grants_in,
    invitation_out,
    role_grants_in,
)
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


class InvitationController(Controller):
    path = "/accounts/{account_id:uuid}/invitations"
    tags = ["invitations"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Pending invitations (owner, manager, staff)")
    async def list_pending(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        page: PageDep,
    ) -> list[schemas.InvitationOut]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.INVITATION_READ, now, account_id)
            found = await invitations.pending(session, account_id, now, page)
        return [invitation_out(invitation) for invitation in found]

    @get(
        "/{invitation_id:uuid}",
        summary="A pending invitation (owner, manager, staff)",
    )
    async def read(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        invitation_id: FromPath[uuid.UUID],
    ) -> schemas.InvitationOut:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.INVITATION_READ, now, account_id)
            invitation = await invitations.pending_one(session, account_id, invitation_id, now)
        return invitation_out(invitation)

    @post(
        "",
        summary="Invite an email with all or chosen permissions and roles",
        responses=problems(409, 422, 429),
        response_headers=LOCATION,
    )
    async def invite(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        account_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.InvitationCreate],
    ) -> Response[schemas.InvitationOut]:
        now = utcnow()
        async with runtime.db.transaction() as session:
            relation = await allow(
                session, runtime, principal, Action.INVITATION_WRITE, now, account_id
            )
            check_manager_invite(relation, all_permissions=data.all_permissions)
            invitation = await invitations.invite(
                session,
                principal.actor,
                account_id,
                InvitationRequest(
                    email=data.email,
                    all_permissions=data.all_permissions,
                    permissions=grants_in(data.permissions) or [],
                    roles=role_grants_in(data.roles) or [],
                    locale=data.locale,
                ),
                catalogue=catalogue,
                limiter=runtime.limiter,
                settings=runtime.settings,
                now=now,
                delegation=await delegation_for(
                    session, principal.caller.user_id, relation, account_id, now
                ),
                by_staff=principal.caller.is_staff,
            )
        runtime.mail.wake()
        return created(request, invitation_out(invitation), invitation.id)

    @post(
        "/{invitation_id:uuid}/resend",
        status_code=200,
        summary="Send a new link (the previous one stops working) with a new expiry",
        responses=problems(409, 429),
    )
    async def resend(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        invitation_id: FromPath[uuid.UUID],
    ) -> schemas.InvitationOut:
        now = utcnow()
        async with runtime.db.transaction() as session:
            relation = await allow(
                session, runtime, principal, Action.INVITATION_WRITE, now, account_id
            )
            invitation = await invitations.resend(
                session,
                principal.actor,
                account_id,
                invitation_id,
                relation=relation,
                limiter=runtime.limiter,
                settings=runtime.settings,
                now=now,
            )
        runtime.mail.wake()
        return invitation_out(invitation)

    @delete("/{invitation_id:uuid}", summary="Cancel a pending invitation")
    async def cancel(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        account_id: FromPath[uuid.UUID],
        invitation_id: FromPath[uuid.UUID],
    ) -> None:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.INVITATION_WRITE, now, account_id)
            await invitations.cancel(session, principal.actor, account_id, invitation_id, now)
