"""A sign-in step posted twice at once (a double click, a resent request) hands over once:
one session; another post is told to start again, and the same post again continues the
first one's sign-in."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import event, select

from identity.accounts.models import User
from identity.accounts.service import disable_user
from identity.clock import utcnow
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from identity.store.base import StoreUnavailable
from identity.web import repeated_posts
from tests.browser import form_fields
from tests.integration.account_helpers import SYSTEM
from tests.integration.oauth_helpers import REDIRECT_URI, make_client, pkce_pair
from tests.integration.page_helpers import (
    SECURITY,
    alert,
    login_page,
    posted_twice,
    second_step,
)
from tests.integration.recovery_helpers import (
    PASSWORD,
    change_password_elsewhere,
    enrolled_user,
    new_user,
)

ANA = "ana@example.com"


async def _login_page(
    http: httpx.AsyncClient, runtime: Runtime, *, first_party: bool = True
) -> httpx.Response:
    """The login page of a sign-in to a new app: a first-party one unless ``first_party`` is
    False, when the sign-in goes on to consent."""
    app = await make_client(runtime, first_party=first_party)
    _, challenge = pkce_pair()
    return await login_page(http, app, challenge)


async def _sessions(runtime: Runtime) -> list[BrowserSession]:
    async with runtime.db.transaction() as session:
        return list(await session.scalars(select(BrowserSession)))


async def _one_sign_in_at_consent(
    client: httpx.AsyncClient, runtime: Runtime, first: httpx.Response, second: httpx.Response
) -> None:
    """Both posts went on to the same consent page, with one session, the one whose cookie
    the browser kept."""
    assert first.status_code == 303 and first.headers["location"].startswith("/consent?")
    assert second.status_code == 303, second.text
    assert second.headers["location"] == first.headers["location"]
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None
    assert (await client.get(SECURITY)).status_code == 200  # the cookie the browser kept


def _one_handed_over(answers: list[httpx.Response]) -> None:
    to_client = [a for a in answers if a.headers.get("location", "").startswith(REDIRECT_URI)]
    assert len(to_client) == 1, [(a.status_code, a.headers.get("location")) for a in answers]
    (other,) = [a for a in answers if a not in to_client]
    assert other.status_code == 400 and "has expired" in alert(other), other.text
    assert "identity_session" not in other.headers.get("set-cookie", "")


async def test_a_password_step_posted_twice_at_once_signs_in_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    answers = await asyncio.gather(*(client.post("/login", data=fields) for _ in range(2)))

    # The same post twice (a double click): both answers lead to the app.
    assert all(a.headers.get("location", "").startswith(REDIRECT_URI) for a in answers)
    assert len(await _sessions(runtime)) == 1


async def test_a_password_step_posted_twice_continues_the_first_sign_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    first, second = await posted_twice(client, "/login", fields)

    assert first.status_code == 303, first.text
    assert second.status_code == 303, second.text
    assert second.headers["location"].startswith(REDIRECT_URI)
    (only,) = await _sessions(runtime)
    assert only.revoked_at is None
    assert (await client.get(SECURITY)).status_code == 200  # the cookie the browser kept


async def test_a_repeated_password_post_proves_the_password_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    first, _ = await posted_twice(client, "/login", fields)
    assert first.status_code == 303, first.text

    client.cookies.clear()
    wrong = await client.post("/login", data=fields | {"password": "not " + PASSWORD})
    assert wrong.status_code == 400 and "has expired" in alert(wrong)
    assert "identity_session" not in wrong.headers.get("set-cookie", "")


async def test_a_password_step_posted_twice_asks_for_the_code_both_times(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, _ = await enrolled_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    first, second = await posted_twice(client, "/login", fields)

    assert first.headers["location"] == second.headers["location"]
    done = await second_step(client, second, generator.now())
    assert done.status_code == 303 and done.headers["location"].startswith(REDIRECT_URI)


async def _at_the_code_step(
    client: httpx.AsyncClient, runtime: Runtime
) -> tuple[pyotp.TOTP, list[str], dict[str, str]]:
    """Ana, enrolled, past her password: her authenticator, her recovery codes and the code
    step's form."""
    _, generator, codes = await enrolled_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    step = await client.post("/login", data=fields)
    assert step.status_code == 303 and step.headers["location"].startswith("/login/second-factor")
    return generator, codes, form_fields((await client.get(step.headers["location"])).text)


async def test_a_code_step_posted_twice_at_once_issues_one_code(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    generator, codes, page = await _at_the_code_step(client, runtime)

    # Two good codes (a tab with the app's code, another with a recovery code): each alone
    # would sign in, together they must not sign in twice.
    answers = await asyncio.gather(
        client.post("/login/second-factor", data=page | {"code": generator.now()}),
        client.post("/login/second-factor", data=page | {"code": codes[0]}),
    )

    _one_handed_over(list(answers))
    assert len(await _sessions(runtime)) == 1


@contextmanager
def failing_inserts_of_sessions(runtime: Runtime) -> Iterator[None]:
    """The database failing (a disk error, a server gone) as the session is being written,
    after the post has taken the flow."""

    engine = runtime.db.engine.sync_engine
    # The driver's own error, as a lost server or a failing disk raises it.
    driver_error = engine.dialect.dbapi.OperationalError  # type: ignore[union-attr]

    def fail(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO BROWSER_SESSIONS"):
            raise driver_error("disk I/O error")

    event.listen(engine, "before_cursor_execute", fail)
    try:
        yield
    finally:
        event.remove(engine, "before_cursor_execute", fail)


async def test_a_step_the_database_failed_can_be_posted_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    generator, _, page = await _at_the_code_step(client, runtime)
    code = {"code": generator.now()}

    with failing_inserts_of_sessions(runtime):
        failed = await client.post("/login/second-factor", data=page | code)
    again = await client.post("/login/second-factor", data=page | code)

    assert failed.status_code == 503, failed.text
    assert again.status_code == 303 and again.headers["location"].startswith(REDIRECT_URI)
    assert len(await _sessions(runtime)) == 1


async def test_a_password_step_the_database_failed_can_be_posted_again(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    with failing_inserts_of_sessions(runtime):
        failed = await client.post("/login", data=fields)
    again = await client.post("/login", data=fields)

    assert failed.status_code == 503, failed.text
    assert again.status_code == 303 and again.headers["location"].startswith(REDIRECT_URI)
    assert len(await _sessions(runtime)) == 1


async def _ended_by(how: str, runtime: Runtime, user: User, token: str) -> None:
    if how == "signed out":
        async with runtime.db.transaction() as session:
            assert await sessions.end(session, token, utcnow()) is not None
    elif how == "disabled":
        async with runtime.db.transaction() as session:
            await disable_user(session, SYSTEM, user.id, "left", utcnow())
    else:
        await change_password_elsewhere(runtime, user)


@pytest.mark.parametrize("how", ["signed out", "disabled", "password changed"])
async def test_a_code_posted_again_after_its_sign_in_ended_does_not_sign_in(
    client: httpx.AsyncClient, runtime: Runtime, how: str
) -> None:
    generator, _, page = await _at_the_code_step(client, runtime)
    fields = page | {"code": generator.now()}
    before = httpx.Cookies(client.cookies)
    first = await client.post("/login/second-factor", data=fields)
    assert first.status_code == 303, first.text
    (user,) = [s.user_id for s in await _sessions(runtime)]
    token = first.cookies["identity_session"]
    await _ended_by(how, runtime, await _user(runtime, user), token)

    client.cookies = before
    again = await client.post("/login/second-factor", data=fields)

    assert again.status_code == 400 and "has expired" in alert(again), again.text
    assert "identity_session" not in again.headers.get("set-cookie", "")


async def _user(runtime: Runtime, user_id: Any) -> User:
    async with runtime.db.transaction() as session:
        return await session.get_one(User, user_id)


async def test_the_last_of_three_posts_keeps_a_working_cookie(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    generator, _, page = await _at_the_code_step(client, runtime)
    fields = page | {"code": generator.now()}
    before = httpx.Cookies(client.cookies)
    await client.post("/login/second-factor", data=fields)
    # A triple click: the browser shows the third answer, though the server finished the
    # second after it (two processes, or one repeat polling a moment longer).
    client.cookies = httpx.Cookies(before)
    third = await client.post("/login/second-factor", data=fields)
    shown = httpx.Cookies(client.cookies)
    client.cookies = httpx.Cookies(before)
    second = await client.post("/login/second-factor", data=fields)
    assert third.status_code == second.status_code == 303

    client.cookies = shown
    assert (await client.get(SECURITY)).status_code == 200


async def test_a_password_post_again_from_the_same_browser_needs_the_right_password(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    before = httpx.Cookies(client.cookies)
    first = await client.post("/login", data=fields)
    assert first.status_code == 303, first.text

    # The same browser, flow and email within the window: the repeat's key, with a wrong
    # password (someone at the keyboard after the user left).
    client.cookies = before
    wrong = await client.post("/login", data=fields | {"password": "not " + PASSWORD})

    assert wrong.status_code == 400 and "has expired" in alert(wrong), wrong.text
    assert "identity_session" not in wrong.headers.get("set-cookie", "")


async def test_a_password_step_posted_twice_before_consent_signs_in_once(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    # An app that must ask for consent: the first post hands the flow on to the consent page,
    # under the same flow id, where the repeat must not find it free and sign in again.
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime, first_party=False)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}

    first, second = await posted_twice(client, "/login", fields)

    await _one_sign_in_at_consent(client, runtime, first, second)


async def test_the_same_post_landing_just_after_the_first_took_the_flow_waits_for_it(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    taken, release = asyncio.Event(), asyncio.Event()
    consume = runtime.store.consume

    async def held_after_taking(key: str) -> bytes | None:
        value = await consume(key)
        if value is not None and not taken.is_set():
            taken.set()  # the first post has the flow: hold it there
            await release.wait()
        return value

    monkeypatch.setattr(runtime.store, "consume", held_after_taking)
    cookies = httpx.Cookies(client.cookies)
    first = asyncio.create_task(client.post("/login", data=fields))
    await taken.wait()
    client.cookies = cookies
    second = asyncio.create_task(client.post("/login", data=fields))
    # The repeat finds the flow gone; it must wait for the first post, not answer "expired".
    done, _ = await asyncio.wait({second}, timeout=0.5)
    release.set()
    answers = [await first, await second]

    assert not done, second.result().text
    assert all(a.headers.get("location", "").startswith(REDIRECT_URI) for a in answers)
    assert len(await _sessions(runtime)) == 1


async def test_the_same_post_waits_for_a_first_post_that_never_answers_once_not_twice(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A first post marked under way that does not answer (held, or gone quiet after taking
    # the flow): the repeat waited ~5 s for its turn, then ~5 s again for the answer.
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    marked, release = asyncio.Event(), asyncio.Event()
    add, get = runtime.store.add, runtime.store.get
    looks = 0

    async def held_once_marked(key: str, value: bytes, ttl: int) -> bool:
        added = await add(key, value, ttl)
        if added and key.startswith("repeated-post:") and not marked.is_set():
            marked.set()
            await release.wait()
        return added

    async def counted(key: str) -> bytes | None:
        nonlocal looks
        value = await get(key)
        looks += key.startswith("repeated-post:") and value == b"-"
        return value

    # Polls of no length: the repeat's wait is told by how many times it looks, not by the clock.
    monkeypatch.setattr(repeated_posts, "_POLL_SECONDS", 0)
    monkeypatch.setattr(runtime.store, "add", held_once_marked)
    monkeypatch.setattr(runtime.store, "get", counted)
    cookies = httpx.Cookies(client.cookies)
    first = asyncio.create_task(client.post("/login", data=fields))
    await marked.wait()
    client.cookies = cookies
    again = await client.post("/login", data=fields)
    release.set()
    await first

    assert again.status_code == 400 and "has expired" in alert(again), again.text
    # One wait: a look before each of its polls, one as it ends, and one by the wait for the
    # answer, which finds nothing left to wait (twice as many polls, 200 looks, before).
    assert looks == repeated_posts._POLLS + 2, looks


async def test_a_code_step_posted_twice_before_consent_continues_the_first_sign_in(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    _, generator, _ = await enrolled_user(runtime, ANA)
    login = await _login_page(client, runtime, first_party=False)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    step = await client.post("/login", data=fields)
    page = form_fields((await client.get(step.headers["location"])).text)

    first, second = await posted_twice(
        client, "/login/second-factor", page | {"code": generator.now()}
    )

    await _one_sign_in_at_consent(client, runtime, first, second)


async def test_a_password_step_whose_flow_could_not_be_taken_can_be_posted_again(
    client: httpx.AsyncClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Marked "under way", then failing to take the flow: the mark stayed, and the same post
    # again waited 5 s for an answer that never came and was told to start again.
    await new_user(runtime, ANA)
    login = await _login_page(client, runtime)
    fields = form_fields(login.text) | {"email": ANA, "password": PASSWORD}
    consume = runtime.store.consume

    async def unreachable(key: str) -> bytes | None:
        raise StoreUnavailable("down")

    monkeypatch.setattr(runtime.store, "consume", unreachable)
    failed = await client.post("/login", data=fields)
    monkeypatch.setattr(runtime.store, "consume", consume)
    again = await asyncio.wait_for(client.post("/login", data=fields), timeout=3)

    assert failed.status_code == 503, failed.text
    assert again.status_code == 303 and again.headers["location"].startswith(REDIRECT_URI)
    assert len(await _sessions(runtime)) == 1
