"""Arranging accounts, members and access tokens for the management API tests.

Access tokens are minted here with joserfc and the signing key the ``client`` fixture
stores, exactly as the token endpoint would shape them (RFC 9068), so these tests do not
depend on the sign-in pages.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.models import User
from identity.audit.service import Actor
from identity.clients.models import OAuthClient
from identity.clients.repository import add_client
from identity.clients.service import ClientSpec, build_client
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.mail.models import OutgoingEmail
from identity.permissions import customer_accounts, invitations, members
from identity.permissions.catalogue import Catalogue
from identity.permissions.effective import effective_permissions, token_claims_lasting
from identity.permissions.grants import Grant, RoleGrant
from identity.permissions.models import Account
from identity.runtime import Runtime
from identity.tokens.models import RefreshToken
from identity.web.api.auth import SCOPE_ACCOUNTS, SCOPE_ADMIN, SCOPE_AUTHZ
from identity.webhooks.events import PERMISSIONS_CHANGED
from identity.webhooks.models import WebhookEvent
from tests.integration.oauth_helpers import (
    RegisteredClient,
    make_client,
    make_user,
    signed_in_tokens,
)

CLIENT_ID = "portal"
SYSTEM = Actor(client_id="tests")

__all__ = ["CLIENT_ID", "SYSTEM", "make_user"]


async def mint(
    runtime: Runtime,
    *,
    sub: str,
    scope: str,
    client_id: str = CLIENT_ID,
    aud: str | list[str] | None = None,
    expires_in: int = 600,
    typ: str = "at+jwt",
    issuer: str | None = None,
    jti: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    await registered_for(runtime, client_id, scope)
    keyset = await runtime.keyset()
    now = int(time.time())
    claims = {
        "iss": issuer or runtime.settings.issuer,
        "sub": sub,
        "aud": aud if aud is not None else client_id,
        "exp": now + expires_in,
        "iat": now,
        "jti": jti or uuid.uuid4().hex,
        "client_id": client_id,
        "scope": scope,
    } | (extra or {})
    header = {"alg": keyset.current_alg, "kid": keyset.current.kid, "typ": typ}
    return jwt.encode(header, claims, keyset.current, algorithms=[keyset.current_alg])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def user_headers(runtime: Runtime, user: User, scope: str = SCOPE_ACCOUNTS) -> dict[str, str]:
    return bearer(await mint(runtime, sub=str(user.id), scope=scope))


async def staff_headers(runtime: Runtime, admin: User | None = None) -> dict[str, str]:
    """A staff token of ``admin``, or of a new administrator."""
    admin = admin or await make_user(runtime, is_admin=True)
    return await user_headers(runtime, admin, f"{SCOPE_ADMIN} {SCOPE_ACCOUNTS}")


async def registered_for(runtime: Runtime, client_id: str, scope: str) -> None:
    """The client ``client_id``, registered if it is not, and allowed ``scope``: what a token
    may do is read from its client's registration as it stands now."""
    async with runtime.db.transaction() as session:
        client = await session.get(OAuthClient, client_id)
        if client is None:
            client, _ = build_client(
                ClientSpec(name=client_id, grant_types=["client_credentials"], scope=scope)
            )
            client.client_id = client_id
            await add_client(session, client)
        else:
            client.scope = " ".join(sorted(set(client.scope.split()) | set(scope.split())))
    runtime.clients.forget(client_id)


async def register_service(runtime: Runtime, client_id: str = "billing") -> None:
    """A confidential client named ``client_id`` allowed to ask for decisions."""
    await registered_for(runtime, client_id, SCOPE_AUTHZ)


async def service_headers(runtime: Runtime, client_id: str = "billing") -> dict[str, str]:
    """A client's own token (client_credentials shape: the client is its subject)."""
    await register_service(runtime, client_id)
    return bearer(await mint(runtime, sub=client_id, client_id=client_id, scope=SCOPE_AUTHZ))


async def make_account(runtime: Runtime, owner: User, name: str = "Acme") -> Account:
    async with runtime.db.transaction() as session:
        return await customer_accounts.create_account(
            session, SYSTEM, name=name, owner_user_id=owner.id, now=utcnow()
        )


async def add_member(
    runtime: Runtime,
    account: Account,
    user: User,
    permissions: Sequence[str | Grant] = (),
    *,
    roles: Sequence[RoleGrant] = (),
    all_permissions: bool = False,
    owner: bool = False,
    now: datetime | None = None,
) -> None:
    await runtime.catalogue.ensure_templates(runtime.db)
    grants = [p if isinstance(p, Grant) else Grant(p) for p in permissions]
    async with runtime.db.transaction() as session:
        await members.add_member(
            session,
            SYSTEM,
            account.id,
            user.id,
            all_permissions=all_permissions,
            permissions=grants,
            roles=roles,
            is_owner=owner,
            catalogue=runtime.catalogue,
            now=now or utcnow(),
        )


async def account_with_member(
    runtime: Runtime, permissions: Sequence[str | Grant] = (), **member_options: Any
) -> tuple[User, User, Account]:
    """A new user's account and one other new user added to it (``permissions`` and
    ``member_options`` as for ``add_member``): the owner, the member and the account."""
    owner, member = await make_user(runtime), await make_user(runtime)
    account = await make_account(runtime, owner)
    await add_member(runtime, account, member, permissions, **member_options)
    return owner, member, account


async def signed_in_member(
    http: httpx.AsyncClient,
    runtime: Runtime,
    permissions: Sequence[str | Grant] = (),
    **member_options: Any,
) -> tuple[User, Account, RegisteredClient, dict[str, Any]]:
    """A member of a new account (as ``account_with_member`` makes them) signed in to a new
    client for that account: the member, the account, the client and the token response."""
    _, member, account = await account_with_member(runtime, permissions, **member_options)
    client = await make_client(runtime)
    tokens = await signed_in_tokens(http, runtime, client, user=member, account_id=account.id)
    return member, account, client, tokens


async def grant(
    runtime: Runtime, account_id: uuid.UUID, user_id: uuid.UUID, permission: str | Grant
) -> None:
    """A later grant of ``permission`` to the member ``user_id`` (as staff would give it)."""
    async with runtime.db.transaction() as session:
        await members.grant_one(
            session,
            SYSTEM,
            account_id,
            user_id,
            permission if isinstance(permission, Grant) else Grant(permission),
            catalogue=runtime.catalogue,
            now=utcnow(),
        )


async def effective(runtime: Runtime, user: User, account: Account) -> frozenset[str]:
    async with runtime.db.transaction() as session:
        return await effective_permissions(session, user.id, account.id, utcnow())


async def token_claims(
    session: AsyncSession,
    user_id: uuid.UUID,
    account_id: uuid.UUID,
    now: datetime,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """The account claims a token issued at ``now`` would carry."""
    lasting = await token_claims_lasting(
        session, user_id, account_id, now, held_past=now, catalogue=catalogue
    )
    return lasting.claims


async def give_refresh_token(runtime: Runtime, user: User, account: Account) -> uuid.UUID:
    """A live refresh token of ``user`` for ``account``, as a sign-in leaves one; its id."""
    registered = await make_client(runtime)
    now = utcnow()
    token = RefreshToken(
        token_hash=digest(random_token()),
        family_id=uuid.uuid4(),
        client_id=registered.client_id,
        user_id=user.id,
        account_id=account.id,
        scope="openid",
        created_at=now,
        expires_at=now + timedelta(days=1),
    )
    async with runtime.db.transaction() as session:
        session.add(token)
    return token.id


async def refresh_token_revoked(runtime: Runtime, token_id: uuid.UUID) -> bool:
    async with runtime.db.transaction() as session:
        token = await session.get(RefreshToken, token_id)
    assert token is not None
    return token.revoked_at is not None


async def told_permissions_changed(runtime: Runtime) -> list[tuple[str, str]]:
    """The (account_id, user_id) of every ``member.permissions_changed`` event, as strings."""
    async with runtime.db.transaction() as session:
        bodies = await session.scalars(
            select(WebhookEvent.body).where(WebhookEvent.type == PERMISSIONS_CHANGED)
        )
        data = [json.loads(body)["data"] for body in bodies]
    return sorted((item["account_id"], item["user_id"]) for item in data)


async def table_ids(runtime: Runtime) -> dict[str, str]:
    """The ids the API tests' tables name: an account ``a`` with a member ``t``, a user ``u``
    outside it and a client ``c``."""
    owner, target, outsider = [await make_user(runtime) for _ in range(3)]
    account = await make_account(runtime, owner)
    await add_member(runtime, account, target)
    return {
        "a": str(account.id),
        "t": str(target.id),
        "u": str(outsider.id),
        "c": (await make_client(runtime)).client_id,
    }


def with_ids(value: Any, ids: dict[str, str]) -> Any:
    """A request body from a test table with its ``{name}`` placeholders, at any depth,
    replaced by the ids the test arranged."""
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {key: with_ids(item, ids) for key, item in value.items()}
    if isinstance(value, list):
        return [with_ids(item, ids) for item in value]
    return value


def problem_fields(body: dict[str, Any]) -> set[str]:
    """The fields a problem's ``errors`` name, without Litestar's ``data.`` prefixes."""
    return {
        str(item.get("field") or "").removeprefix("data.").split("[")[0].split(".")[0]
        for item in body.get("errors", [])
    }


async def invite_and_read_link(
    runtime: Runtime,
    account: Account,
    email: str,
    permissions: Sequence[str] = (),
    *,
    all_permissions: bool = False,
    locale: str | None = None,
) -> str:
    """Invite ``email`` and return the token of the link its (queued) email carries."""
    async with runtime.db.transaction() as session:
        await invitations.invite(
            session,
            SYSTEM,
            account.id,
            invitations.InvitationRequest(
                email=email,
                all_permissions=all_permissions,
                permissions=[Grant(name) for name in permissions],
                locale=locale,
            ),
            catalogue=runtime.catalogue,
            limiter=runtime.limiter,
            settings=runtime.settings,
            now=utcnow(),
        )
        sent = await session.scalars(
            select(OutgoingEmail)
            .where(OutgoingEmail.to_address == email)
            .order_by(OutgoingEmail.created_at.desc())
        )
        body = sent.first().text_body  # type: ignore[union-attr]
    match = re.search(r"/invitations/accept\?token=(\S+)", body)
    assert match, body
    return parse_qs(urlsplit(match.group(0)).query)["token"][0]
