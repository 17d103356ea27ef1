"""Every table, imported so that ``Base.metadata`` is complete for Alembic and tests."""

from identity.accounts.models import PasswordCredential, PasswordResetToken, User
from identity.audit.models import AuditEvent
from identity.clients.models import OAuthClient
from identity.db.base import Base
from identity.keys.models import SigningKey
from identity.mail.models import OutgoingEmail
from identity.mfa.models import RecoveryCode, TotpSecret
from identity.permissions.models import (
    Account,
    Invitation,
    Membership,
    MembershipPermission,
    MembershipRole,
    Permission,
    Role,
    RolePermission,
)
from identity.sessions.models import BrowserSession
from identity.tokens.models import (
    AuthorizationCode,
    Consent,
    ConsentAccount,
    RefreshToken,
    RevokedAccessToken,
)
from identity.webhooks.models import WebhookDelivery, WebhookEvent, WebhookSubscription

metadata = Base.metadata

__all__ = [
    "Account",
    "AuditEvent",
    "AuthorizationCode",
    "BrowserSession",
    "Consent",
    "ConsentAccount",
    "Invitation",
    "Membership",
    "MembershipPermission",
    "MembershipRole",
    "OAuthClient",
    "OutgoingEmail",
    "PasswordCredential",
    "PasswordResetToken",
    "Permission",
    "RecoveryCode",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "RolePermission",
    "SigningKey",
    "TotpSecret",
    "User",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
    "metadata",
]
