"""Request and response bodies of the account management API, as the OpenAPI document shows
them. Requests refuse unknown fields, so a typo is an error naming it, not a silent no-op."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from identity.permissions.catalogue import ANY_NAME_PATTERN, MAX_NAME

AwareDatetime = Annotated[datetime, Meta(tz=True, description="RFC 3339 with a time zone")]
PermissionName = Annotated[
    str, Meta(pattern=ANY_NAME_PATTERN, max_length=MAX_NAME, examples=["tickets"])
]
Label = Annotated[str, Meta(min_length=1, max_length=200)]
Description = Annotated[str, Meta(max_length=2000)]
RoleName = Annotated[str, Meta(min_length=1, max_length=100)]
MAX_ITEMS = 500


class Request(msgspec.Struct, forbid_unknown_fields=True):
    """A request body: unknown fields are refused."""


class Change(Request):
    """A PATCH body: each field given replaces that part, a field left out stays as it is.
    Null is refused, not read as "leave it": ``{"permissions": null}`` reads as clearing a
    member's permissions, and a manager told 200 while the member kept them all would
    believe them gone."""

    def given(self) -> dict[str, Any]:
        """The fields the body gave, by name."""
        return {
            name: value
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not UNSET
        }


# --- accounts and members ------------------------------------------------------------------


class AccountCreate(Request):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    owner_user_id: uuid.UUID


class AccountUpdate(Request):
    name: Annotated[str, Meta(min_length=1, max_length=200)]


class AccountOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    created_at: datetime


class MyAccountOut(msgspec.Struct):
    """An account the caller belongs to, as an account picker lists it."""

    id: uuid.UUID
    name: str
    owner: bool
    permissions: list[str]


class GrantIn(Request):
    name: PermissionName
    expires_at: AwareDatetime | None = None


class RoleGrantIn(Request):
    role_id: uuid.UUID
    expires_at: AwareDatetime | None = None


Grants = Annotated[list[GrantIn], Meta(max_length=MAX_ITEMS)]
RoleGrants = Annotated[list[RoleGrantIn], Meta(max_length=MAX_ITEMS)]


class MemberAdd(Request):
    user_id: uuid.UUID
    owner: bool = False
    all_permissions: bool = False
    permissions: Grants = msgspec.field(default_factory=list)
    roles: RoleGrants = msgspec.field(default_factory=list)


class MemberUpdate(Change):
    owner: bool | UnsetType = UNSET
    all_permissions: bool | UnsetType = UNSET
    permissions: Grants | UnsetType = UNSET
    roles: RoleGrants | UnsetType = UNSET


class OwnershipHandOver(Request):
    to_user_id: uuid.UUID


class PermissionGrantOut(msgspec.Struct):
    name: str
    expires_at: datetime | None
    expired: bool


class RoleGrantOut(msgspec.Struct):
    role_id: uuid.UUID
    name: str
    expires_at: datetime | None
    expired: bool


class MemberOut(msgspec.Struct):
    user_id: uuid.UUID
    email: str
    name: str
    owner: bool
    all_permissions: bool
    permissions: list[PermissionGrantOut]
    roles: list[RoleGrantOut]
    effective_permissions: list[str]
    joined_at: datetime
    disabled: Annotated[
        bool,
        Meta(
            description="Staff disabled the user: they cannot sign in, and hold none of these"
            " permissions in tokens or checks until enabled again."
        ),
    ]


# --- invitations ---------------------------------------------------------------------------


class InvitationCreate(Request):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    all_permissions: bool = False
    permissions: Grants = msgspec.field(default_factory=list)
    roles: RoleGrants = msgspec.field(default_factory=list)
    locale: Literal["en", "es"] | None = None


class InvitationOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    all_permissions: bool
    grants: dict[str, Any]
    locale: str | None
    invited_by: uuid.UUID | None
    created_at: datetime
    expires_at: datetime


# --- roles and permissions -------------------------------------------------------------------


class RoleCreate(Request):
    name: RoleName
    name_es: Annotated[str, Meta(max_length=100)] = ""
    description: Description = ""
    permissions: Annotated[list[PermissionName], Meta(max_length=MAX_ITEMS)] = msgspec.field(
        default_factory=list
    )


class RoleUpdate(Change):
    name: RoleName | UnsetType = UNSET
    name_es: Annotated[str, Meta(max_length=100)] | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    permissions: Annotated[list[PermissionName], Meta(max_length=MAX_ITEMS)] | UnsetType = UNSET


class RoleOut(msgspec.Struct):
    id: uuid.UUID
    account_id: uuid.UUID | None
    name: str
    name_es: str
    description: str
    permissions: list[str]
    # Set for templates defined in policies/roles.toml: change those there.
    key: str | None


class Texts(Request):
    en: Label
    es: Label


class DescriptionTexts(Request):
    en: Description = ""
    es: Description = ""


class PermissionCreate(Request):
    name: Annotated[str, Meta(max_length=MAX_NAME, examples=["billing:refunds"])]
    label: Texts
    description: DescriptionTexts = msgspec.field(default_factory=DescriptionTexts)


class PermissionOut(msgspec.Struct):
    name: str
    label: dict[str, str]
    description: dict[str, str]
    builtin: bool


# --- users, audit, decisions ----------------------------------------------------------------


class UserCreate(Request):
    """A user with no password: they get an email with a link to choose one (7 days)."""

    email: Annotated[str, Meta(min_length=3, max_length=320)]
    name: Annotated[str, Meta(max_length=200)] = ""
    is_admin: bool = False
    # The language of their emails (English without it) and of their ``locale`` claim.
    locale: Literal["en", "es"] | None = None


class UserUpdate(Change):
    name: Annotated[str, Meta(max_length=200)] | UnsetType = UNSET
    is_admin: bool | UnsetType = UNSET


class SecondFactorReset(Request):
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class UserDisable(Request):
    """Disabling or enabling a user: why, for the audit log."""

    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class AssistedEmailChange(Request):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    reason: Annotated[str, Meta(min_length=1, max_length=500)]


class UserOut(msgspec.Struct):
    id: uuid.UUID
    email: str
    name: str
    email_verified: bool
    is_admin: bool
    disabled: bool
    created_at: datetime


class AuditEventOut(msgspec.Struct):
    id: int
    occurred_at: datetime
    action: str
    actor_user_id: uuid.UUID | None
    actor_client_id: str | None
    account_id: uuid.UUID | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


class AuditPage(msgspec.Struct):
    events: list[AuditEventOut]
    # Pass as ``before_id`` for the next (older) page; null on the last page.
    next_before_id: int | None


class AuthzCheck(Request):
    user_id: uuid.UUID
    account_id: uuid.UUID
    permission: Annotated[str, Meta(min_length=1, max_length=MAX_NAME)]


MAX_CHECKS = 1000


class AuthzRequest(Request):
    checks: Annotated[list[AuthzCheck], Meta(min_length=1, max_length=MAX_CHECKS)]


class AuthzResponse(msgspec.Struct):
    # One answer per check, in the order asked.
    allowed: list[bool]


# --- OAuth clients ---------------------------------------------------------------------------

# Counts, lengths and duplicates are the service's rules, the command line's too (422).
Uris = list[str]
GrantTypes = Annotated[list[str], Meta(examples=[["authorization_code", "refresh_token"]])]
# The name's limit is the command line's, checked after trimming (422 naming the field).
ClientName = Annotated[str, Meta(description="1 to 200 characters", examples=["Billing portal"])]
ClientScope = Annotated[str, Meta(description="space-separated", examples=["openid profile"])]


class ClientCreate(Request):
    """As ``identity clients create``: the same defaults and the same rules."""

    name: ClientName
    redirect_uris: Uris = msgspec.field(default_factory=list)
    post_logout_redirect_uris: Uris = msgspec.field(default_factory=list)
    public: Annotated[
        bool, Meta(description="an SPA or native app: no secret, PKCE always; cannot change")
    ] = False
    first_party: Annotated[bool, Meta(description="no consent screen")] = False
    grant_types: GrantTypes = msgspec.field(
        default_factory=lambda: ["authorization_code", "refresh_token"]
    )
    # Default "openid profile email".
    scope: ClientScope | None = None
    resources: Uris = msgspec.field(default_factory=list)
    require_pkce: bool = True


class ClientUpdate(Change):
    """Whether the client is public cannot change."""

    name: ClientName | UnsetType = UNSET
    redirect_uris: Uris | UnsetType = UNSET
    post_logout_redirect_uris: Uris | UnsetType = UNSET
    first_party: bool | UnsetType = UNSET
    grant_types: GrantTypes | UnsetType = UNSET
    scope: ClientScope | UnsetType = UNSET
    resources: Uris | UnsetType = UNSET
    require_pkce: bool | UnsetType = UNSET
    disabled: (
        Annotated[bool, Meta(description="no tokens and no sign-ins until enabled again")]
        | UnsetType
    ) = UNSET


class ClientOut(msgspec.Struct):
    client_id: str
    name: str
    public: bool
    first_party: bool
    require_pkce: bool
    redirect_uris: list[str]
    post_logout_redirect_uris: list[str]
    grant_types: list[str]
    scope: str
    resources: list[str]
    disabled: bool
    created_at: datetime


class ClientWithSecret(ClientOut, omit_defaults=True):
    client_secret: (
        Annotated[
            str,
            Meta(description="a confidential client's secret, shown in this answer only"),
        ]
        | None
    ) = None
