"""OAuth clients: the rules behind ``identity clients create``, and staff's changes to them
through the management API."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.clients import repository
from identity.clients.models import MAX_NAME, OAuthClient
from identity.clients.repository import add_client
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.db.paging import Page
from identity.display_names import display_name
from identity.errors import Conflict, NotFound
from identity.oauth import authorize, logout
from identity.oauth.authorize import MAX_VALUE_LENGTH
from identity.oauth.errors import InvalidScopeError
from identity.oauth.metadata import GRANT_TYPES
from identity.oauth.resources import is_resource_uri
from identity.oauth.scopes import parse_scope
from identity.permissions.catalogue import invalid_field, once_each
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES
from identity.tokens import client_grants
from identity.uris import (
    BAD_PORT,
    ascii_host,
    has_unusable_port,
    is_loopback,
    without_credentials,
)

DEFAULT_SCOPE = "openid profile email"
# Of redirect URIs, post-logout URIs or resources: far more than any client has.
MAX_LISTED = 100
# Every access token lists the scope it grants, next to the permissions (at most half the
# resource kit's 8 KB limit, see MAX_CATALOGUE) and the other claims: a longer scope makes
# tokens services refuse as malformed. Scope values are ASCII, so characters are bytes.
MAX_SCOPE = DEFAULT_MAX_TOKEN_BYTES // 8
# A DNS name's labels (underscores too, which browsers accept); an IP literal is read apart.
_DNS_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


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


def _is_host(host: str) -> bool:
    """Whether a browser sent to ``host`` goes to that host: ``*.example.com`` is stored as it
    is and never matches (redirect URIs match exactly), and browsers read a backslash as the
    end of the host, so ``https://evil.example\\.app.example/cb`` sends codes to evil.example.
    """
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        return _DNS_NAME.fullmatch(ascii_host(host)) is not None
    except UnicodeError:
        return False


def _reads_as_ipv4(host: str) -> bool:
    """Whether a browser reads ``host`` as an IPv4 address though it is not written as one
    (WHATWG URL's "ends in a number": a last label of digits, or 0x and hex digits):
    ``127.1``, ``2130706433``, ``0x7f.1`` and ``127.0.0.1.`` all send the browser to
    127.0.0.1, and ``app.example.123`` to no host at all, while the URI names neither."""
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    try:
        labels = ascii_host(host).split(".")
    except UnicodeError:
        return False  # refused by ``_is_host``
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1].lower()
    if last.isdigit():
        return True
    return last.startswith("0x") and all(c in "0123456789abcdef" for c in last[2:])


def _has_space_or_control(uri: str) -> bool:
    """Whether ``uri`` holds what no request can spell as is (and a NUL PostgreSQL's JSON
    keeps): such a URI, matched exactly, never matches."""
    return any(ord(c) < 0x21 or ord(c) == 0x7F for c in uri)


def _check_length(uri: str, what: str, field: str) -> None:
    """The authorization endpoint refuses longer redirect URIs and resources, so a client
    registered with one could never sign anyone in (post-logout URIs are held to the same
    length); the URI itself is left out of a message it would flood."""
    if len(uri) > MAX_VALUE_LENGTH:
        raise invalid_field(
            field, f"A {what} is longer than {MAX_VALUE_LENGTH} characters ({len(uri)})."
        )


def _refuse_credentials(uri: str, parts: SplitResult, what: str, field: str) -> None:
    """Credentials before the host are written into logs and browsers' history (a redirect
    URI), or into every token's ``aud`` (a resource), and no browser follows them sensibly.
    The refusal does not repeat them."""
    if "@" in parts.netloc:
        shown = without_credentials(uri)
        raise invalid_field(
            field,
            f"The {what} {shown!r} must not contain a user name or password (user:password@).",
        )


def _refuse_response_parameters(
    uri: str, parts: SplitResult, reserved: frozenset[str], what: str, field: str
) -> None:
    """The answer sent to ``uri`` adds the ``reserved`` names to its query: one already there
    would reach the client twice, and which of the two is ours would be up to its parser.
    The query goes back as written, and many frameworks split it on ";" as on "&", so a name
    after either counts."""
    for name, _ in parse_qsl(parts.query.replace(";", "&"), keep_blank_values=True):
        if name in reserved:
            raise invalid_field(
                field,
                f"The {what} {uri!r} must not have a {name!r} parameter in its query: "
                f"the response adds its own {name!r}, so the client would get it twice.",
            )


def check_redirect_uri(
    uri: str,
    *,
    public: bool,
    what: str = "redirect URI",
    field: str = "redirect_uris",
    reserved: frozenset[str] = authorize.RESPONSE_PARAMETERS,
) -> str:
    """RFC 9700 §2.1 / RFC 8252: absolute, no fragment, https except on loopback; native
    (public) apps may also use a private-use scheme such as ``com.example.app:/callback``.
    No name of ``reserved`` (what the response adds) in its query.
    """
    _check_length(uri, what, field)
    try:
        parts = urlsplit(uri)
    except ValueError:
        raise invalid_field(
            field, f"The {what} {without_credentials(uri)!r} is not a valid URI."
        ) from None
    _refuse_credentials(uri, parts, what, field)
    if has_unusable_port(parts):
        raise invalid_field(field, f"The {what} {uri!r} {BAD_PORT}.")
    if not parts.scheme or _has_space_or_control(uri):
        raise invalid_field(field, f"The {what} {uri!r} must be an absolute URI without spaces.")
    if parts.fragment or "#" in uri:
        raise invalid_field(field, f"The {what} {uri!r} must not contain a fragment (#...).")
    scheme = parts.scheme.lower()
    if scheme == "https":
        if not parts.hostname:
            raise invalid_field(field, f"The {what} {uri!r} has no host.")
        if _reads_as_ipv4(parts.hostname):
            raise invalid_field(
                field,
                f"The {what} {uri!r} ends its host with a number, so browsers read it as an "
                "IPv4 address: write an address as four decimal numbers (192.0.2.10).",
            )
        if not _is_host(parts.hostname):
            raise invalid_field(
                field,
                f"The {what} {uri!r} must name its host as a DNS name or an IP address: "
                "redirect URIs match exactly, so a wildcard (*.example.com) never matches.",
            )
    elif scheme == "http":
        if not is_loopback(parts.hostname):
            raise invalid_field(
                field,
                f"The {what} {uri!r} uses http, which is allowed only for localhost and "
                "loopback addresses; use https.",
            )
    elif not public or "." not in scheme:
        raise invalid_field(
            field,
            f"The {what} {uri!r} uses the scheme {scheme!r}: only https (or http on loopback) "
            "is allowed, and a private-use scheme in reverse-domain form (com.example.app:/cb) "
            "only for public native clients.",
        )
    _refuse_response_parameters(uri, parts, reserved, what, field)
    return uri


def check_grant_types(grant_types: list[str], *, public: bool) -> list[str]:
    unknown = [g for g in grant_types if g not in GRANT_TYPES]
    if unknown:
        raise invalid_field(
            "grant_types",
            f"Unknown grant type {unknown[0][:50]!r}; choose from {', '.join(GRANT_TYPES)}.",
        )
    # A confidential client with none is a resource server that only introspects; a public
    # one may not introspect, so with none it could do nothing at all.
    if public and not grant_types:
        raise invalid_field(
            "grant_types",
            "A public client needs a grant type (authorization_code): with none it can do "
            "nothing, since only confidential clients may introspect tokens.",
        )
    if public and "client_credentials" in grant_types:
        raise invalid_field(
            "grant_types", "A public client cannot use client_credentials: it has no secret."
        )
    if "refresh_token" in grant_types and "authorization_code" not in grant_types:
        raise invalid_field(
            "grant_types", "The refresh_token grant needs the authorization_code grant."
        )
    return grant_types


def check_scope(scope: str) -> str:
    if len(scope) > MAX_SCOPE:
        raise invalid_field(
            "scope", f"The scope may hold at most {MAX_SCOPE} characters ({len(scope)})."
        )
    try:
        tokens = parse_scope(scope)
    except InvalidScopeError:
        raise invalid_field(
            "scope", f"The scope {scope!r} holds a malformed value; use space-separated words."
        ) from None
    if not tokens:
        raise invalid_field("scope", "The scope must name at least one value.")
    return " ".join(tokens)


def check_resource(resource: str) -> str:
    _check_length(resource, "resource", "resources")
    if not is_resource_uri(resource) or _has_space_or_control(resource):
        raise invalid_field(
            "resources",
            f"The resource {without_credentials(resource)!r} must be an absolute URI without "
            "spaces or a fragment, such as https://billing.example.com.",
        )
    parts = urlsplit(resource)
    _refuse_credentials(resource, parts, "resource", "resources")
    if has_unusable_port(parts):
        raise invalid_field(
            "resources",
            f"The resource {resource!r} {BAD_PORT}.",
        )
    return resource


def _check_list(field: str, items: list[str]) -> None:
    """At most ``MAX_LISTED`` entries, none twice: of two, one would silently win while the
    audit log recorded both."""
    if len(items) > MAX_LISTED:
        raise invalid_field(field, f"{field} may list at most {MAX_LISTED} entries ({len(items)}).")
    once_each(field, items)


def checked_settings(spec: ClientSpec) -> dict[str, Any]:
    """The client's columns that ``spec`` sets, every rule checked (``InvalidInput`` naming
    the field): the one check behind registering and changing a client, through the command
    line or the API."""
    for name in ("redirect_uris", "post_logout_redirect_uris", "grant_types", "resources"):
        _check_list(name, getattr(spec, name))
    if spec.public and not spec.require_pkce:
        raise invalid_field(
            "require_pkce",
            "PKCE cannot be turned off (--no-require-pkce) for a public client: "
            "public clients always use it.",
        )
    grant_types = check_grant_types(spec.grant_types, public=spec.public)
    redirect_uris = [check_redirect_uri(u, public=spec.public) for u in spec.redirect_uris]
    if "authorization_code" in grant_types and not redirect_uris:
        raise invalid_field(
            "redirect_uris",
            "The authorization_code grant needs at least one redirect URI (--redirect-uri).",
        )
    post_logout = [
        check_redirect_uri(
            u,
            public=spec.public,
            what="post-logout redirect URI",
            field="post_logout_redirect_uris",
            reserved=logout.RESPONSE_PARAMETERS,
        )
        for u in spec.post_logout_redirect_uris
    ]
    scope = check_scope(spec.scope if spec.scope is not None else DEFAULT_SCOPE)
    if "authorization_code" in grant_types and "openid" not in scope.split():
        # Every authorization request must ask for openid (OpenID Connect Core §3.1.2.1):
        # without it allowed, each of the client's sign-ins would end in invalid_scope.
        raise invalid_field(
            "scope", "The authorization_code grant needs the openid scope in the client's scope."
        )
    return {
        "name": display_name(spec.name, MAX_NAME),
        "first_party": spec.first_party,
        "require_pkce": spec.require_pkce or spec.public,
        "redirect_uris": redirect_uris,
        "post_logout_redirect_uris": post_logout,
        "grant_types": grant_types,
        "scope": scope,
        "resources": [check_resource(r) for r in spec.resources],
    }


def build_client(spec: ClientSpec) -> tuple[OAuthClient, str | None]:
    """The client row and, for a confidential client, its secret in clear (shown once)."""
    settings = checked_settings(spec)
    secret = None if spec.public else random_token(32)
    client = OAuthClient(
        client_id=random_token(16),
        secret_hash=digest(secret) if secret is not None else None,
        is_public=spec.public,
        disabled=False,
        created_at=utcnow(),
        **settings,
    )
    return client, secret


def shown_settings(client: OAuthClient) -> dict[str, Any]:
    """What the command line, the API and the audit log show of a client: never its secret."""
    return {
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


async def register_client(session: AsyncSession, actor: Actor, spec: ClientSpec) -> dict[str, Any]:
    """``create_client``, answered with what ``identity clients create`` prints."""
    client, secret = await create_client(session, actor, spec)
    shown: dict[str, Any] = {"client_id": client.client_id}
    if secret is not None:
        shown["client_secret"] = secret
    return shown | shown_settings(client)


# --- staff's management through /api/v1/clients ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientChange:
    """The settings a change gives; None leaves one as it is. Whether a client is public is
    fixed at registration: it decides whether it has a secret at all."""

    name: str | None = None
    redirect_uris: list[str] | None = None
    post_logout_redirect_uris: list[str] | None = None
    first_party: bool | None = None
    grant_types: list[str] | None = None
    scope: str | None = None
    resources: list[str] | None = None
    require_pkce: bool | None = None
    disabled: bool | None = None


def _target(client_id: str) -> tuple[str, str]:
    return ("client", client_id)


def client_state(client: OAuthClient) -> dict[str, Any]:
    """Its settings and whether it is disabled: what the API and the audit log show."""
    return shown_settings(client) | {"disabled": client.disabled}


async def existing_client(
    session: AsyncSession, client_id: str, *, for_update: bool = False
) -> OAuthClient:
    """The client, disabled or not (``for_update``: locked for a change); ``NotFound``."""
    found = await repository.find_client(session, client_id, for_update=for_update)
    if found is None:
        raise NotFound("No such client.")
    return found


async def list_clients(session: AsyncSession, page: Page) -> Sequence[OAuthClient]:
    return await repository.list_clients(session, page)


async def create_client(
    session: AsyncSession, actor: Actor, spec: ClientSpec
) -> tuple[OAuthClient, str | None]:
    """Store a new client, audited: the client and its secret (shown once)."""
    client, secret = build_client(spec)
    await add_client(session, client)
    await record_as(
        session,
        actor,
        "client.created",
        account_id=None,
        target=_target(client.client_id),
        new=client_state(client),
    )
    return client, secret


async def update_client(
    session: AsyncSession,
    actor: Actor,
    client_id: str,
    change: ClientChange,
    now: datetime,
) -> OAuthClient:
    """Apply ``change`` under the rules of registration; the audit log gets the fields that
    changed, before and after. Disabling refuses the client at the token and authorization
    endpoints and denies the access tokens it holds; its refresh tokens stay, refused while
    it is disabled, so enabling it again lets its users go on where they were. Its own
    access tokens (client_credentials), recorded nowhere, are refused from ``now`` on through
    ``own_tokens_not_before`` when it is disabled or loses that grant, so that enabling it or
    giving the grant back does not revive them (a thief's among them).
    """
    client = await existing_client(session, client_id, for_update=True)
    old = client_state(client)
    given = {
        name: value
        for name, value in asdict(change).items()
        if value is not None and name != "disabled"
    }
    if given:
        # Every rule of registration, on the settings as they would be: a grant type
        # change needs its redirect URIs, a public client's new URIs may be native ones.
        current = ClientSpec(
            name=client.name,
            redirect_uris=client.redirect_uris,
            post_logout_redirect_uris=client.post_logout_redirect_uris,
            public=client.is_public,
            first_party=client.first_party,
            grant_types=client.grant_types,
            scope=client.scope,
            resources=client.resources,
            require_pkce=client.require_pkce,
        )
        for column, value in checked_settings(replace(current, **given)).items():
            setattr(client, column, value)
    if change.disabled is not None:
        client.disabled = change.disabled
    new = client_state(client)
    changed = [name for name in new if new[name] != old[name]]
    if not changed:
        return client
    if client.disabled and not old["disabled"]:
        await client_grants.deny_access_tokens(session, client_id, now)
    if _acts_for_itself(old) and not _acts_for_itself(new):
        client.own_tokens_not_before = now
    await record_as(
        session,
        actor,
        "client.updated",
        account_id=None,
        target=_target(client_id),
        old={name: old[name] for name in changed},
        new={name: new[name] for name in changed},
    )
    return client


def _acts_for_itself(state: dict[str, Any]) -> bool:
    """Whether a client in ``state`` (``client_state``) may use its own access tokens."""
    return not state["disabled"] and "client_credentials" in state["grant_types"]


async def rotate_secret(
    session: AsyncSession, actor: Actor, client_id: str
) -> tuple[OAuthClient, str]:
    """A new secret, shown once; the old one stops working at once (the token endpoint
    compares against the stored digest, which is replaced). Tokens already issued stay.
    """
    client = await existing_client(session, client_id, for_update=True)
    if client.is_public:
        raise Conflict("A public client has no secret to rotate.")
    secret = random_token(32)
    client.secret_hash = digest(secret)
    await record_as(
        session, actor, "client.secret_rotated", account_id=None, target=_target(client_id)
    )
    return client, secret


async def delete_client(session: AsyncSession, actor: Actor, client_id: str, now: datetime) -> None:
    """Delete the client with its codes, refresh tokens and consents; the access tokens a
    code or refresh token recorded go on the deny list."""
    client = await existing_client(session, client_id, for_update=True)
    old = client_state(client)
    await client_grants.end_grants(session, client_id, now)
    await repository.delete_client(session, client_id)
    await record_as(
        session, actor, "client.deleted", account_id=None, target=_target(client_id), old=old
    )
