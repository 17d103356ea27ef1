"""People who sign in, and the secrets that prove it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column, utcnow, uuid_pk


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = uuid_pk()
    # Stored normalised (see accounts.emails.normalise_email): unique regardless of case.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email_verified: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    disabled: Mapped[bool] = mapped_column(default=False)
    locale: Mapped[str | None] = mapped_column(String(16))
    # Raised by every disable and every change of sign-in email, never lowered: an email
    # change link works only while it is the value read when the link was asked for (see
    # recovery.email_change). A count, not a time: servers' clocks differ.
    email_change_epoch: Mapped[int] = mapped_column(server_default="0")
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PasswordCredential(Base):
    __tablename__ = "password_credentials"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # An argon2id PHC string; its parameters say when it needs rehashing.
    hash: Mapped[str] = mapped_column(String(255))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


class PasswordResetToken(Base):
    __tablename__ = "password_reset_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(DIGEST, unique=True)
    created_at: Mapped[datetime] = now_column()
    expires_at: Mapped[datetime]
    # The changed_at of the password the token was issued for, None if the user had none: the
    # token resets only that password (matched exactly, not by clock; see recovery.service).
    password_set_at: Mapped[datetime | None]
    # When the token was spent: used for a reset, or ended unused by a change of sign-in email.
    used_at: Mapped[datetime | None]
