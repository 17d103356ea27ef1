"""Subscriptions, the events emitted, and each event's delivery to each subscription."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import Base, now_column, utcnow, uuid_pk, waiting_index
from identity.webhooks import url_key


def _url_digest(context: DefaultExecutionContext) -> str:
    return url_key.digest(context.get_current_parameters()["url"])


class WebhookSubscription(Base):
    """A consuming service's endpoint and the event types it wants."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[uuid.UUID] = uuid_pk()
    url: Mapped[str] = mapped_column(String(2000))
    # One subscription per URL: a second would post every event there twice, signed with a
    # secret the consumer does not keep. Unique by digest: PostgreSQL's index of the URLs
    # themselves refuses one over about 2,700 bytes. Of the URL normalised (url_key), while
    # ``url`` keeps it as staff wrote it: what they see and what the audit log recorded.
    # Made from the URL by every insert that does not give it.
    url_digest: Mapped[str] = mapped_column(
        String(64), index=True, unique=True, default=_url_digest
    )
    event_types: Mapped[list[str]]
    # HMAC needs the secret itself, so it is kept encrypted (Encryptor "webhooks"), not hashed.
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = now_column()


class WebhookEvent(Base):
    __tablename__ = "webhook_events"

    id: Mapped[uuid.UUID] = uuid_pk()
    type: Mapped[str] = mapped_column(String(100))
    occurred_at: Mapped[datetime] = now_column()
    # The JSON body exactly as sent: every attempt to every consumer carries the same bytes.
    body: Mapped[str] = mapped_column(Text)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        waiting_index("webhook_deliveries", "delivered_at"),
        # ``due`` takes each subscription's first due deliveries, however large another's
        # backlog.
        waiting_index("webhook_deliveries", "delivered_at", per="subscription_id"),
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # A dispatcher leases a delivery before posting it, so two processes never post it at once.
    leased_until: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(500))
