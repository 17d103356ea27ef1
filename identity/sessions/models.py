"""Browser sessions on the hosted pages."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column, utcnow, uuid_pk


class BrowserSession(Base):
    __tablename__ = "browser_sessions"

    id: Mapped[uuid.UUID] = uuid_pk()
    # The cookie carries a random token; only its SHA-256 is kept.
    token_hash: Mapped[str] = mapped_column(DIGEST, unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The ``sid`` of the ID tokens issued through this session (OIDC Front-Channel Logout §3):
    # random, so it tells the apps that see it nothing of the cookie. The same user signing
    # in again before it expires (prompt=login, max_age) keeps it; any other sign-in starts
    # a new one. None for sessions begun before ID tokens carried it.
    sid: Mapped[uuid.UUID | None]
    amr: Mapped[list[str]] = mapped_column(default=list)
    auth_time: Mapped[datetime]
    created_at: Mapped[datetime] = now_column()
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Both indexed for housekeeping, which deletes sessions once expired or revoked.
    expires_at: Mapped[datetime] = mapped_column(index=True)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(300))
    revoked_at: Mapped[datetime | None] = mapped_column(index=True)
