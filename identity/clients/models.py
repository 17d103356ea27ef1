"""Registered OAuth clients."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column

MAX_NAME = 200


class OAuthClient(Base):
    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    # SHA-256 of a 256-bit random secret: a password hash would cap the token endpoint.
    secret_hash: Mapped[str | None] = mapped_column(DIGEST)
    is_public: Mapped[bool] = mapped_column(default=False)
    first_party: Mapped[bool] = mapped_column(default=False)
    require_pkce: Mapped[bool] = mapped_column(default=True)
    redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(default=list)
    grant_types: Mapped[list[str]] = mapped_column(default=list)
    scope: Mapped[str] = mapped_column(Text, default="openid")
    resources: Mapped[list[str]] = mapped_column(default=list)
    disabled: Mapped[bool] = mapped_column(default=False)
    # When staff last stopped the client acting for itself (disabled it, or took
    # client_credentials away). Its own access tokens are recorded nowhere to be denied one
    # by one: those issued until then stay refused once it may act for itself again.
    own_tokens_not_before: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = now_column()
