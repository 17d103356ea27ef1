"""Permission decisions from a token's claims, and from the issuer's introspection endpoint."""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from identity.resource import (
    AccessToken,
    BearerTokenError,
    Introspector,
    IssuerUnavailable,
    ResourceServer,
    ResourceServerConfig,
    check_permission,
    permits,
)
from identity.resource.fetch import MAX_DOCUMENT_BYTES
from identity.resource.validator import DEFAULT_MAX_TOKEN_BYTES
from tests.resource_issuer import (
    ACCOUNT_ID,
    AUDIENCE,
    INTROSPECTION_CLIENT,
    OTHER_ACCOUNT_ID,
    LocalIssuer,
    issuer_fixture,  # noqa: F401 - the issuer fixture
)


def member(**claims: Any) -> AccessToken:
    base = {
        "sub": "user-1",
        "client_id": "portal",
        "exp": 2_000_000_000,
        "scope": "openid",
        "account_id": ACCOUNT_ID,
        "permissions": ["invoices"],
    }
    return AccessToken.from_claims(base | claims)


@pytest.mark.parametrize(
    ("token", "permission", "account", "allowed"),
    [
        (member(), "invoices", ACCOUNT_ID, True),
        (member(), "invoices", uuid.UUID(ACCOUNT_ID), True),
        (member(), "invoices", ACCOUNT_ID.upper(), True),
        (member(), "invoices", OTHER_ACCOUNT_ID, False),
        (member(), "tickets", ACCOUNT_ID, False),
        (member(), "invoices", "not-a-uuid", False),
        (member(account_id=None, permissions=["invoices"]), "invoices", ACCOUNT_ID, False),
        (member(permissions=[], account_owner=True), "invoices", ACCOUNT_ID, False),
    ],
)
def test_a_permission_holds_only_in_the_tokens_own_account(
    token: AccessToken, permission: str, account: str, allowed: bool
) -> None:
    assert permits(token, permission, account) is allowed


def test_a_missing_permission_is_refused_with_insufficient_scope() -> None:
    with pytest.raises(BearerTokenError) as caught:
        check_permission(member(), "tickets", ACCOUNT_ID)
    assert caught.value.status_code == 403
    assert caught.value.www_authenticate == (
        'Bearer error="insufficient_scope", error_description='
        '"The access token does not grant the tickets permission in this account."'
    )


@pytest.fixture
async def introspector(issuer: LocalIssuer) -> AsyncIterator[Introspector]:
    async with ResourceServer(ResourceServerConfig(issuer.issuer, audience=AUDIENCE)) as kit:
        yield kit.introspector(*INTROSPECTION_CLIENT)


def active(issuer: LocalIssuer, **claims: Any) -> dict[str, Any]:
    return {"active": True, "token_type": "Bearer"} | issuer.claims(**claims)


async def test_introspection_authenticates_with_client_secret_basic(
    issuer: LocalIssuer, introspector: Introspector
) -> None:
    issuer.introspection_answer = active(issuer)
    await introspector.introspect("the-token")
    authorization, form = issuer.introspection_requests[-1]
    # RFC 6749 §2.3.1: both parts form-encoded before base64.
    expected = base64.b64encode(b"billing-service:s3cret%3Awith+spaces%26symbols").decode()
    assert authorization == f"Basic {expected}"
    assert form == {"token": ["the-token"], "token_type_hint": ["access_token"]}


async def test_an_active_token_is_decided_on_the_issuers_current_claims(
    issuer: LocalIssuer, introspector: Introspector
) -> None:
    issuer.introspection_answer = active(issuer, permissions=["invoices"])
    assert await introspector.permits("t", "invoices", ACCOUNT_ID)
    issuer.introspection_answer = active(issuer, permissions=[])
    assert not await introspector.permits("t", "invoices", ACCOUNT_ID)


async def test_a_revoked_token_is_refused_at_once(
    issuer: LocalIssuer, introspector: Introspector
) -> None:
    issuer.introspection_answer = {"active": False}
    assert not await introspector.permits("t", "invoices", ACCOUNT_ID)
    with pytest.raises(BearerTokenError) as caught:
        await introspector.introspect("t")
    assert caught.value.description == "The access token is not active."


@pytest.mark.parametrize(
    "answer",
    [
        {"token_type": "refresh_token"},
        {"iss": "https://evil.example"},
        {"aud": "https://tickets.example.test"},
    ],
)
async def test_an_active_answer_for_something_else_is_refused(
    issuer: LocalIssuer, introspector: Introspector, answer: dict[str, Any]
) -> None:
    issuer.introspection_answer = active(issuer) | answer
    with pytest.raises(BearerTokenError) as caught:
        await introspector.introspect("t")
    assert caught.value.description == "The access token is not meant for us."


async def test_a_token_over_the_kits_cap_is_refused_without_asking_the_issuer(
    issuer: LocalIssuer, introspector: Introspector
) -> None:
    # The validator refuses a token longer than the kit's cap before reading it; the
    # introspector forwarded one of any length to the issuer on every request.
    issuer.introspection_answer = active(issuer)
    asked = len(issuer.introspection_requests)
    await introspector.introspect("t" * DEFAULT_MAX_TOKEN_BYTES)
    with pytest.raises(BearerTokenError) as caught:
        await introspector.introspect("t" * (DEFAULT_MAX_TOKEN_BYTES + 1))
    assert caught.value.description == "The access token is too large."
    assert len(issuer.introspection_requests) == asked + 1


async def test_an_introspection_the_issuer_fails_is_unavailable_and_logged(
    issuer: LocalIssuer, introspector: Introspector, caplog: pytest.LogCaptureFixture
) -> None:
    # The service answers such a request 503 "Try again later."; without a log line, a wrong
    # client secret (the issuer answers 401) looked like an outage with no cause to fix.
    issuer.introspection_answer = active(issuer)
    await introspector.introspect("t")
    issuer.failing = True
    with (
        caplog.at_level(logging.WARNING, logger="identity.resource"),
        pytest.raises(IssuerUnavailable),
    ):
        await introspector.introspect("t")
    assert "/introspect answered 500" in caplog.text


async def test_an_introspection_answer_over_the_cap_is_unavailable_not_read_whole(
    issuer: LocalIssuer, introspector: Introspector
) -> None:
    # Discovery and the JWKS were capped, the introspection answer was not: a broken issuer,
    # or a proxy in between, had the service read a body of any size into memory.
    issuer.introspection_answer = active(issuer) | {"padding": "x" * (2 * MAX_DOCUMENT_BYTES)}
    with pytest.raises(IssuerUnavailable, match=f"more than {MAX_DOCUMENT_BYTES} B"):
        await introspector.introspect("t")


def _audience_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and "audience" in record.getMessage()
    ]


async def _nowhere() -> str:
    return "https://id.example.test/introspect"


@pytest.mark.parametrize(("audience", "warnings"), [(None, 1), (AUDIENCE, 0)])
def test_an_introspector_made_without_an_audience_warns_as_the_kit_does(
    caplog: pytest.LogCaptureFixture, audience: str | None, warnings: int
) -> None:
    # Without one, an active token the issuer answers for any service is accepted here.
    with caplog.at_level(logging.WARNING, logger="identity.resource"):
        Introspector(
            httpx.AsyncClient(),
            _nowhere,
            issuer="https://id.example.test",
            client_id="svc",
            client_secret="s",
            audience=audience,
        )
    assert len(_audience_warnings(caplog)) == warnings


async def test_a_kit_without_an_audience_warns_once_for_its_introspectors(
    issuer: LocalIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    # README shows server.introspector(...) called per request: not a warning each time.
    with caplog.at_level(logging.WARNING, logger="identity.resource"):
        async with ResourceServer(ResourceServerConfig(issuer.issuer)) as kit:
            for _ in range(3):
                kit.introspector(*INTROSPECTION_CLIENT)
    assert len(_audience_warnings(caplog)) <= 2
