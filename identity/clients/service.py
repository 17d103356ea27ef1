"""Registering OAuth clients: the business rules behind ``identity clients create``."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clients.models import MAX_NAME, OAuthClient
from identity.clients.repository import add_client
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.errors import InvalidInput
from identity.oauth.errors import InvalidScopeError
from identity.oauth.metadata import GRANT_TYPES
from identity.oauth.resources import is_resource_uri
from identity.oauth.scopes import parse_scope

DEFAULT_SCOPE = "openid profile email"
LOOPBACK_HOSTS = ("localhost",)


@dataclass(frozen=True, slots=True)
class ClientSpec:
    name: str
    redirect_uris: list[str] = field(default_factory=list)
    post_logout_redirect_uris: list[str] = field(default_factory=list)
    public: bool = False
    first_party: bool = False
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code", "refresh_token"])
    scope: str | None = None
    resources: list[str] = field(default_factory=list)
    require_pkce: bool = True


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_redirect_uri(uri: str, *, public: bool, what: str = "redirect URI") -> str:
    """RFC 9700 §2.1 / RFC 8252: absolute, no fragment, https except on loopback; native
    (public) apps may also use a private-use scheme such as ``com.example.app:/callback``.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise InvalidInput(f"The {what} {uri!r} is not a valid URI.") from None
    if not parts.scheme or any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri):
        raise InvalidInput(f"The {what} {uri!r} must be an absolute URI without spaces.")
    if parts.fragment or "#" in uri:
        raise InvalidInput(f"The {what} {uri!r} must not contain a fragment (#...).")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise InvalidInput(f"The {what} {uri!r} has no host.")
    elif scheme == "http":
        if not _is_loopback(parts.hostname):
            raise InvalidInput(
                f"The {what} {uri!r} uses http, which is allowed only for localhost and "
                "loopback addresses; use https."
            )
    elif not public or "." not in scheme:
        raise InvalidInput(
            f"The {what} {uri!r} uses the scheme {scheme!r}: only https (or http on loopback) "
            "is allowed, and a private-use scheme in reverse-domain form (com.example.app:/cb) "
            "only for public native clients."
        )
    return uri


def check_grant_types(grant_types: list[str], *, public: bool) -> list[str]:
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise InvalidInput(
            f"Unknown grant type {unknown[0]!r}; choose from {', '.join(GRANT_TYPES)}."
        )
    if public and "client_credentials" in grant_types:
        raise InvalidInput("A public client cannot use client_credentials: it has no secret.")
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise InvalidInput("The refresh_token grant needs the authorization_code grant.")
    return list(dict.fromkeys(grant_types))


def check_scope(scope: str) -> str:
    try:
        tokens = parse_scope(scope)
    except InvalidScopeError:
        raise InvalidInput(
            f"The scope {scope!r} holds a malformed value; use space-separated words."
        ) from None
    if not tokens:
        raise InvalidInput("The scope must name at least one value.")
    return " ".join(tokens)


def check_resource(resource: str) -> str:
    if not is_resource_uri(resource):
        raise InvalidInput(
            f"The resource {resource!r} must be an absolute URI without a fragment, "
            "such as https://billing.example.com."
        )
    return resource


def build_client(spec: ClientSpec) -> tuple[OAuthClient, str | None]:
    """The client row and, for a confidential client, its secret in clear (shown once)."""
    name = spec.name.strip()
    if not name:
        raise InvalidInput("The client needs a name.")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"The client's name must be at most {MAX_NAME} characters.")
    if spec.public and not spec.require_pkce:
        raise InvalidInput(
            "--no-require-pkce is only for confidential clients: public ones always use PKCE."
        )
    grant_types = check_grant_types(spec.grant_types, public=spec.public)
    redirect_uris = [check_redirect_uri(u, public=spec.public) for u in spec.redirect_uris]
    if "authorization_code" in grant_types and not redirect_uris:
        raise InvalidInput("The authorization_code grant needs at least one --redirect-uri.")
    post_logout = [
        check_redirect_uri(u, public=spec.public, what="post-logout redirect URI")
        for u in spec.post_logout_redirect_uris
    ]
    secret = None if spec.public else random_token(32)
    client = OAuthClient(
        client_id=random_token(16),
        name=name,
        secret_hash=digest(secret) if secret is not None else None,
        is_public=spec.public,
        first_party=spec.first_party,
        require_pkce=spec.require_pkce or spec.public,
        redirect_uris=list(dict.fromkeys(redirect_uris)),
        post_logout_redirect_uris=list(dict.fromkeys(post_logout)),
        grant_types=grant_types,
        scope=check_scope(spec.scope if spec.scope is not None else DEFAULT_SCOPE),
        resources=list(dict.fromkeys(check_resource(r) for r in spec.resources)),
        created_at=utcnow(),
    )
    return client, secret


async def register_client(session: AsyncSession, spec: ClientSpec) -> dict[str, Any]:
    """Store a new client; the returned dict is what ``identity clients create`` prints."""
    client, secret = build_client(spec)
    await add_client(session, client)
    shown: dict[str, Any] = {"client_id": client.client_id}
    if secret is not None:
        shown["client_secret"] = secret
    return shown | {
        "name": client.name,
        "public": client.is_public,
        "first_party": client.first_party,
        "require_pkce": client.require_pkce,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "grant_types": client.grant_types,
        "scope": client.scope,
        "resources": client.resources,
    }
