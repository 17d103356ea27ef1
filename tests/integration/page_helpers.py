"""Walking the recovery, second-factor and security pages as a browser without JavaScript."""

from __future__ import annotations

import dataclasses
import html
import math
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

from identity.accounts.models import User
from identity.accounts.repository import stored_password
from identity.app import create_app
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.mail.models import OutgoingEmail
from identity.recovery.email_change import request_email_change
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.settings import Settings
from tests.browser import add_oauth_client, add_user, form_fields
from tests.conftest import serving
from tests.integration.oauth_helpers import REDIRECT_URI, RegisteredClient

SECURITY = "/account/security"


@asynccontextmanager
async def served_for_sign_in(
    database: Settings, **changes: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    """The app served with ``changes`` to its settings (the limits under test), with
    tests.browser's user and a first-party client to sign in to."""
    app = create_app(dataclasses.replace(database, **changes))
    async with serving(app) as http:
        runtime: Runtime = app.state.runtime
        await add_user(runtime)
        await add_oauth_client(runtime, first_party=True)
        yield http, runtime


async def login_page(
    http: httpx.AsyncClient, app: RegisteredClient, challenge: str, **params: str
) -> httpx.Response:
    """The login page an authorization request of ``app`` (PKCE ``challenge``) leads to."""
    authorize = await http.get(
        "/authorize",
        params={
            "client_id": app.client_id,
            "redirect_uri": REDIRECT_URI,
            "response_type": "code",
            "scope": "openid email",
            "state": "s1",
            "nonce": "n1",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        | params,
    )
    assert authorize.status_code == 303, authorize.text
    return await http.get(authorize.headers["location"])


async def ask_email_change(
    runtime: Runtime, user: User, new_email: str, locale: str = "en"
) -> None:
    """``user``, signed in, asks to sign in with ``new_email`` from now on, on a page in
    ``locale``: a confirmation link goes to the new address."""
    now = utcnow()
    async with runtime.db.transaction() as session:
        proven = await stored_password(session, user.id)
        assert proven is not None
        browser = await sessions.establish(
            session,
            user_id=user.id,
            amr=["pwd"],
            now=now,
            lifetime=runtime.settings.session_lifetime,
            previous_token=None,
            ip=None,
            user_agent=None,
        )
        asked = await request_email_change(
            session,
            runtime.store,
            runtime.limiter,
            runtime.settings,
            Actor(user.id),
            user.id,
            new_email,
            locale,
            now,
            browser_id=browser.session.id,
            password_set_at=proven.set_at,
        )
    assert asked is not None


def _text_of(response: httpx.Response, role: str) -> str:
    match = re.search(rf'role="{role}">(.*?)</(p|ul)>', response.text, re.S)
    assert match, response.text
    return html.unescape(re.sub(r"<[^>]+>", " ", match.group(1))).strip()


def alert(response: httpx.Response) -> str:
    """The page's error message (or refusal reasons), as text."""
    return _text_of(response, "alert")


def notice(response: httpx.Response) -> str:
    return _text_of(response, "status")


def retry_after(response: httpx.Response) -> int:
    """The seconds a 429 tells the client to wait (Retry-After, RFC 6585 §4)."""
    assert response.status_code == 429
    return int(response.headers["retry-after"])


def waits_out(response: httpx.Response, window: int, since: float) -> bool:
    """Whether a 429 tells the client to wait out what is left of a ``window``-second limit
    whose first count came after ``since`` (a ``time.monotonic()`` reading): all of it bar
    the time gone since, which both stores round up to whole seconds (store/memory.py,
    store/redis.py). Redis keeps time in whole milliseconds, so its reading of the time
    gone may be a millisecond longer."""
    gone = time.monotonic() - since
    return math.ceil(window - gone - 0.001) <= retry_after(response) <= window


class _InvalidFields(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("aria-invalid") == "true":
            self.found[values.get("id") or ""] = values.get("aria-describedby") or ""


def invalid_fields(response: httpx.Response) -> dict[str, str]:
    """The id of each field a page marks invalid, with the ids of what describes it."""
    parser = _InvalidFields()
    parser.feed(response.text)
    return parser.found


async def mail_to(runtime: Runtime, address: str) -> list[OutgoingEmail]:
    """The emails queued for ``address`` in the order they were queued, once background work
    (a reset look-up) is done."""
    await runtime.background.drain()
    async with runtime.db.transaction() as session:
        statement = (
            select(OutgoingEmail)
            .where(OutgoingEmail.to_address == address)
            .order_by(OutgoingEmail.created_at)
        )
        return list((await session.scalars(statement)).all())


def link_in(message: OutgoingEmail, path: str) -> str:
    """The local part (path and query) of the link to ``path`` in an email's text part."""
    match = re.search(
        rf"http://testserver\.local{re.escape(path)}\?token=[A-Za-z0-9_%-]+", message.text_body
    )
    assert match, message.text_body
    assert message.html_body and match.group(0) in message.html_body
    parts = urlsplit(match.group(0))
    return f"{parts.path}?{parts.query}"


def token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def post_form(
    http: httpx.AsyncClient, page: httpx.Response, action: str, **values: str
) -> httpx.Response:
    """Submit a form of ``page`` (its hidden fields, CSRF token included) with ``values``."""
    return await http.post(action, data=form_fields(page.text) | values)


async def posted_twice(
    http: httpx.AsyncClient, action: str, fields: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    """A form posted twice with the same cookies, as a browser does on a double click: it
    drops the first answer (and its Set-Cookie) and shows the second."""
    before = httpx.Cookies(http.cookies)
    first = await http.post(action, data=fields)
    http.cookies = before
    return first, await http.post(action, data=fields)


async def second_step(http: httpx.AsyncClient, step: httpx.Response, code: str) -> httpx.Response:
    """Type ``code`` on the second-factor page the password ``step`` sent the browser to."""
    location = step.headers.get("location", "")
    assert step.status_code == 303 and location.startswith("/login/second-factor?"), step.text
    return await post_form(http, await http.get(location), "/login/second-factor", code=code)


async def sign_in_to_security_page(
    http: httpx.AsyncClient, email: str, password: str, code: str | None = None, **headers: str
) -> httpx.Response:
    """Open the security page signed out: to the login page, sign in (with ``code`` after the
    password for a user with two-step verification), and back."""
    to_login = await http.get(SECURITY, headers=headers)
    assert to_login.status_code == 303 and to_login.headers["location"].startswith("/login?flow=")
    login = await http.get(to_login.headers["location"], headers=headers)
    back = await post_form(http, login, "/login", email=email, password=password)
    if code is not None:
        back = await second_step(http, back, code)
    assert back.status_code == 303, back.text
    assert urlsplit(back.headers["location"]).path == SECURITY
    page = await http.get(back.headers["location"], headers=headers)
    assert page.status_code == 200, page.text
    return page


def totp_secret(page: httpx.Response) -> str:
    """The authenticator key the two-step set-up page shows beside its QR code."""
    match = re.search(r"data-totp-secret>((?:<span>[A-Z2-7]+</span>)+)</code>", page.text)
    assert match, page.text
    return re.sub(r"</?span>", "", match.group(1))


async def other_session(runtime: Runtime, user: User) -> str:
    """Another browser signed in as ``user``; returns its cookie value."""
    async with runtime.db.transaction() as session:
        other = await sessions.establish(
            session,
            user_id=user.id,
            amr=["pwd"],
            now=utcnow(),
            lifetime=runtime.settings.session_lifetime,
            previous_token=None,
            ip="198.51.100.7",
            user_agent="Other Browser",
        )
    return other.token


async def session_live(runtime: Runtime, token: str) -> bool:
    """Whether the browser session whose cookie is ``token`` still signs its browser in."""
    async with runtime.db.transaction() as session:
        return await sessions.current(session, token, utcnow()) is not None


async def change_password(
    http: httpx.AsyncClient, page: httpx.Response, current: str, new: str
) -> httpx.Response:
    """The security page's password form, posted with the new password twice."""
    return await post_form(
        http,
        page,
        f"{SECURITY}/password",
        current_password=current,
        password=new,
        password_confirm=new,
    )


async def followed(http: httpx.AsyncClient, posted: httpx.Response) -> httpx.Response:
    """The page a post to the security page that changed something redirects to (303, so
    that a reload does not post again), as the browser loads it."""
    assert posted.status_code == 303, posted.text
    location = posted.headers["location"]
    assert urlsplit(location).path == SECURITY, location
    page = await http.get(location)
    assert page.status_code == 200, page.text
    return page
