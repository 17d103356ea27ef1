"""Shared by the password-reset, timing and second-factor tests: users and a real inbox."""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import delete, text, update

from identity.accounts import repository as accounts_repository
from identity.accounts import self_service
from identity.accounts.models import PasswordResetToken, User
from identity.accounts.passwords import Passwords
from identity.accounts.service import create_user, prepare_user
from identity.audit.service import Actor
from identity.clock import utcnow
from identity.crypto import digest
from identity.mail.models import OutgoingEmail
from identity.mfa.service import SecondFactor
from identity.recovery import repository as recovery_repository
from identity.runtime import Runtime
from identity.sessions import service as sessions
from identity.sessions.models import BrowserSession
from tests.integration.page_helpers import mail_to, other_session
from tests.smtp_server import Inbox

PASSWORD = "Kx7#mQ9!vB2$"
NEW_PASSWORD = "Qv6#tR2!wX9&"
_RESET_LINK = re.compile(
    r"http://testserver\.local/reset-password\?token=([A-Za-z0-9_%-]+)&ui_locales=(?:en|es)"
)


async def new_user(runtime: Runtime, email: str, **fields: Any) -> User:
    new = await prepare_user(runtime.passwords, email=email, password=PASSWORD)
    async with runtime.db.transaction() as session:
        user = await create_user(session, new)
        for name, value in fields.items():
            setattr(user, name, value)
    return user


async def stored_reset_token(runtime: Runtime, user: User) -> str:
    """A reset token of ``user``'s for their current password, stored as if mailed, that
    works for five minutes."""
    token = f"reset-{uuid.uuid4().hex}"
    now = utcnow()
    async with runtime.db.transaction() as session:
        password = await accounts_repository.stored_password(session, user.id)
        assert password is not None
        row = PasswordResetToken(
            user_id=user.id,
            token_hash=digest(token),
            created_at=now,
            expires_at=now + timedelta(minutes=5),
            password_set_at=password.set_at,
        )
        await recovery_repository.insert_token(session, row)
    return token


async def enrolled_user(
    runtime: Runtime, email: str = "ana@example.com"
) -> tuple[User, pyotp.TOTP, list[str]]:
    """A user with TOTP confirmed a few minutes ago, so that the current code is unspent;
    with the code generator and the recovery codes. They were told by email
    (``mail_since_enrolment``)."""
    user = await new_user(runtime, email)
    mfa = SecondFactor.from_runtime(runtime)
    async with runtime.db.transaction() as session:
        secret = (await mfa.begin_enrolment(session, user, utcnow())).secret
    generator = pyotp.TOTP(secret)
    earlier = utcnow() - timedelta(minutes=5)
    async with runtime.db.transaction() as session:
        codes = await mfa.confirm_enrolment(
            session, Actor(user.id), user.id, generator.at(earlier), earlier
        )
    return user, generator, codes


async def mail_since_enrolment(runtime: Runtime, address: str) -> list[OutgoingEmail]:
    """The emails queued for ``address`` after the one saying two-step verification was
    turned on."""
    turned_on, *since = await mail_to(runtime, address)
    assert turned_on.subject.startswith("Two-step verification was turned on")
    return since


async def change_password_elsewhere(
    runtime: Runtime, user: User, current: str = PASSWORD, new: str = NEW_PASSWORD
) -> None:
    """``user`` changes the password, proven by ``current``, in another browser: every
    session but that one ends and every refresh token is revoked. That browser's session
    is then deleted, so that the sessions a test counts are its own."""
    elsewhere = await other_session(runtime, user)
    async with runtime.db.transaction() as session:
        browser = await sessions.current(session, elsewhere, utcnow())
    assert browser is not None
    await change_password_from(runtime, user, browser.id, current, new)
    async with runtime.db.transaction() as session:
        await session.execute(delete(BrowserSession).where(BrowserSession.id == browser.id))


async def change_password_from(
    runtime: Runtime, user: User, browser_id: uuid.UUID, current: str, new: str
) -> str:
    """``user`` changes the password on the security page of the browser whose session is
    ``browser_id``; returns that browser's new session token."""
    return await self_service.change_password(
        runtime.db,
        runtime.passwords,
        runtime.limiter,
        runtime.settings,
        user,
        actor=Actor(user.id),
        current=current,
        new=new,
        confirm=new,
        keep_session_id=browser_id,
        locale="en",
        now=utcnow(),
    )


async def forgot(http: httpx.AsyncClient, email: str, **headers: str) -> httpx.Response:
    return await http.post("/api/v1/password/forgot", json={"email": email}, headers=headers)


async def reset(
    http: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD, confirm: str | None = None
) -> httpx.Response:
    body = {"token": token, "password": password, "password_confirm": confirm or password}
    return await http.post("/api/v1/password/reset", json=body)


async def mail(runtime: Runtime, inbox: Inbox, count: int) -> list[EmailMessage]:
    """The first ``count`` messages the SMTP server received, once they have all arrived.

    Background work (the reset look-up) runs first; then the test sends what is due itself
    rather than waiting for the dispatcher's next poll.
    """
    await runtime.background.drain()
    for _ in range(100):
        await runtime.mail.run_once()
        if len(inbox.messages) >= count:
            return inbox.messages[:count]
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {count} messages, got {len(inbox.messages)}")


def text_of(message: EmailMessage) -> str:
    return message.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def html_of(message: EmailMessage) -> str:
    return message.get_body(("html",)).get_content()  # type: ignore[union-attr]


def reset_token(message: EmailMessage) -> str:
    """The token of the link in the plain-text part; the HTML part must carry the same."""
    match = _RESET_LINK.search(text_of(message))
    assert match, text_of(message)
    assert f'href="{match.group(0).replace("&", "&amp;")}"' in html_of(message)
    return match.group(1)


async def until_waiting_or_done(
    runtime: Runtime, task: asyncio.Future[Any], table: str | None = "users", waiters: int = 1
) -> None:
    """Return once ``task`` has ended or, on PostgreSQL, ``waiters`` transactions wait for a
    lock on a row of this test's ``table`` (None: for an advisory lock). A writer waiting on
    SQLite does so in its busy handler, out of sight: there the task gets half a second
    (well within the busy timeout) to get as far as it can."""
    if runtime.db.engine.dialect.name == "sqlite":
        await asyncio.wait({task}, timeout=0.5)
        return
    waiting = text(
        "SELECT count(DISTINCT pid) FROM pg_locks JOIN pg_stat_activity USING (pid)"
        " WHERE wait_event_type = 'Lock' AND (relation = CAST(:table AS regclass)"
        " OR CAST(:table AS regclass) IS NULL AND locktype = 'advisory')"
    )
    for _ in range(500):
        if task.done():
            return
        async with runtime.db.transaction() as session:
            if await session.scalar(waiting, {"table": table}) >= waiters:
                return
        await asyncio.sleep(0.01)
    raise AssertionError("the task neither ended nor waits for a lock")


def links_expire_while_hashing(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reset link expires while argon2 hashes the new password, as one does when the
    hashing waits for a thread past the link's last moment."""
    real_hash = Passwords.hash

    async def hash_as_links_expire(self: Passwords, password: str) -> str:
        async with runtime.db.transaction() as session:
            await session.execute(update(PasswordResetToken).values(expires_at=utcnow()))
        return await real_hash(self, password)

    monkeypatch.setattr(Passwords, "hash", hash_as_links_expire)


def held_after(
    monkeypatch: pytest.MonkeyPatch, owner: object, name: str
) -> tuple[asyncio.Event, asyncio.Event]:
    """Once ``owner.name`` has run, its caller waits (its transaction stays open) until the
    second event is set; the first tells the test it got there."""
    real = getattr(owner, name)
    reached, go = asyncio.Event(), asyncio.Event()

    async def then_wait(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        reached.set()
        await go.wait()
        return result

    monkeypatch.setattr(owner, name, then_wait)
    return reached, go


def told_after(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> asyncio.Event:
    """Set once ``owner.name`` has run, its caller going on at once."""
    real = getattr(owner, name)
    done = asyncio.Event()

    async def then_tell(*args: Any, **kwargs: Any) -> Any:
        result = await real(*args, **kwargs)
        done.set()
        return result

    monkeypatch.setattr(owner, name, then_tell)
    return done
