"""examples/billing in-process, trusting a real local issuer's discovery document and JWKS."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import httpx
import pytest

from examples.billing.app import app_from_env
from identity.resource.webhooks import SIGNATURE_HEADER, signature_header
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    OTHER_ACCOUNT_ID,
    LocalIssuer,
    asgi_client,
    bearer,
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


def test_the_service_will_not_start_without_its_audience(issuer: LocalIssuer) -> None:
    # Without one, billing accepted a token any client got for any other service.
    with pytest.raises(SystemExit, match="BILLING_AUDIENCE"):
        app_from_env({"BILLING_ISSUER": issuer.issuer})
    with pytest.raises(SystemExit, match="BILLING_AUDIENCE"):
        app_from_env({"BILLING_ISSUER": issuer.issuer, "BILLING_AUDIENCE": " "})


WEBHOOK_SECRET = "whsec_billing_test"


@pytest.fixture
async def billing_hooked(issuer: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    environ = {
        "BILLING_ISSUER": issuer.issuer,
        "BILLING_AUDIENCE": AUDIENCE,
        "BILLING_WEBHOOK_SECRET": f"whsec_old, {WEBHOOK_SECRET}",
    }
    async with asgi_client(app_from_env(environ), "http://billing.test") as http:
        yield http


def removal(
    user_id: str, occurred_at: float, secret: str = WEBHOOK_SECRET
) -> tuple[bytes, dict[str, str]]:
    event = {
        "id": "evt-1",
        "type": "member.removed",
        "occurred_at": datetime.fromtimestamp(occurred_at, UTC).isoformat(),
        "data": {"account_id": ACCOUNT_ID, "user_id": user_id},
    }
    body = json.dumps(event).encode()
    signature = signature_header([secret], int(time.time()), body)
    return body, {SIGNATURE_HEADER: signature, "content-type": "application/json"}


async def _seen(billing: httpx.AsyncClient, token: str) -> set[str]:
    response = await billing.get(f"/accounts/{ACCOUNT_ID}/members", headers=bearer(token))
    assert response.status_code == 200
    return {member["user_id"] for member in response.json()}


async def test_member_removed_drops_the_member_and_refuses_their_older_tokens(
    issuer: LocalIssuer, billing_hooked: httpx.AsyncClient
) -> None:
    now = time.time()
    leaving = issuer.token(sub="leaving", iat=int(now) - 60)
    staying = issuer.token(sub="staying")
    assert (await billing_hooked.get(INVOICES, headers=bearer(leaving))).status_code == 200
    assert await _seen(billing_hooked, staying) == {"leaving", "staying"}

    body, headers = removal("leaving", now - 30)
    answer = await billing_hooked.post("/webhooks/identity", content=body, headers=headers)
    assert answer.status_code == 204

    assert await _seen(billing_hooked, staying) == {"staying"}
    refused = await billing_hooked.get(INVOICES, headers=bearer(leaving))
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    # Added back later: a token issued after the removal works again.
    again = issuer.token(sub="leaving", iat=int(now))
    assert (await billing_hooked.get(INVOICES, headers=bearer(again))).status_code == 200


async def test_an_event_not_signed_with_the_secret_is_refused_and_ignored(
    issuer: LocalIssuer, billing_hooked: httpx.AsyncClient
) -> None:
    member = issuer.token(sub="member")
    await billing_hooked.get(INVOICES, headers=bearer(member))
    body, headers = removal("member", time.time(), secret="whsec_forged")
    answer = await billing_hooked.post("/webhooks/identity", content=body, headers=headers)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_signature"
    assert await _seen(billing_hooked, member) == {"member"}


async def test_a_replayed_event_is_refused(
    issuer: LocalIssuer, billing_hooked: httpx.AsyncClient
) -> None:
    member = issuer.token(sub="member")
    await billing_hooked.get(INVOICES, headers=bearer(member))
    body, _ = removal("member", time.time())
    old = signature_header([WEBHOOK_SECRET], int(time.time()) - 600, body)
    answer = await billing_hooked.post(
        "/webhooks/identity", content=body, headers={SIGNATURE_HEADER: old}
    )
    assert answer.status_code == 400
    assert await _seen(billing_hooked, member) == {"member"}


async def test_an_event_signed_with_the_previous_secret_is_accepted_during_rotation(
    issuer: LocalIssuer, billing_hooked: httpx.AsyncClient
) -> None:
    body, headers = removal("someone", time.time(), secret="whsec_old")
    answer = await billing_hooked.post("/webhooks/identity", content=body, headers=headers)
    assert answer.status_code == 204


async def test_without_a_webhook_secret_there_is_no_webhook_endpoint(
    billing: httpx.AsyncClient,
) -> None:
    body, headers = removal("someone", time.time())
    answer = await billing.post("/webhooks/identity", content=body, headers=headers)
    assert answer.status_code == 404
