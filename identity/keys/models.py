"""Token signing keys; private parts only ever stored encrypted."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import Base, now_column

MAX_KID = 64


class SigningKey(Base):
    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(MAX_KID), primary_key=True)
    alg: Mapped[str] = mapped_column(String(10))
    public_jwk: Mapped[dict[str, Any]]
    # The private JWK, encrypted with a key derived from the service's secret key.
    private_jwk_encrypted: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    # Keys not retired are published; the newest of them signs once every process has had
    # time to publish it (keys.service.signer). Retired keys leave the JWKS.
    retired_at: Mapped[datetime | None]
