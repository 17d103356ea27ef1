"""Authorization decisions for services that prefer to ask: POST /api/v1/authz/check."""

from __future__ import annotations

from litestar import Controller, post
from litestar.params import JSONBody

from identity.clock import utcnow
from identity.permissions import effective
from identity.permissions.access import Action
from identity.web.api import schemas
from identity.web.api.common import CatalogueDep, PrincipalDep, allow
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import problems

MAX_BODY = 256 * 1024


class AuthzController(Controller):
    path = "/authz"
    tags = ["authorization"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @post(
        "/check",
        status_code=200,
        # A full batch of MAX_CHECKS, names as long as they may be, is about 230 KB: above
        # the general body cap.
        request_max_body_size=MAX_BODY,
        summary="Allow or deny each (user, account, permission), in order (identity:authz)",
        responses=problems(422),
    )
    async def check(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        data: JSONBody[schemas.AuthzRequest],
    ) -> schemas.AuthzResponse:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.AUTHZ_CHECK, now)
            decisions = await effective.check_batch(
                session,
                [(c.user_id, c.account_id, c.permission) for c in data.checks],
                now,
                catalogue,
            )
        return schemas.AuthzResponse(decisions)
