"""Helpers for tests of the browser side: users, clients, PKCE, and walking the hosted pages."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from joserfc import jwt
from playwright.sync_api import Browser, sync_playwright

from identity.accounts.models import User
from identity.accounts.service import create_user, prepare_user
from identity.clients.models import OAuthClient
from identity.clients.repository import add_client
from identity.runtime import Runtime

PASSWORD = "Qz7!mVt#pX2w"
EMAIL = "ana@example.com"
CLIENT_ID = "webapp"
REDIRECT_URI = "https://app.example/callback"
POST_LOGOUT_URI = "https://app.example/signed-out"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-gpu",
]


async def add_user(
    runtime: Runtime, email: str = EMAIL, password: str = PASSWORD, *, disabled: bool = False
) -> User:
    new = await prepare_user(runtime.passwords, email=email, password=password)
    async with runtime.db.transaction() as session:
        user = await create_user(session, new)
        user.disabled = disabled
    return user


async def add_oauth_client(runtime: Runtime, **fields: Any) -> OAuthClient:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "name": "Web App",
        "secret_hash": None,
        "is_public": True,
        "first_party": False,
        "redirect_uris": [REDIRECT_URI, "https://app.example/cb?tenant=1"],
        "post_logout_redirect_uris": [POST_LOGOUT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "scope": "openid profile email",
        "resources": ["https://billing.example/"],
    } | fields
    client = OAuthClient(**values)
    async with runtime.db.transaction() as session:
        await add_client(session, client)
    return client


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def authorize_params(**overrides: str | None) -> dict[str, str]:
    """A valid authorization request; an override of None leaves the parameter out."""
    _, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "scope": "openid profile",
        "state": "af0ifjsldkj",
        "nonce": "n-0S6_WzA2Mj",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    } | overrides
    return {name: value for name, value in params.items() if value is not None}


def query(location: str) -> dict[str, str]:
    """The query of a redirect, one value per name (asserting none repeats)."""
    parsed = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in parsed.values()), parsed
    return {name: values[0] for name, values in parsed.items()}


def redirected_to_client(
    response: httpx.Response, redirect_uri: str = REDIRECT_URI, *, fragment: bool = False
) -> dict:
    """The answer a redirect to the client carries: in its query, or, for a client that reads
    it there, in its fragment (and then nothing in the query)."""
    assert response.status_code == 303, response.text
    location, _, answer = response.headers["location"].partition("#")
    assert bool(answer) == fragment, response.headers["location"]
    assert location.split("?")[0] == redirect_uri.split("?")[0], location
    return query("?" + answer) if fragment else query(location)


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless under Playwright, closed however the block ends."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("name"):
            self.fields[values["name"] or ""] = values.get("value") or ""


def form_fields(html: str) -> dict[str, str]:
    """Every named input of a page with its value, hidden ones included."""
    parser = _Inputs()
    parser.feed(html)
    return parser.fields


def flow_of(response: httpx.Response) -> str:
    match = re.search(r"[?&]flow=([^&]+)", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


async def open_login(http: httpx.AsyncClient, params: dict[str, str]) -> httpx.Response:
    """GET /authorize, expecting the browser to be sent to the login page; returns that page."""
    response = await http.get("/authorize", params=params)
    assert response.status_code == 303, response.text
    assert response.headers["location"].startswith("/login?flow="), response.headers["location"]
    page = await http.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return page


async def submit_login(
    http: httpx.AsyncClient,
    login_page: httpx.Response,
    email: str = EMAIL,
    password: str = PASSWORD,
    **headers: str,
) -> httpx.Response:
    fields = form_fields(login_page.text) | {"email": email, "password": password}
    return await http.post("/login", data=fields, headers=headers)


async def sign_in(
    http: httpx.AsyncClient, params: dict[str, str] | None = None, **credentials: str
) -> httpx.Response:
    """Authorize, sign in on the login page; returns the response to the login POST."""
    page = await open_login(http, params or authorize_params())
    return await submit_login(http, page, **credentials)


async def post_from_another_site(
    client: httpx.AsyncClient, path: str, data: dict[str, str]
) -> httpx.Response:
    """A form post from another site, as a browser sends it: its SameSite=Lax cookies stay
    behind (they go only with same-site requests and top-level GET navigations)."""
    request = client.build_request("POST", path, data=data)
    del request.headers["cookie"]
    return await client.send(request)


async def approve_consent(http: httpx.AsyncClient, consent_location: str) -> httpx.Response:
    page = await http.get(consent_location)
    assert page.status_code == 200, page.text
    return await http.post("/consent", data=form_fields(page.text) | {"decision": "allow"})


async def id_token(runtime: Runtime, user: User, typ: str = "JWT", **claims: Any) -> str:
    """An ID token for ``user`` signed with the current key, expired an hour ago by default."""
    keyset = await runtime.keyset()
    now = int(time.time())
    payload = {
        "iss": runtime.settings.issuer,
        "sub": str(user.id),
        "aud": CLIENT_ID,
        "iat": now - 7200,
        "exp": now - 3600,
    } | claims
    header = {"alg": keyset.current_alg, "kid": keyset.current.kid, "typ": typ}
    return jwt.encode(header, payload, keyset.current)
