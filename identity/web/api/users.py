"""Users, for staff: /api/v1/users."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get
from litestar.params import FromPath, Parameter

from identity.clock import utcnow
from identity.permissions import service
from identity.permissions.access import Action
from identity.web.api import schemas
from identity.web.api.common import Limit, Offset, PrincipalDep, allow, user_out
from identity.web.dependencies import RuntimeDep


class UserController(Controller):
    path = "/users"
    tags = ["users"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Users by email (staff)")
    async def list_users(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        email: Annotated[
            str | None, Parameter(max_length=320, description="part of the email address")
        ] = None,
        offset: Offset = 0,
        limit: Limit = 50,
    ) -> list[schemas.UserOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_READ, utcnow())
            users = await service.list_users(session, email, offset, limit)
        return [user_out(user) for user in users]

    @get("/{user_id:uuid}", summary="One user (staff)")
    async def read(
        self, runtime: RuntimeDep, principal: PrincipalDep, user_id: FromPath[uuid.UUID]
    ) -> schemas.UserOut:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.USER_READ, utcnow())
            user = await service.user(session, user_id)
        return user_out(user)
