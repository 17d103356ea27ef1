"""Billing: an example service that trusts identity's access tokens, and nothing else of it.

It knows only the issuer URL and its own resource identifier (the ``--resource`` its clients
are registered for, which names it in their tokens' ``aud``): keys come from the issuer's
discovery document and JWKS, permissions from the token. With a webhook secret it also hears of
members removed from accounts, and forgets them at once instead of trusting their tokens until
they expire. Run it next to identity:

    BILLING_ISSUER=http://127.0.0.1:8000 BILLING_AUDIENCE=http://127.0.0.1:8001 \
        .venv/bin/uvicorn --factory examples.billing.app:app_from_env --port 8001
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from litestar import Litestar, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath
from litestar.types import ControllerRouterHandler

from identity.resource import AccessToken, BearerTokenError, ResourceServer, ResourceServerConfig
from identity.resource.litestar import AccessTokenDep, ResourceServerPlugin, require_permission
from identity.resource.webhooks import WebhookError, verify


@dataclass(frozen=True, slots=True)
class Invoice:
    number: str
    amount_cents: int
    currency: str
    status: str


class InvoiceBook:
    """Invoices kept in memory per account: a stand-in for billing's own database.

    An account seen for the first time gets three invoices derived from its id, so the example
    answers for whatever accounts identity holds without sharing its database.
    """

    def __init__(self) -> None:
        self._by_account: dict[UUID, list[Invoice]] = {}

    def for_account(self, account_id: UUID) -> list[Invoice]:
        if account_id not in self._by_account:
            seed = hashlib.sha256(account_id.bytes).digest()
            self._by_account[account_id] = [
                Invoice(
                    number=f"INV-{account_id.hex[:6].upper()}-{n + 1:03d}",
                    amount_cents=1000 + int.from_bytes(seed[2 * n : 2 * n + 2]) % 90000,
                    currency="EUR",
                    status="paid" if n < 2 else "open",
                )
                for n in range(3)
            ]
        return self._by_account[account_id]


@dataclass(frozen=True, slots=True)
class MemberView:
    """What billing last saw of a member in their token: who may see the account's bills."""

    user_id: str
    permissions: list[str]
    owner: bool


class Members:
    """Billing's cached view of each account's members, built from the tokens it sees.

    A token stays valid until it expires, even after identity removed its bearer from the
    account; the member-removed event closes that gap: the member's view is dropped, and
    tokens issued before the removal are refused for that account from then on.
    """

    def __init__(self) -> None:
        self._views: dict[tuple[str, str], MemberView] = {}
        self._removed_at: dict[tuple[str, str], float] = {}

    def admit(self, token: AccessToken, account_id: str) -> None:
        """Remember the bearer as a member, unless identity removed them after the token was
        issued (``iat`` in whole seconds: a token of the removal's second is refused too)."""
        key = (account_id, token.subject)
        removed_at = self._removed_at.get(key)
        if removed_at is not None and token.claims["iat"] <= removed_at:
            raise BearerTokenError(
                "insufficient_scope", "The bearer is no longer a member of this account."
            )
        self._views[key] = MemberView(token.subject, sorted(token.permissions), token.account_owner)

    def of(self, account_id: str) -> list[MemberView]:
        return [view for (account, _), view in self._views.items() if account == account_id]

    def remove(self, account_id: str, user_id: str, at: float) -> None:
        key = (account_id, user_id)
        self._views.pop(key, None)
        # Events can arrive twice or out of order: keep the latest removal.
        self._removed_at[key] = max(at, self._removed_at.get(key, at))


@get("/accounts/{account_id:uuid}/invoices", guards=[require_permission("invoices")])
async def list_invoices(
    account_id: FromPath[UUID],
    access_token: AccessTokenDep,
    book: NamedDependency[InvoiceBook],
    members: NamedDependency[Members],
) -> dict[str, object]:
    members.admit(access_token, str(account_id))
    return {
        "account_id": str(account_id),
        "requested_by": access_token.subject,
        "invoices": book.for_account(account_id),
    }


@get("/accounts/{account_id:uuid}/members", guards=[require_permission("invoices")])
async def list_members(
    account_id: FromPath[UUID], access_token: AccessTokenDep, members: NamedDependency[Members]
) -> list[MemberView]:
    """The members billing has seen reading this account's invoices."""
    members.admit(access_token, str(account_id))
    return members.of(str(account_id))


class WebhookRefused(Exception):
    """A delivery that is not identity's, or is too old: answered 400, never acted on."""


def _refused(_: Request[Any, Any, Any], exc: WebhookRefused) -> Response[dict[str, str]]:
    return Response({"error": "invalid_signature", "detail": str(exc)}, status_code=400)


def webhook_receiver(secrets: list[str]) -> ControllerRouterHandler:
    """``POST /webhooks/identity``: identity's signed events (only member removal matters here)."""

    @post("/webhooks/identity", status_code=204)
    async def receive(request: Request[Any, Any, Any], members: NamedDependency[Members]) -> None:
        try:
            event = verify(request.headers, await request.body(), secrets)
        except WebhookError as exc:
            # Not from identity, or replayed: refuse without acting. str(exc) is our own text.
            raise WebhookRefused(str(exc)) from None
        if event["type"] == "member.removed":
            data = event["data"]
            at = datetime.fromisoformat(event["occurred_at"]).timestamp()
            members.remove(data["account_id"], data["user_id"], at)

    return receive


def create_app(issuer: str, audience: str, webhook_secrets: list[str] | None = None) -> Litestar:
    book, members = InvoiceBook(), Members()
    server = ResourceServer(ResourceServerConfig(issuer=issuer, audience=audience))
    handlers = [list_invoices, list_members]
    if webhook_secrets:
        handlers.append(webhook_receiver(webhook_secrets))
    return Litestar(
        handlers,
        dependencies={
            "book": Provide(lambda: book, sync_to_thread=False),
            "members": Provide(lambda: members, sync_to_thread=False),
        },
        exception_handlers={WebhookRefused: _refused},
        plugins=[ResourceServerPlugin(server)],
    )


def app_from_env(environ: Mapping[str, str] = os.environ) -> Litestar:
    """``BILLING_ISSUER`` and ``BILLING_AUDIENCE`` (required), ``BILLING_WEBHOOK_SECRET``
    (optional; comma-separated while a secret is being replaced) configure the app."""
    issuer = environ.get("BILLING_ISSUER")
    if not issuer:
        raise SystemExit("Set BILLING_ISSUER to identity's issuer URL, e.g. http://127.0.0.1:8000")
    # Required, not optional: without it billing accepted a token any client got for any
    # other service, even one it got for itself.
    audience = environ.get("BILLING_AUDIENCE", "").strip()
    if not audience:
        raise SystemExit(
            "Set BILLING_AUDIENCE to billing's resource identifier, the --resource its clients"
            " are registered for, e.g. http://127.0.0.1:8001"
        )
    secrets = [s.strip() for s in environ.get("BILLING_WEBHOOK_SECRET", "").split(",") if s.strip()]
    return create_app(issuer, audience, secrets or None)
