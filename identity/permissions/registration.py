"""Consuming services' permissions added to the catalogue, within what a token can carry."""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.display_names import display_name
from identity.errors import Conflict
from identity.permissions import repository
from identity.permissions.catalogue import (
    MAX_PERMISSION_DESCRIPTION,
    MAX_PERMISSION_LABEL,
    Catalogue,
)
from identity.permissions.models import Permission
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES

# An owner's access token lists the whole catalogue, and services refuse a token longer than
# the resource kit's limit (8 KB) as malformed: past that, every owner would be locked out of
# every service at their next token. Half the limit for the list leaves the rest of the token
# (a signature, the other claims, base64's third more) room below it.
MAX_CATALOGUE = DEFAULT_MAX_TOKEN_BYTES // 2
CATALOGUE_FULL = (
    "The permission catalogue is full: an owner's access token lists every permission, and"
    f" their names may take at most {MAX_CATALOGUE} bytes so that services still accept it."
)


def _listed_size(names: Iterable[str]) -> int:
    """The bytes of the ``permissions`` claim listing ``names``."""
    return len(json.dumps(sorted(names), separators=(",", ":")).encode())


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
    if permission.name not in names and _listed_size({*names, permission.name}) > MAX_CATALOGUE:
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
