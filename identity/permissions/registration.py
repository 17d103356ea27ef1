"""Consuming services' permissions added to the catalogue, within what a token can carry."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.display_names import display_name
from identity.errors import Conflict
from identity.permissions import repository
from identity.permissions.catalogue import (
    CATALOGUE_FULL,
    MAX_CATALOGUE,
    MAX_PERMISSION_DESCRIPTION,
    MAX_PERMISSION_LABEL,
    Catalogue,
    listed_size,
)
from identity.permissions.models import Permission


async def register_permission(
    session: AsyncSession,
    actor: Actor,
    permission: Permission,
    catalogue: Catalogue,
) -> Permission:
    """Add a consuming service's permission (``billing:refunds``) with its labels."""
    # The Users page shows each label beside a checkbox and the description as its tooltip:
    # both are held to the rules of names, so a label of spaces is none.
    for language in ("en", "es"):
        for text, limit, required in (
            ("label", MAX_PERMISSION_LABEL, True),
            ("description", MAX_PERMISSION_DESCRIPTION, False),
        ):
            column = f"{text}_{language}"
            checked = display_name(
                getattr(permission, column) or "",  # a description left out is empty
                limit,
                required=required,
                field=f"{text}.{language}",
                what=text,
            )
            setattr(permission, column, checked)
    if permission.name in catalogue.policies.builtin_names:
        raise Conflict("This permission exists already.")
    await repository.lock_catalogue(session)
    names = await catalogue.names(session)
    if permission.name not in names and listed_size({*names, permission.name}) > MAX_CATALOGUE:
        raise Conflict(CATALOGUE_FULL)
    try:
        await repository.insert_permission(session, permission)
    except repository.Duplicate:
        raise Conflict("This permission exists already.") from None
    await record_as(
        session,
        actor,
        "permission.registered",
        account_id=None,
        target=("permission", permission.name),
        new={"label": {"en": permission.label_en, "es": permission.label_es}},
    )
    return permission
