"""The outgoing-mail queue."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import Base, now_column, utcnow, uuid_pk, waiting_index

MAX_SUBJECT = 300


class OutgoingEmail(Base):
    __tablename__ = "outgoing_emails"
    __table_args__ = (waiting_index("outgoing_emails", "sent_at"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    to_address: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(MAX_SUBJECT))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A sender leases a message before sending it, so two processes never send it at once.
    leased_until: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
