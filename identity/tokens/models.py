"""What the OAuth endpoints issue and remember: codes, refresh tokens, consents."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from identity.db.base import DIGEST, Base, now_column, uuid_pk


class AuthorizationCode(Base):
    __tablename__ = "authorization_codes"

    # Looked up by the SHA-256 of the code; the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(DIGEST, primary_key=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    # Indexed: a sign-out, a password change and a disabled user find the user's codes by it.
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE")
    )
    session_id: Mapped[uuid.UUID | None]
    redirect_uri: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    resources: Mapped[list[str]] = mapped_column(default=list)
    nonce: Mapped[str | None] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    auth_time: Mapped[datetime]
    amr: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = now_column()
    # Indexed for housekeeping, which deletes codes some time after they expire.
    expires_at: Mapped[datetime] = mapped_column(index=True)
    consumed_at: Mapped[datetime | None]
    # The jti of the access token issued on redemption: a replay puts it on the revocation list.
    access_jti: Mapped[str | None] = mapped_column(String(64))
    # When that token expires, as issued: IDENTITY_ACCESS_TOKEN_TTL may have been lowered since.
    access_expires_at: Mapped[datetime | None]


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = uuid_pk()
    token_hash: Mapped[str] = mapped_column(DIGEST, unique=True)
    # Every rotation keeps the family; reuse of a rotated token revokes the whole family.
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[uuid.UUID | None]
    # That session's ``sid``, for the ID tokens a refresh issues: kept here because
    # housekeeping deletes the session once it expires, while its refresh tokens live on.
    sid: Mapped[uuid.UUID | None]
    # The code this family came from, so a replayed code can revoke what it issued.
    code_hash: Mapped[str | None] = mapped_column(DIGEST, index=True)
    scope: Mapped[str] = mapped_column(Text)
    resources: Mapped[list[str]] = mapped_column(default=list)
    auth_time: Mapped[datetime | None]
    amr: Mapped[list[str]] = mapped_column(default=list)
    created_at: Mapped[datetime] = now_column()
    # Indexed for housekeeping, which deletes tokens once they expire.
    expires_at: Mapped[datetime] = mapped_column(index=True)
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    # The jti of the access token issued together with this refresh token: revoking the
    # family (reuse, a replayed code, RFC 7009) puts it on the revocation list too.
    access_jti: Mapped[str | None] = mapped_column(String(64))
    # When that token expires, as issued: IDENTITY_ACCESS_TOKEN_TTL may have been lowered since.
    access_expires_at: Mapped[datetime | None]


class RevokedAccessToken(Base):
    """Access tokens revoked before they expire, by ``jti``; rows outlive them by nothing."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class Consent(Base):
    __tablename__ = "consents"
    __table_args__ = (UniqueConstraint("user_id", "client_id"),)

    id: Mapped[uuid.UUID] = uuid_pk()
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(
        ForeignKey("oauth_clients.client_id", ondelete="CASCADE"), index=True
    )
    # Space-separated scopes granted so far; a request within them needs no new consent.
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = now_column()


class ConsentAccount(Base):
    """A customer account a consent was given for. The client's tokens for the user there
    carry that account's permissions: consent for one account does not cover another. Goes
    with the consent, and with the account; not with a membership, as tokens carry the
    member's permissions as they are when issued."""

    __tablename__ = "consent_accounts"

    consent_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("consents.id", ondelete="CASCADE"), primary_key=True
    )
    # Indexed: deleting an account finds its rows by it.
    account_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
