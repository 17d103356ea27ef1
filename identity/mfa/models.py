"""Second factors: TOTP secrets and single-use recovery codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Text
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column, sparse_index, uuid_pk


class TotpSecret(Base):
    __tablename__ = "totp_secrets"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    # The base32 secret is needed in clear to compute codes, so it is encrypted, not hashed.
    secret_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    confirmed_at: Mapped[datetime | None]
    # The last accepted time step: a code is accepted once only.
    last_used_step: Mapped[int | None]


class RecoveryCode(Base):
    __tablename__ = "recovery_codes"
    # For housekeeping, which deletes used codes.
    __table_args__ = (sparse_index("recovery_codes", "used_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(DIGEST, unique=True)
    created_at: Mapped[datetime] = now_column()
    used_at: Mapped[datetime | None]
