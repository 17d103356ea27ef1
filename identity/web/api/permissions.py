"""The permission catalogue: /api/v1/permissions."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.params import JSONBody

from identity.clock import utcnow
from identity.permissions import registration
from identity.permissions.access import Action
from identity.permissions.catalogue import check_registered_name
from identity.permissions.models import Permission
from identity.web.api import schemas
from identity.web.api.common import CatalogueDep, PrincipalDep, allow
from identity.web.dependencies import RuntimeDep
from identity.web.openapi import problems


class PermissionController(Controller):
    path = "/permissions"
    tags = ["permissions"]  # noqa: RUF012 - Litestar reads it as a class attribute

    @get("", summary="Every permission: the built-in catalogue, then those registered")
    async def list_permissions(
        self, runtime: RuntimeDep, principal: PrincipalDep, catalogue: CatalogueDep
    ) -> list[schemas.PermissionOut]:
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.PERMISSION_READ, utcnow())
            entries = await catalogue.entries(session)
        builtin = catalogue.policies.builtin_names
        return [
            schemas.PermissionOut(e.name, e.label, e.description, e.name in builtin)
            for e in entries
        ]

    @post(
        "",
        summary="Register a consuming service's permission, e.g. billing:refunds (staff)",
        responses=problems(409, 422),
    )
    async def register(
        self,
        runtime: RuntimeDep,
        principal: PrincipalDep,
        catalogue: CatalogueDep,
        data: JSONBody[schemas.PermissionCreate],
    ) -> schemas.PermissionOut:
        now = utcnow()
        async with runtime.db.transaction() as session:
            await allow(session, runtime, principal, Action.PERMISSION_REGISTER, now)
            row = await registration.register_permission(
                session,
                principal.actor,
                Permission(
                    name=check_registered_name(data.name),
                    label_en=data.label.en,
                    label_es=data.label.es,
                    description_en=data.description.en,
                    description_es=data.description.es,
                    created_at=now,
                ),
                catalogue,
            )
        return schemas.PermissionOut(
            row.name,
            {"en": row.label_en, "es": row.label_es},
            {"en": row.description_en, "es": row.description_es},
            builtin=False,
        )
