"""Arranging OAuth state without the hosted pages: clients, users and codes straight in the
database, and the requests a relying party makes against the token side.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import quote_plus

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from identity.accounts.models import User
from identity.audit.service import Actor
from identity.clients.service import ClientSpec, register_client
from identity.clock import utcnow
from identity.crypto import digest, random_token
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.tokens.codes import insert_code
from identity.tokens.models import AuthorizationCode, Consent, ConsentAccount, RefreshToken

REDIRECT_URI = "https://app.example.com/callback"
BILLING = "https://billing.example.com"


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    secret: str | None

    @property
    def basic(self) -> dict[str, str]:
        pair = f"{quote_plus(self.client_id)}:{quote_plus(self.secret or '')}"
        return {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode()}


async def make_client(runtime: Runtime, **options: Any) -> RegisteredClient:
    spec = ClientSpec(
        name=options.pop("name", "Test app"),
        redirect_uris=options.pop("redirect_uris", [REDIRECT_URI]),
        **options,
    )
    async with runtime.db.transaction() as session:
        shown = await register_client(session, Actor(), spec)
    return RegisteredClient(shown["client_id"], shown.get("client_secret"))


async def make_user(runtime: Runtime, **fields: Any) -> User:
    user = User(
        email=fields.pop("email", f"{uuid.uuid4().hex[:8]}@example.com"),
        name=fields.pop("name", "Ada Lovelace"),
        email_verified=fields.pop("email_verified", True),
        **fields,
    )
    async with runtime.db.transaction() as session:
        session.add(user)
    return user


async def service_client(runtime: Runtime) -> RegisteredClient:
    """A back-end service's client: client credentials only, no redirect URI, scope "api"."""
    return await make_client(
        runtime, grant_types=["client_credentials"], redirect_uris=[], scope="api"
    )


async def service_token(http: httpx.AsyncClient, caller: RegisteredClient) -> str:
    """The access token ``caller`` gets for itself with the client credentials grant."""
    response = await http.post(
        "/token", data={"grant_type": "client_credentials"}, headers=caller.basic
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def pkce_pair() -> tuple[str, str]:
    verifier = random_token(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


async def issue_code(
    runtime: Runtime,
    client: RegisteredClient,
    user: User,
    *,
    challenge: str | None = None,
    scope: str = "openid profile email",
    redirect_uri: str = REDIRECT_URI,
    resources: list[str] | None = None,
    nonce: str | None = "n-0S6_WzA2Mj",
    ttl: int = 60,
    account_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
) -> str:
    """A code as /authorize would issue it after sign-in and consent, from the browser
    session ``session_id`` (by default one of its own)."""
    code = random_token()
    now = utcnow()
    async with runtime.db.transaction() as session:
        if session_id is None:
            browser = await sessions.establish(
                session, user_id=user.id, amr=["pwd"], now=now,
                lifetime=runtime.settings.session_lifetime,
                previous_token=None, ip=None, user_agent=None,
            )  # fmt: skip
            session_id = browser.session.id
        await insert_code(
            session,
            AuthorizationCode(
                code_hash=digest(code),
                client_id=client.client_id,
                user_id=user.id,
                account_id=account_id,
                session_id=session_id,
                redirect_uri=redirect_uri,
                scope=scope,
                resources=resources or [],
                nonce=nonce,
                code_challenge=challenge,
                code_challenge_method="S256" if challenge else None,
                auth_time=now - timedelta(seconds=5),
                amr=["pwd"],
                created_at=now,
                expires_at=now + timedelta(seconds=ttl),
            ),
        )
    return code


async def redeem(
    http: httpx.AsyncClient,
    client: RegisteredClient,
    code: str,
    verifier: str | None,
    *,
    origin: str | None = None,
    **extra: str,
) -> httpx.Response:
    """The code exchange; ``origin``: as a browser app's page on that origin sends it."""
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    headers: dict[str, str] = {} if origin is None else {"Origin": origin}
    if client.secret is None:
        data["client_id"] = client.client_id
    else:
        headers |= client.basic
    return await http.post("/token", data=data | extra, headers=headers)


@dataclass(frozen=True)
class FreshCode:
    """A code as the browser brings it back to ``client`` after ``user`` signed in, and the
    PKCE verifier its challenge was made from."""

    code: str
    verifier: str
    client: RegisteredClient
    user: User
    redirect_uri: str

    async def redeem(self, http: httpx.AsyncClient, **options: Any) -> httpx.Response:
        """The exchange the client makes with this code, its own verifier and the redirect
        URI the code was sent to."""
        options = {"redirect_uri": self.redirect_uri} | options
        return await redeem(http, self.client, self.code, self.verifier, **options)


async def fresh_code(
    runtime: Runtime,
    client: RegisteredClient | None = None,
    *,
    user: User | None = None,
    **code_options: Any,
) -> FreshCode:
    """A code with an S256 challenge for ``client`` and ``user`` (a new confidential client
    and a new user where not given); ``code_options`` as for ``issue_code``."""
    client = client or await make_client(runtime)
    user = user or await make_user(runtime)
    verifier, challenge = pkce_pair()
    code = await issue_code(runtime, client, user, challenge=challenge, **code_options)
    return FreshCode(code, verifier, client, user, code_options.get("redirect_uri", REDIRECT_URI))


async def redeemed_code(
    http: httpx.AsyncClient, runtime: Runtime, client: RegisteredClient, **code_options: Any
) -> tuple[FreshCode, dict[str, Any]]:
    """A code already exchanged with success, for tests that replay it, and the token
    response the exchange brought."""
    fresh = await fresh_code(runtime, client, **code_options)
    response = await fresh.redeem(http)
    assert response.status_code == 200, response.text
    return fresh, response.json()


async def signed_in_tokens(
    http: httpx.AsyncClient, runtime: Runtime, client: RegisteredClient, **code_options: Any
) -> dict[str, Any]:
    """The token response of a complete code exchange with PKCE."""
    _, tokens = await redeemed_code(http, runtime, client, **code_options)
    return tokens


async def refresh(
    http: httpx.AsyncClient, client: RegisteredClient, refresh_token: str, **extra: str
) -> httpx.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token} | extra
    return await http.post("/token", data=data, headers=client.basic)


async def expire_refresh_token(runtime: Runtime, token: str) -> None:
    """Make ``token`` expired a second ago, as if its lifetime had run out."""
    async with runtime.db.transaction() as session:
        await session.execute(
            update(RefreshToken)
            .where(RefreshToken.token_hash == digest(token))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def is_active(http: httpx.AsyncClient, caller: RegisteredClient, access_token: str) -> bool:
    """Whether introspection (which sees revocations at once) calls the token live."""
    response = await http.post("/introspect", data={"token": access_token}, headers=caller.basic)
    assert response.status_code == 200, response.text
    return bool(response.json()["active"])


async def assert_access_token_dead(
    http: httpx.AsyncClient, caller: RegisteredClient, access_token: str
) -> None:
    """Revoked where it is checked live: introspection calls it inactive, and says nothing
    more, and userinfo refuses it."""
    introspected = await http.post(
        "/introspect", data={"token": access_token}, headers=caller.basic
    )
    assert introspected.json() == {"active": False}
    userinfo = await http.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert userinfo.status_code == 401


async def verify_with_jwks(http: httpx.AsyncClient, token: str) -> jwt.Token:
    """What a separate resource server does: fetch the JWKS and check the signature."""
    keys = KeySet.import_key_set((await http.get("/jwks.json")).json())
    return jwt.decode(token, keys, algorithms=["RS256", "ES256"])


async def consented_scopes(runtime: Runtime, user_id: uuid.UUID, client_id: str) -> set[str]:
    """The scopes the user's stored consent gives the client."""
    async with runtime.db.transaction() as session:
        scope = await session.scalar(
            select(Consent.scope).where(Consent.user_id == user_id, Consent.client_id == client_id)
        )
    return set(scope.split()) if scope else set()


async def consented_accounts(
    runtime: Runtime, user_id: uuid.UUID, client_id: str
) -> set[uuid.UUID]:
    """The customer accounts the user's stored consent to the client names."""
    async with runtime.db.transaction() as session:
        rows = await session.scalars(
            select(ConsentAccount.account_id)
            .join(Consent, Consent.id == ConsentAccount.consent_id)
            .where(Consent.user_id == user_id, Consent.client_id == client_id)
        )
        return set(rows)
