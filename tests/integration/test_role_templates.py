"""The templates of policies/roles.toml, copied into the roles table by each process."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from identity.db.engine import Database
from identity.permissions.catalogue import Catalogue, load_policies
from identity.permissions.models import Role, RolePermission
from identity.settings import Settings

PROCESSES = 4


async def test_processes_starting_together_copy_the_templates_once(database: Settings) -> None:
    # Several server processes meet the empty roles table with their first requests at once:
    # each must get on with its request, and the table must hold each template once.
    databases = [Database.from_settings(database) for _ in range(PROCESSES)]
    policies = load_policies(database.policies_dir)
    try:
        await asyncio.gather(*(Catalogue(policies).ensure_templates(db) for db in databases))
        async with databases[0].transaction() as session:
            roles = (await session.scalars(select(Role).where(Role.key.is_not(None)))).all()
            held = {
                role.key: set(
                    (
                        await session.scalars(
                            select(RolePermission.permission).where(
                                RolePermission.role_id == role.id
                            )
                        )
                    ).all()
                )
                for role in roles
            }
    finally:
        await asyncio.gather(*(db.dispose() for db in databases))
    assert len(roles) == len(policies.roles)
    assert held == {key: set(t.permissions) for key, t in policies.roles.items()}
