"""Billing: an example service that trusts identity's access tokens, and nothing else of it.

It knows only the issuer URL (and, optionally, its own resource identifier): keys come from the
issuer's discovery document and JWKS, permissions from the token. Run it next to identity:

    BILLING_ISSUER=http://127.0.0.1:8000 \
        .venv/bin/uvicorn --factory examples.billing.app:app_from_env --port 8001
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from uuid import UUID

from litestar import Litestar, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from identity.resource import ResourceServer, ResourceServerConfig
from identity.resource.litestar import AccessTokenDep, ResourceServerPlugin, require_permission


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


@get("/accounts/{account_id:uuid}/invoices", guards=[require_permission("invoices")])
async def list_invoices(
    account_id: FromPath[UUID], access_token: AccessTokenDep, book: NamedDependency[InvoiceBook]
) -> dict[str, object]:
    return {
        "account_id": str(account_id),
        "requested_by": access_token.subject,
        "invoices": book.for_account(account_id),
    }


def create_app(issuer: str, audience: str | None = None) -> Litestar:
    book = InvoiceBook()
    server = ResourceServer(ResourceServerConfig(issuer=issuer, audience=audience))
    return Litestar(
        [list_invoices],
        dependencies={"book": Provide(lambda: book, sync_to_thread=False)},
        plugins=[ResourceServerPlugin(server)],
    )


def app_from_env(environ: Mapping[str, str] = os.environ) -> Litestar:
    """``BILLING_ISSUER`` (required) and ``BILLING_AUDIENCE`` (optional) configure the app."""
    issuer = environ.get("BILLING_ISSUER")
    if not issuer:
        raise SystemExit("Set BILLING_ISSUER to identity's issuer URL, e.g. http://127.0.0.1:8000")
    return create_app(issuer, environ.get("BILLING_AUDIENCE") or None)
