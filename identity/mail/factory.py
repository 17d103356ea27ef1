"""The mail transport the settings ask for."""

from __future__ import annotations

from identity.mail.transport import OutboxTransport, SmtpTransport, Transport
from identity.settings import Settings


def create_transport(settings: Settings) -> Transport:
    if settings.smtp_url:
        return SmtpTransport(settings.smtp_url)
    return OutboxTransport(settings.outbox_dir)
