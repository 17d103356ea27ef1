"""Every hosted page: no framing, a strict CSP, no caching, and no script needed."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from identity.app import create_app
from identity.runtime import Runtime
from identity.settings import Settings
from tests.browser import (
    add_oauth_client,
    add_user,
    authorize_params,
    open_login,
    submit_login,
)
from tests.conftest import add_signing_key, serving


@pytest.fixture
async def pages(client: httpx.AsyncClient, runtime: Runtime) -> list[httpx.Response]:
    await add_user(runtime)
    await add_oauth_client(runtime)
    login = await open_login(client, authorize_params())
    failed = await submit_login(client, login, password="Wrong!Password1")
    consent_redirect = await submit_login(client, login)
    consent = await client.get(consent_redirect.headers["location"])
    error = await client.get("/authorize", params={"client_id": "unknown"})
    expired = await client.get("/login", params={"flow": "gone"})
    logout = await client.get("/logout")
    return [login, failed, consent, error, expired, logout]


def test_pages_cannot_be_framed(pages: list[httpx.Response]) -> None:
    for page in pages:
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_pages_have_a_strict_csp(pages: list[httpx.Response]) -> None:
    for page in pages:
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy
        assert "unsafe-inline" not in policy
        assert "unsafe-eval" not in policy
        assert "script-src" not in policy  # default-src 'none' forbids every script


def test_pages_are_not_cached_or_sniffed(pages: list[httpx.Response]) -> None:
    for page in pages:
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"


def test_pages_need_no_javascript(pages: list[httpx.Response]) -> None:
    for page in pages:
        assert page.headers["content-type"].startswith("text/html")
        assert "<script" not in page.text.lower()
        assert " on" not in page.text.lower().replace(" one", "")  # no onclick= handlers


async def test_stylesheet_is_served_from_our_origin(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/identity.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


async def test_a_stylesheet_the_browser_holds_is_not_sent_again(
    client: httpx.AsyncClient,
) -> None:
    # Every page loads it: a matching If-None-Match is answered 304, as discovery is.
    first = await client.get("/static/identity.css")
    etag = first.headers["etag"]
    for method in ("GET", "HEAD"):
        for condition in (etag, f'"other", W/{etag}', "*"):
            again = await client.request(
                method, "/static/identity.css", headers={"If-None-Match": condition}
            )
            assert again.status_code == 304, (method, condition)
            assert again.content == b""
            assert again.headers["etag"] == etag
            assert "content-length" not in again.headers
            assert again.headers.get_list("x-content-type-options") == ["nosniff"]
    changed = await client.get("/static/identity.css", headers={"If-None-Match": '"other"'})
    assert changed.status_code == 200 and changed.content == first.content


async def test_every_answer_forbids_sniffing_once(client: httpx.AsyncClient) -> None:
    answers = [
        await client.get("/accounts/not-a-uuid/users"),  # a 404 under a page path
        await client.get("/.well-known/openid-configuration"),
        await client.get("/jwks.json"),
        await client.post("/token"),
        await client.get("/static/nothing-here.css"),
        await client.get("/api/v1/users"),  # 401
        await client.get("/login", params={"flow": "gone"}),  # a page
    ]
    for answer in answers:
        assert answer.headers.get_list("x-content-type-options") == ["nosniff"], answer.url


async def test_over_https_every_answer_tells_browsers_to_keep_to_https(database: Settings) -> None:
    """HSTS: after one visit, a browser never again tries plain http, where someone on the
    network could strip TLS from the sign-in page before the Secure cookies ever matter."""
    app = create_app(dataclasses.replace(database, issuer="https://id.example"))
    async with serving(app) as http:
        await add_signing_key(app.state.runtime)
        answers = [
            await http.get("/password/forgot"),  # a page
            await http.get("/.well-known/openid-configuration"),
            await http.get("/static/identity.css"),
            await http.get("/api/v1/users"),  # 401
            await http.get("/no-such-page", headers={"accept": "text/html"}),
        ]
    for answer in answers:
        assert answer.headers.get_list("strict-transport-security") == ["max-age=31536000"], (
            answer.url
        )


async def test_over_plain_http_no_answer_claims_https(client: httpx.AsyncClient) -> None:
    answer = await client.get("/password/forgot")
    assert "strict-transport-security" not in answer.headers
