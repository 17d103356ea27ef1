"""Customer accounts, who belongs to them, and what each member may do."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column, sparse_index, uuid_pk


class Account(Base):
    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = uuid_pk()
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = now_column()


class Permission(Base):
    """Permissions registered at run time for consuming services.

    The built-in catalogue lives in policies/permissions.toml; this table only adds to it.
    """

    __tablename__ = "permissions"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    label_en: Mapped[str] = mapped_column(String(200))
    label_es: Mapped[str] = mapped_column(String(200))
    description_en: Mapped[str] = mapped_column(Text, default="")
    description_es: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = now_column()


class Role(Base):
    """A named bundle of permissions: a template when ``account_id`` is null."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("account_id", "name"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    # The policies/roles.toml key of a template defined there (refreshed from the file);
    # null for roles made through the API.
    key: Mapped[str | None] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    # Spanish name; empty when the role has only the one name its author typed.
    name_es: Mapped[str] = mapped_column(String(100), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = now_column()


class RolePermission(Base):
    __tablename__ = "role_permissions"

    role_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(100), primary_key=True)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("account_id", "user_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    is_owner: Mapped[bool] = mapped_column(default=False)
    # "All permissions" is kept as such so it covers permissions added to the catalogue later.
    all_permissions: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = now_column()


class MembershipPermission(Base):
    __tablename__ = "membership_permissions"
    # For housekeeping, which deletes grants some time after they expire.
    __table_args__ = (sparse_index("membership_permissions", "expires_at"),)

    membership_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(100), primary_key=True)
    expires_at: Mapped[datetime | None]


class MembershipRole(Base):
    __tablename__ = "membership_roles"
    # As membership_permissions.
    __table_args__ = (sparse_index("membership_roles", "expires_at"),)

    membership_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), primary_key=True
    )
    role_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("roles.id", ondelete="CASCADE"), primary_key=True
    )
    expires_at: Mapped[datetime | None]


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    email: Mapped[str] = mapped_column(String(320), index=True)
    token_hash: Mapped[str] = mapped_column(DIGEST, unique=True)
    invited_by: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # The client that sent it with its own token, as staff (``invited_by`` None): the
    # invitation lasts while that client may still act as staff. No foreign key: a client
    # deleted since must end it, not leave an invitation with no sender to look at.
    invited_by_client: Mapped[str | None] = mapped_column(String(64))
    all_permissions: Mapped[bool] = mapped_column(default=False)
    # {"permissions": [{"name": ..., "expires_at": ...}], "roles": [...]}: applied on accept.
    grants: Mapped[dict[str, Any]] = mapped_column(default=dict)
    locale: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = now_column()
    expires_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
