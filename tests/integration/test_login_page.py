"""The login page: CSRF, one message for every credential failure, sessions, throttling."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from identity.accounts import self_service
from identity.accounts.models import User
from identity.accounts.passwords import Passwords
from identity.app import create_app
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.settings import Settings
from identity.store.memory import MemoryStore
from identity.store.rate_limit import RateLimiter
from identity.web import pages
from tests.browser import (
    EMAIL,
    PASSWORD,
    add_oauth_client,
    add_user,
    authorize_params,
    form_fields,
    open_login,
    redirected_to_client,
    submit_login,
)
from tests.conftest import serving
from tests.integration.page_helpers import second_step, served_for_sign_in, waits_out
from tests.integration.recovery_helpers import PASSWORD as TWO_STEP_PASSWORD
from tests.integration.recovery_helpers import (
    change_password_elsewhere,
    enrolled_user,
    held_after,
    told_after,
    until_waiting_or_done,
)

Started = tuple[httpx.AsyncClient, Runtime]
TWO_STEP = "two-step@example.com"


@pytest.fixture
def start(database: Settings) -> Callable[..., AbstractAsyncContextManager[Started]]:
    """Start the app with some settings changed; a user and a first-party client exist."""

    @asynccontextmanager
    async def started(**changes: Any) -> AsyncIterator[Started]:
        async with served_for_sign_in(database, **changes) as (http, runtime):
            await add_user(runtime, "off@example.com", disabled=True)
            yield http, runtime

    return started


async def _sessions(runtime: Runtime) -> list[BrowserSession]:
    async with runtime.db.transaction() as session:
        return list(await session.scalars(select(BrowserSession)))


def _message(response: httpx.Response) -> str:
    start = response.text.index('role="alert">') + len('role="alert">')
    return response.text[start : response.text.index("<", start)]


async def test_login_form_carries_a_csrf_token_and_the_flow(start: Any) -> None:
    async with start() as (http, _):
        fields = form_fields((await open_login(http, authorize_params())).text)
    assert len(fields["csrf_token"]) == 64
    assert fields["flow"]
    assert set(fields) == {"csrf_token", "flow", "ui_locales", "email", "password"}


async def test_post_without_a_valid_csrf_token_shows_the_form_again(start: Any) -> None:
    async with start() as (http, runtime):
        page = await open_login(http, authorize_params())
        for token in ("", "0" * 64):
            fields = form_fields(page.text) | {"email": EMAIL, "password": "Qz7!mVt#pX2w"}
            response = await http.post("/login", data=fields | {"csrf_token": token})
            assert response.status_code == 400
            assert "expired or was sent from another site" in _message(response)
            assert form_fields(response.text)["email"] == EMAIL
        assert await _sessions(runtime) == []


async def test_csrf_token_from_another_browser_is_refused(start: Any) -> None:
    async with start() as (http, _):
        page = await open_login(http, authorize_params())
        http.cookies.clear()
        response = await submit_login(http, page)
    assert response.status_code == 400
    assert "expired or was sent from another site" in _message(response)


async def test_unknown_email_wrong_password_and_disabled_account_get_one_message(
    start: Any,
) -> None:
    async with start() as (http, runtime):
        answers = []
        for email, password in [
            ("nobody@example.com", "Qz7!mVt#pX2w"),
            (EMAIL, "Wrong!Password1"),
            ("off@example.com", "Qz7!mVt#pX2w"),
        ]:
            page = await open_login(http, authorize_params())
            response = await submit_login(http, page, email=email, password=password)
            answers.append((response.status_code, _message(response)))
        assert await _sessions(runtime) == []
    assert answers == [(400, "The email or password is incorrect.")] * 3


async def test_sign_in_sets_a_fresh_http_only_lax_session_cookie(start: Any) -> None:
    async with start() as (http, runtime):
        http.cookies.set(
            "identity_session", "planted-by-an-attacker", domain="testserver.local", path="/"
        )
        response = await submit_login(http, await open_login(http, authorize_params()))
        redirected_to_client(response)
        cookie = response.headers["set-cookie"]
        token = http.cookies["identity_session"]
        assert token != "planted-by-an-attacker"
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert "Path=/" in cookie
        assert "Secure" not in cookie  # the test issuer is http
        assert f"Max-Age={runtime.settings.session_ttl}" in cookie


async def _owner(runtime: Runtime) -> User:
    async with runtime.db.transaction() as session:
        return (await session.scalars(select(User).where(User.email == EMAIL))).one()


async def test_a_password_changed_while_a_sign_in_checks_it_opens_no_session(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """argon2 runs with no transaction open, so the owner can change the password (signing
    out everywhere) while a sign-in checks the old one: that sign-in opens no session."""
    async with start() as (http, runtime):
        page = await open_login(http, authorize_params())
        owner = await _owner(runtime)
        real_verify = Passwords.verify

        async def verify_while_a_change_lands(
            self: Passwords, stored: str | None, password: str
        ) -> bool:
            monkeypatch.setattr(Passwords, "verify", real_verify)  # the change verifies too
            verified = await real_verify(self, stored, password)
            await change_password_elsewhere(runtime, owner, PASSWORD, "Hj4%kT8@mW2!")
            return verified

        monkeypatch.setattr(Passwords, "verify", verify_while_a_change_lands)
        response = await submit_login(http, page)
        assert response.status_code == 400, response.headers
        assert _message(response) == "The email or password is incorrect."
        assert await _sessions(runtime) == []


async def test_a_password_changed_after_a_sign_in_found_it_unchanged_ends_its_session(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change begins right after the sign-in's transaction found the password unchanged.
    On PostgreSQL nothing stopped it before: it signed out every session it could see, and
    the one then committed outlived it. The check holds what it read until the session is
    committed (share locks; on SQLite, the write lock the session's INSERT took), so the
    change waits and ends that session too."""
    async with start() as (http, runtime):
        page = await open_login(http, authorize_params())
        owner = await _owner(runtime)
        real_check = pages.check_password_unchanged_since
        change: list[asyncio.Task[None]] = []

        async def check_then_a_change(*args: Any, **kwargs: Any) -> None:
            await real_check(*args, **kwargs)
            changing = change_password_elsewhere(runtime, owner, PASSWORD, "Hj4%kT8@mW2!")
            change.append(asyncio.create_task(changing))
            await until_waiting_or_done(runtime, change[0])  # the user's row, share-locked

        monkeypatch.setattr(pages, "check_password_unchanged_since", check_then_a_change)
        await submit_login(http, page)
        await change[0]
        assert [s for s in await _sessions(runtime) if s.revoked_at is None] == []


async def test_a_sign_in_with_the_old_password_while_a_change_commits_opens_no_session(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A change has written the new password (and its time) and signed out every session,
    and has yet to commit, when a sign-in reads the old hash and proves the old password.
    The sign-in's own clock read came after the change's, so comparing the two let its
    session outlive the change; what counts is whether the password it proved is the one
    stored when its session is."""
    async with start() as (http, runtime):
        page = await open_login(http, authorize_params())
        owner = await _owner(runtime)
        # The change's transaction stays open once it has written the new password.
        changing, go = held_after(monkeypatch, self_service, "revoke_all_for_user")
        proved = told_after(monkeypatch, pages, "authenticate")
        change = asyncio.create_task(
            change_password_elsewhere(runtime, owner, PASSWORD, "Hj4%kT8@mW2!")
        )
        await changing.wait()
        sign_in = asyncio.create_task(submit_login(http, page))
        await proved.wait()  # the old hash read, the old password proved
        go.set()
        await change
        response = await sign_in
        assert response.status_code == 400, response.headers
        assert _message(response) == "The email or password is incorrect."
        assert [s for s in await _sessions(runtime) if s.revoked_at is None] == []


async def test_session_cookie_is_secure_when_the_issuer_is_https(database: Settings) -> None:
    app = create_app(dataclasses.replace(database, issuer="https://id.example"))
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    # Secure cookies come back only over https, so this browser speaks https.
    async with (
        serving(app),
        httpx.AsyncClient(transport=transport, base_url="https://id.example") as https,
    ):
        await add_user(app.state.runtime)
        await add_oauth_client(app.state.runtime, first_party=True)
        response = await submit_login(https, await open_login(https, authorize_params()))
    redirected_to_client(response)
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("__Host-identity_session=")
    assert "Secure" in cookie


async def test_signing_in_again_replaces_the_session(start: Any) -> None:
    async with start() as (http, runtime):
        await submit_login(http, await open_login(http, authorize_params()))
        first = http.cookies["identity_session"]
        page = await open_login(http, authorize_params(prompt="login"))
        redirected_to_client(await submit_login(http, page))
        assert http.cookies["identity_session"] != first
        sessions = await _sessions(runtime)
    assert len(sessions) == 2
    assert sum(s.revoked_at is None for s in sessions) == 1


async def test_unknown_flow_shows_the_expired_page(start: Any) -> None:
    async with start() as (http, _):
        response = await http.get("/login", params={"flow": "nope"})
        posted = await http.post("/login", data={"flow": "nope", "email": EMAIL})
    assert response.status_code == posted.status_code == 400
    assert "expired" in response.text


# --- throttling ---------------------------------------------------------------------------


async def _fail(http: httpx.AsyncClient, email: str = EMAIL, **headers: str) -> httpx.Response:
    # prompt=login: the login page even when an earlier attempt signed this browser in.
    page = await open_login(http, authorize_params(prompt="login"))
    return await submit_login(http, page, email=email, password="Wrong!Password1", **headers)


async def _good(http: httpx.AsyncClient, **headers: str) -> httpx.Response:
    page = await open_login(http, authorize_params(prompt="login"))
    return await submit_login(http, page, **headers)


def _throttled(response: httpx.Response, since: float, left: int = 15 * 60) -> bool:
    """Refused, and told to wait what is ``left`` of the refusing limit's window, first
    counted after ``since`` (both sign-in limits last login_lockout, 15 minutes: all of it
    bar the time gone since, unless the clock moved)."""
    return (
        response.status_code == 429
        and "try again later" in _message(response)
        and waits_out(response, left, since)
    )


async def test_account_is_throttled_after_consecutive_failures_even_with_the_right_password(
    start: Any,
) -> None:
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=3) as (http, _):
        for _ in range(3):
            assert (await _fail(http)).status_code == 400
        assert _throttled(await _good(http), since)
        # Another account from the same address is not affected by this account's count.
        assert not _throttled(await _fail(http, "someone@example.com"), since)


async def _posted_again_at_the_last_attempt(
    http: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    passwords: list[str],
) -> tuple[list[httpx.Response], int]:
    """Two failures of three spent, then one sign-in form posted at once with each of
    ``passwords`` (one email, so one repeat key): the first post, with the right password,
    held once it is marked under way (before it takes the flow, or gives the count back) until
    each later post has answered or, its own password checked, waits for the first one's
    answer. The answers, and how many passwords argon2 checked in all."""
    for _ in range(2):
        assert (await _fail(http)).status_code == 400
    fields = form_fields((await open_login(http, authorize_params(prompt="login"))).text)
    reached, release, waiting = asyncio.Event(), asyncio.Event(), asyncio.Event()
    add, get, verify = runtime.store.add, runtime.store.get, Passwords.verify
    checked = 0

    async def held(key: str, value: bytes, ttl: int) -> bool:
        added = await add(key, value, ttl)
        if added and key.startswith("repeated-post:") and not reached.is_set():
            reached.set()  # the first post, its password right, is under way: hold it there
            await release.wait()
        return added

    async def counted(self: Passwords, stored: str | None, password: str) -> bool:
        nonlocal checked
        checked += 1
        return await verify(self, stored, password)

    async def noting_a_wait(key: str) -> bytes | None:
        value = await get(key)
        if key.startswith("repeated-post:") and value == b"-" and checked > 1:
            waiting.set()  # a later post, its password checked, polls for the first's answer
        return value

    monkeypatch.setattr(runtime.store, "add", held)
    monkeypatch.setattr(Passwords, "verify", counted)
    monkeypatch.setattr(runtime.store, "get", noting_a_wait)
    cookies = httpx.Cookies(http.cookies)
    first = asyncio.create_task(
        http.post("/login", data=fields | {"email": EMAIL, "password": PASSWORD})
    )
    await reached.wait()
    answers = []
    for password in passwords:
        http.cookies = httpx.Cookies(cookies)
        waiting.clear()
        later = asyncio.create_task(
            http.post("/login", data=fields | {"email": EMAIL, "password": password})
        )
        noticed = asyncio.create_task(waiting.wait())
        await asyncio.wait({later, noticed}, return_when=asyncio.FIRST_COMPLETED)
        noticed.cancel()
        answers.append(later)
    release.set()
    return [await first, *[await answer for answer in answers]], checked


async def test_a_right_password_posted_twice_at_once_at_the_last_attempt_signs_in_both(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first post spends the last attempt and signs in; the same post again, at the same
    # moment, was counted against the spent budget and told "too many attempts" (429).
    async with start(login_max_failures=3) as (http, runtime):
        answers, _ = await _posted_again_at_the_last_attempt(http, runtime, monkeypatch, [PASSWORD])

        assert [a.status_code for a in answers] == [303, 303], answers[1].text
        assert all(redirected_to_client(a) for a in answers)
        # One sign-in, the first post's, under the same cookie in both answers.
        (only,) = await _sessions(runtime)
        assert only.revoked_at is None
        assert answers[0].cookies["identity_session"] == answers[1].cookies["identity_session"]


async def test_at_the_last_attempt_a_repeat_proves_its_password_and_only_one_is_checked(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The repeat key holds no password: a wrong one in the same post again is refused as
    # before, not handed the first post's sign-in; and beyond the limit one post of the key
    # at most has its password checked, so a right sign-in under way buys an attacker at the
    # limit one argon2 verify, however many copies they send.
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=3) as (http, runtime):
        answers, checked = await _posted_again_at_the_last_attempt(
            http, runtime, monkeypatch, ["Wrong!Password1", PASSWORD]
        )

        assert answers[0].status_code == 303, answers[0].text
        assert all(_throttled(a, since) for a in answers[1:]), [a.status_code for a in answers]
        assert all("identity_session" not in a.headers.get("set-cookie", "") for a in answers[1:])
        assert checked == 1 + 1  # the first post, and one copy beyond the limit
        assert len(await _sessions(runtime)) == 1


async def _double_click_at_the_last_attempt_while_the_first_is_checked(
    http: httpx.AsyncClient,
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    email: str = EMAIL,
    password: str = PASSWORD,
) -> list[httpx.Response]:
    """Two failures of three spent, then the sign-in form posted twice, the copy landing
    while the first post's password is still in argon2 and polling for it: both answers."""
    for _ in range(2):
        assert (await _fail(http, email)).status_code == 400
    fields = form_fields((await open_login(http, authorize_params(prompt="login"))).text)
    checking, release, polled = asyncio.Event(), asyncio.Event(), asyncio.Event()
    get, verify = runtime.store.get, Passwords.verify
    reads = 0

    async def held(self: Passwords, stored: str | None, password: str) -> bool:
        if not checking.is_set():
            checking.set()  # the first post, admitted at the last attempt, is checked
            await release.wait()
        return await verify(self, stored, password)

    async def noting_polls(key: str) -> bytes | None:
        nonlocal reads
        if key.startswith("repeated-post:") and checking.is_set():
            reads += 1
            if reads > 1:
                polled.set()  # the copy reads its key again: it waits for the first
        return await get(key)

    monkeypatch.setattr(Passwords, "verify", held)
    monkeypatch.setattr(runtime.store, "get", noting_polls)
    cookies = httpx.Cookies(http.cookies)
    data = fields | {"email": email, "password": password}
    first = asyncio.create_task(http.post("/login", data=data))
    await checking.wait()
    http.cookies = httpx.Cookies(cookies)
    again = asyncio.create_task(http.post("/login", data=data))
    noticed = asyncio.create_task(polled.wait())
    await asyncio.wait({again, noticed}, return_when=asyncio.FIRST_COMPLETED)
    noticed.cancel()
    release.set()
    return [await first, await again]


async def test_a_double_click_at_the_last_attempt_while_the_first_is_checked_signs_in_both(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A double click lands while the first post's password is still in argon2, before a
    # right one marks the post under way: the copy, refused by the throttle, found no mark
    # and was told "too many attempts" (429) while the first post signed in.
    async with start(login_max_failures=3) as (http, runtime):
        answers = await _double_click_at_the_last_attempt_while_the_first_is_checked(
            http, runtime, monkeypatch
        )

        assert [a.status_code for a in answers] == [303, 303], answers[1].text
        # One sign-in, the first post's, under the same cookie in both answers.
        assert len(await _sessions(runtime)) == 1
        assert answers[0].cookies["identity_session"] == answers[1].cookies["identity_session"]


async def test_a_two_step_double_click_at_the_last_attempt_asks_for_the_code_both_times(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first post goes on to the code page, handing over no session: it withdrew its
    # mark, so the copy the throttle refused found none and was told "too many attempts".
    async with start(login_max_failures=3) as (http, runtime):
        _, generator, _ = await enrolled_user(runtime, TWO_STEP)
        answers = await _double_click_at_the_last_attempt_while_the_first_is_checked(
            http, runtime, monkeypatch, TWO_STEP, TWO_STEP_PASSWORD
        )

        assert [a.status_code for a in answers] == [303, 303], answers[1].text
        location = answers[0].headers["location"]
        assert location.startswith("/login/second-factor?")
        assert answers[1].headers["location"] == location
        redirected_to_client(await second_step(http, answers[1], generator.now()))
        assert len(await _sessions(runtime)) == 1


@pytest.mark.parametrize(
    ("limit", "emails"),
    [
        ("login_max_failures", [EMAIL] * 3),
        ("login_max_failures_per_ip", [f"user{n}@example.com" for n in range(3)]),
    ],
)
async def test_only_a_post_at_the_last_attempt_leaves_a_note_for_a_refused_copy(
    start: Any, monkeypatch: pytest.MonkeyPatch, limit: str, emails: list[str]
) -> None:
    # Only a post that spends the last attempt of a limit can have a copy refused behind
    # it, so only that post notes in the store that it is being checked; every sign-in
    # post wrote and removed the note, two store round trips each.
    async with start(**{limit: 3}) as (http, runtime):
        writes: list[str] = []

        def noting(name: str) -> None:
            method = getattr(runtime.store, name)

            async def noted(key: str, *args: Any) -> Any:
                if key.startswith("repeated-post:"):
                    writes.append(name)
                return await method(key, *args)

            monkeypatch.setattr(runtime.store, name, noted)

        for name in ("set", "add", "delete"):
            noting(name)
        per_post = []
        for email in emails:
            page = await open_login(http, authorize_params(prompt="login"))
            writes.clear()
            failed = await submit_login(http, page, email=email, password="Wrong!Password1")
            assert failed.status_code == 400
            per_post.append(list(writes))

        assert per_post == [[], [], ["set", "delete"]]


async def test_unknown_email_is_throttled_like_a_known_one(start: Any) -> None:
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=2) as (http, _):
        for _ in range(2):
            await _fail(http, "nobody@example.com")
        assert _throttled(await _fail(http, "NOBODY@example.com"), since)


async def test_every_spelling_of_an_address_counts_against_one_account(start: Any) -> None:
    # Each signs in to the same account (composed or decomposed accents, Unicode or
    # punycode domain, any case), so each must spend the same count.
    since = time.monotonic()  # before the window's first count
    spellings = [
        "josé@bücher.example",
        "jose\u0301@bu\u0308cher.example",
        "JOSÉ@XN--BCHER-KVA.EXAMPLE",
    ]
    async with start(login_max_failures=2) as (http, _):
        for spelling in spellings[:2]:
            assert not _throttled(await _fail(http, spelling), since)
        assert _throttled(await _fail(http, spellings[2]), since)


async def test_success_resets_the_account_count(start: Any) -> None:
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=3) as (http, _):
        for _ in range(2):
            await _fail(http)
        redirected_to_client(await _good(http))
        for _ in range(2):
            assert not _throttled(await _fail(http), since)


async def test_lock_out_expires_with_its_window(
    start: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counted on a clock the test moves: on the real one, a window short enough to wait
    # out could end while a loaded machine was still making the attempts that fill it.
    # That the store's own expiry is on time is test_store_contract's part.
    clock = [0.0]
    async with start(login_max_failures=2) as (http, runtime):
        monkeypatch.setattr(runtime, "limiter", RateLimiter(MemoryStore(clock=lambda: clock[0])))
        for _ in range(2):
            await _fail(http)
        clock[0] = runtime.settings.login_lockout - 1
        refused = await _good(http)
        # On the test's clock no time goes by from here: exactly the last second is left.
        assert _throttled(refused, time.monotonic(), left=1)
        clock[0] = runtime.settings.login_lockout
        redirected_to_client(await _good(http))


async def test_address_is_throttled_across_accounts(start: Any) -> None:
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures_per_ip=3) as (http, _):
        for n in range(3):
            await _fail(http, f"user{n}@example.com")
        assert _throttled(await _good(http), since)


async def test_posts_refused_for_a_locked_account_spend_nothing_of_the_address(
    start: Any,
) -> None:
    """Refused before its password is checked, such a post is no failed sign-in: someone
    on a shared address (an office, a NAT) hammering a locked account does not use up the
    address's attempts for everyone else behind it."""
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=2, login_max_failures_per_ip=4) as (http, _):
        for _ in range(2):
            await _fail(http, "nobody@example.com")
        for _ in range(3):
            assert _throttled(await _fail(http, "nobody@example.com"), since)
        redirected_to_client(await _good(http))


async def test_spoofed_forwarded_for_from_an_untrusted_peer_changes_nothing(start: Any) -> None:
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures_per_ip=3) as (http, _):
        for n in range(3):
            await _fail(http, f"user{n}@example.com", **{"X-Forwarded-For": f"198.51.100.{n}"})
        assert _throttled(await _good(http, **{"X-Forwarded-For": "203.0.113.9"}), since)


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(start: Any) -> None:
    since = time.monotonic()  # before the window's first count
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    async with start(login_max_failures_per_ip=3, trusted_proxies=proxies) as (http, runtime):
        for n in range(3):
            await _fail(http, f"user{n}@example.com", **{"X-Forwarded-For": "198.51.100.7"})
        assert _throttled(await _good(http, **{"X-Forwarded-For": "198.51.100.7"}), since)
        # A client's own spoofed entry sits left of the one the proxy appended: ignored.
        spoofed = "198.51.100.99, 198.51.100.7"
        assert _throttled(await _good(http, **{"X-Forwarded-For": spoofed}), since)
        redirected_to_client(await _good(http, **{"X-Forwarded-For": "203.0.113.9"}))
        sessions = await _sessions(runtime)
    assert [s.ip for s in sessions] == ["203.0.113.9"]


async def test_clients_behind_a_proxy_that_writes_ports_are_throttled_apart(start: Any) -> None:
    # Azure Application Gateway and others append "address:port"; each connection comes from a
    # new port, yet it is one client, and another client's count is its own.
    since = time.monotonic()  # before the window's first count
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    async with start(login_max_failures_per_ip=3, trusted_proxies=proxies) as (http, runtime):
        for n in range(3):
            ported = f"198.51.100.7:{50000 + n}, 127.0.0.2:443"
            await _fail(http, f"user{n}@example.com", **{"X-Forwarded-For": ported})
        assert _throttled(await _good(http, **{"X-Forwarded-For": "198.51.100.7:50003"}), since)
        redirected_to_client(await _good(http, **{"X-Forwarded-For": "[2001:db8::9]:443"}))
        sessions = await _sessions(runtime)
    assert [s.ip for s in sessions] == ["2001:db8::9"]


async def test_ipv6_clients_are_throttled_by_their_64_network(start: Any) -> None:
    # One subscriber's line gets a whole /64 (RFC 6177): counted per /128, a guesser who takes
    # a new address for every attempt would never meet the per-address limit.
    since = time.monotonic()  # before the window's first count
    proxies = (ipaddress.ip_network("127.0.0.0/8"),)
    async with start(login_max_failures_per_ip=3, trusted_proxies=proxies) as (http, runtime):
        for n in range(3):
            spread = {"X-Forwarded-For": f"2001:db8:0:1:{n}::{n + 1}"}
            await _fail(http, f"user{n}@example.com", **spread)
        assert _throttled(await _good(http, **{"X-Forwarded-For": "2001:db8:0:1:ffff::9"}), since)
        # The neighbouring /64 is another subscriber; the address itself is recorded whole.
        redirected_to_client(await _good(http, **{"X-Forwarded-For": "2001:db8:0:2::9"}))
        sessions = await _sessions(runtime)
    assert [s.ip for s in sessions] == ["2001:db8:0:2::9"]


async def test_a_flood_of_pending_sign_ins_does_not_lift_a_lock_out(start: Any) -> None:
    # Without Redis, this process's memory holds pending sign-ins and failure counts and is
    # bounded by dropping its oldest items: opening enough authorization requests (anyone
    # may) used to drop the counts first, and with them every lock-out.
    since = time.monotonic()  # before the window's first count
    async with start(login_max_failures=2, redis_url=None) as (http, runtime):
        for _ in range(2):
            await _fail(http)
        for n in range(100_000):
            await runtime.store.set(f"flow:flood-{n}", b"{}", 600)
        assert _throttled(await _good(http), since)
