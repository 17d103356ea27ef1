"""examples/billing in-process, trusting a real local issuer's discovery document and JWKS."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from examples.billing.app import app_from_env
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    OTHER_ACCOUNT_ID,
    LocalIssuer,
    asgi_client,
    issuer_fixture,  # noqa: F401 - the issuer fixture
    rsa_key,
    unsigned,
)

INVOICES = f"/accounts/{ACCOUNT_ID}/invoices"


@pytest.fixture
async def billing(issuer: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = app_from_env({"BILLING_ISSUER": issuer.issuer, "BILLING_AUDIENCE": AUDIENCE})
    async with asgi_client(app, "http://billing.test") as http:
        yield http


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_a_member_with_the_invoices_permission_reads_their_accounts_invoices(
    issuer: LocalIssuer, billing: httpx.AsyncClient
) -> None:
    token = issuer.token(sub="member-1", permissions=["invoices"])
    response = await billing.get(INVOICES, headers=bearer(token))
    assert response.status_code == 200
    body = response.json()
    assert body["account_id"] == ACCOUNT_ID
    assert body["requested_by"] == "member-1"
    assert [invoice["status"] for invoice in body["invoices"]] == ["paid", "paid", "open"]
    again = await billing.get(INVOICES, headers=bearer(token))
    assert again.json()["invoices"] == body["invoices"]


async def test_another_accounts_invoices_are_refused_with_403(
    issuer: LocalIssuer, billing: httpx.AsyncClient
) -> None:
    response = await billing.get(
        f"/accounts/{OTHER_ACCOUNT_ID}/invoices", headers=bearer(issuer.token())
    )
    assert response.status_code == 403
    assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')


async def test_a_member_without_the_invoices_permission_is_refused_with_403(
    issuer: LocalIssuer, billing: httpx.AsyncClient
) -> None:
    token = issuer.token(permissions=["tickets"])
    response = await billing.get(INVOICES, headers=bearer(token))
    assert response.status_code == 403


def expired(issuer: LocalIssuer) -> str:
    now = int(time.time())
    return issuer.token(iat=now - 700, exp=now - 100)


def tampered(issuer: LocalIssuer) -> str:
    header, _, signature = issuer.token(permissions=[]).split(".")
    claims = unsigned({}, issuer.claims(permissions=["invoices"])).split(".")[1]
    return f"{header}.{claims}.{signature}"


def wrongly_signed(issuer: LocalIssuer) -> str:
    return issuer.token(rsa_key(1), header={"kid": rsa_key(0).kid})


def other_issuer(issuer: LocalIssuer) -> str:
    return issuer.token(iss="https://identity.evil.example")


def alg_none(issuer: LocalIssuer) -> str:
    return unsigned({"alg": "none", "typ": "at+jwt", "kid": rsa_key(0).kid}, issuer.claims())


def other_audience(issuer: LocalIssuer) -> str:
    return issuer.token(aud="https://tickets.example.test")


@pytest.mark.parametrize(
    "forge", [expired, tampered, wrongly_signed, other_issuer, alg_none, other_audience]
)
async def test_a_bad_token_is_refused_with_401_and_a_bearer_challenge(
    issuer: LocalIssuer, billing: httpx.AsyncClient, forge: Callable[[LocalIssuer], str]
) -> None:
    response = await billing.get(INVOICES, headers=bearer(forge(issuer)))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_no_token_is_refused_with_401(billing: httpx.AsyncClient) -> None:
    response = await billing.get(INVOICES)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_the_service_will_not_start_without_an_issuer() -> None:
    with pytest.raises(SystemExit, match="BILLING_ISSUER"):
        app_from_env({})
