"""Users, for staff: /api/v1/users."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, patch, post
from litestar.params import FromPath, JSONBody, Parameter

from identity.accounts.onboarding import onboard_user
from identity.accounts.service import disable_user, enable_user, update_user
from identity.clock import utcnow
from identity.mfa.service import SecondFactor
from identity.permissions import directory
from identity.permissions.access import Action
from identity.recovery.service import assisted_email_change
from identity.web.api import schemas
from identity.web.api.common import PageDep, PrincipalDep, allow, created, user_out
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import LOCATION, problems


class UserController(Controller):
    path = "/users"
    tags = ["users"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Users by email (staff)", responses=problems(422))
    async def list_users(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        page: PageDep,
        email: Annotated[
            str | None, Parameter(max_length=320, description="part of the email address")
        ] = None,
    ) -> list[schemas.UserOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_READ, utcnow())
            users = await directory.list_users(session, email, page)
        return [user_out(user) for user in users]

    @post(
        "",
        status_code=201,
        summary="Create a user without a password; an email lets them choose it (staff, audited)",
        responses=problems(409, 422),
        response_headers=LOCATION,
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        runtime: RuntimeDep,
        principal: PrincipalDep,
        data: JSONBody[schemas.UserCreate],
    ) -> Response[schemas.UserOut]:
        async with runtime.db.transaction() as session:
            now = utcnow()
            await allow(session, runtime, principal, Action.USER_WRITE, now)
            user = await onboard_user(
                session,
                runtime.settings,
                principal.actor,
                email=data.email,
                name=data.name,
                is_admin=data.is_admin,
                locale=data.locale,
                now=now,
            )
        runtime.mail.wake()
        return created(request, user_out(user), user.id)

    @get("/{user_id:uuid}", summary="One user (staff)")
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, user_id: FromPath[uuid.UUID]
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_READ, utcnow())
            user = await directory.user(session, user_id)
        return user_out(user)

    @patch(
        "/{user_id:uuid}",
        summary="Rename a user or set or unset administrator; never the last one (staff, audited)",
        responses=problems(409, 422),
    )
    async def update(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.UserUpdate],
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_WRITE, utcnow())
            given = data.given()
            user = await update_user(
                session,
                principal.actor,
                user_id,
                name=given.get("name"),
                is_admin=given.get("is_admin"),
            )
        return user_out(user)

    @post(
        "/{user_id:uuid}/second-factor/reset",
        status_code=204,
        summary="Reset a user's second factor (staff, audited)",
        responses=problems(422),
    )
    async def reset_second_factor(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.SecondFactorReset],
    ) -> None:
        async with runtime.db.transaction() as session:
            now = utcnow()
            await allow(session, runtime, principal, Action.USER_RECOVER, now)
            await SecondFactor.from_runtime(runtime).staff_reset(
                session, principal.actor, user_id, data.reason, now
            )
        runtime.mail.wake()

    @post(
        "/{user_id:uuid}/disable",
        status_code=200,
        summary=(
            "Disable a user: sign-in refused, sessions ended, consumers told; never the last "
            "administrator (staff, audited)"
        ),
        responses=problems(409, 422),
    )
    async def disable(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.UserDisable],
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            now = utcnow()
            await allow(session, runtime, principal, Action.USER_RECOVER, now)
            user = await disable_user(session, principal.actor, user_id, data.reason, now)
        runtime.webhooks.wake()
        return user_out(user)

    @post(
        "/{user_id:uuid}/enable",
        status_code=200,
        summary="Enable a disabled user: sign-in allowed again, consumers told (staff, audited)",
        responses=problems(422),
    )
    async def enable(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.UserDisable],
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_RECOVER, utcnow())
            user = await enable_user(session, principal.actor, user_id, data.reason)
        runtime.webhooks.wake()
        return user_out(user)

    @post(
        "/{user_id:uuid}/email",
        status_code=200,
        summary="Assisted recovery: move a user to a new sign-in email (staff, audited)",
        responses=problems(409, 422),
    )
    async def change_email(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        user_id: FromPath[uuid.UUID],
        data: JSONBody[schemas.AssistedEmailChange],
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            now = utcnow()
            await allow(session, runtime, principal, Action.USER_RECOVER, now)
            user = await assisted_email_change(
                session, runtime.settings, principal.actor, user_id, data.email, data.reason, now
            )
        runtime.mail.wake()
        return user_out(user)
