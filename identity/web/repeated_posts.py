"""A sign-in step's form posted twice (a double click, a reload that resubmits): the second
post answers as the first did, rather than with "invalid code" or "sign-in expired".

The browser shows only the last answer, so the first one's redirect (back to the app, with
the app's code) and, for the password and code forms, its session cookie never reach it.
The first post leaves what it handed on in the shared store for a few seconds, under a key
only the same post again can name: an HMAC of the browser's CSRF seed (an HttpOnly cookie),
the flow and what was posted (the email, the code, the account; with the session cookie
for the steps after sign-in; not the consent decision, as a consent's first answer is the
one), so nothing typed is kept in clear and no other browser, flow or answer finds it. A
password is not in the key: the repeat proves it again.

The repeat resumes the flow from where the first post left it. After a sign-in it gets the
first post's session and token, kept sealed in the record (the database holds only the
token's digest): one session, the one the security page lists, and one cookie, whichever
of three posts the server finishes last (a fresh token per repeat would leave every
answer's cookie but the last finished dead, the one the browser shows among them). After a
password step that went on to the code step, it gets the same code page. A step
after sign-in (consent, the account picker) is answered once: the repeat gets the first
post's redirect, so one answer gives the app one code; once the app has redeemed that code
the repeat gets a page saying the request was answered, as presenting it again would be a
code reuse, which revokes what the app was given.

Like ``identity.recovery.spent_links`` for emailed links, but shorter-lived and sealed, as
the record holds the authorization request and a session token, and the key stands for a
typed secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar import Request

from identity.crypto import DecryptionFailed, Encryptor
from identity.oauth.interaction import Flow
from identity.runtime import Runtime
from identity.sessions.models import BrowserSession
from identity.web import browser_session, cookies

# As long as the Users page's invitation repeat: a double click or a quick reload, no more.
WINDOW_SECONDS = 10
# A repeat waits up to 5 seconds in all for a first post still under way to answer.
_POLL_SECONDS = 0.05
_POLLS = 100
_PREFIX = "repeated-post:"
# Left by a first post whose answer is not known yet; sealed answers never look like it.
_UNDER_WAY = b"-"
# Beside a key, once a post of it refused by a throttle has been checked all the same.
_BEYOND_LIMIT = ":beyond-limit"
# Beside a key, while a post of it that a throttle admitted at its last attempt has its
# password checked.
_CHECKING = ":checking"


def key_of(request: Request[Any, Any, Any], runtime: Runtime, step: str, *typed: str) -> str | None:
    """The key of this post of ``step`` (its flow, what was typed) from this browser; None
    for a browser without a CSRF seed, whose posts are refused anyway."""
    seed = cookies.read(request.cookies, runtime.settings, cookies.CSRF)
    if not seed:
        return None
    message = "\0".join((step, seed, *typed)).encode("utf-8", "surrogatepass")
    return _PREFIX + hmac.new(runtime.secret_key.encode(), message, hashlib.sha256).hexdigest()


def _sealer(runtime: Runtime) -> Encryptor:
    return Encryptor(runtime.secret_key, "repeated-post")


async def under_way(runtime: Runtime, key: str) -> bool:
    """The post of ``key`` is under way (being checked, or handing the flow over): a repeat
    waits. False when the same post was marked first: this one is its repeat."""
    return await runtime.store.add(key, _UNDER_WAY, WINDOW_SECONDS)


class Wait:
    """How long one post may still wait for the first post of its key: a few seconds in all,
    however many times it waits (for its turn, then for the answer), so a first post that
    never answers holds it once, not once per wait."""

    def __init__(self) -> None:
        self._polls_left = _POLLS

    async def a_moment(self) -> bool:
        """Wait one poll; False, at once, when the wait is over."""
        # Polled: the first post may run in another process, and the store has no wake-up.
        if not self._polls_left:
            return False
        self._polls_left -= 1
        await asyncio.sleep(_POLL_SECONDS)
        return True


async def take_turn(runtime: Runtime, key: str, wait: Wait) -> bool:
    """Mark the post of ``key`` under way once no other post of ``key`` is: True for the post
    to make (the first, or one after a first that handed nothing over and withdrew); False
    for a repeat of a post that has answered, or has not by the end of ``wait``."""
    while not await under_way(runtime, key):
        if await runtime.store.get(key) not in (_UNDER_WAY, None):
            return False  # answered
        if not await wait.a_moment():
            return False
    return True


@asynccontextmanager
async def checking(runtime: Runtime, key: str | None) -> AsyncIterator[None]:
    """Around what a post of ``key`` the throttle admitted at its last attempt does once
    admitted: a copy the throttle refuses meanwhile (a double click lands while argon2
    checks the first post's password, before a right one marks the post under way) waits
    for it to be marked or to end (``check_beyond_limit``). None for a post with attempts
    left: nothing is noted, as no copy of it is refused."""
    if key is None:
        yield
        return
    await runtime.store.set(key + _CHECKING, b"", WINDOW_SECONDS)
    try:
        yield
    finally:
        await runtime.store.delete(key + _CHECKING)


async def check_beyond_limit(runtime: Runtime, key: str | None, wait: Wait) -> bool:
    """Whether a post of ``key`` that the throttle refused is checked all the same, as the
    same post again whose first copy spent the last attempt: only once a post of ``key`` is
    under way or has answered (a sign-in step marks only a post that proved right), waited
    for while an admitted one is being ``checking``, and for one refused post of ``key``, so
    a right post buys at most one check beyond the limit however many copies follow it.

    The wait comes before this post's own password is checked, and lasts as long whatever
    it is: how long the refusal takes tells nothing of the password it refuses."""
    if key is None:
        return False
    # Read in this order: a first post marks its key before it stops checking.
    while await runtime.store.get(key + _CHECKING) is not None:
        if await runtime.store.get(key) is not None or not await wait.a_moment():
            break
    if await runtime.store.get(key) is None:
        return False
    return await runtime.store.add(key + _BEYOND_LIMIT, b"", WINDOW_SECONDS)


async def withdraw(runtime: Runtime, key: str) -> None:
    """The post of ``key`` handed nothing over after all: a repeat is answered as usual."""
    await runtime.store.delete(key)


async def answered(
    runtime: Runtime,
    key: str,
    flow: Flow,
    session_token: str | None = None,
    location: str | None = None,
) -> None:
    """Keep what the post of ``key`` handed on: the flow as it took it and, for a sign-in,
    the token of the session it opened; for a step after sign-in, where it sent the browser."""
    record = {"flow_id": flow.id, "flow": flow.dumps().decode()}
    if session_token is not None:
        record["session_token"] = session_token
    if location is not None:
        record["location"] = location
    sealed = _sealer(runtime).encrypt(json.dumps(record))
    await runtime.store.set(key, sealed.encode(), WINDOW_SECONDS)


async def recorded(runtime: Runtime, key: str | None) -> bool:
    """Whether a post of ``key`` has handed its flow over in the last few seconds."""
    return key is not None and await runtime.store.get(key) is not None


async def _settled(runtime: Runtime, key: str, wait: Wait) -> bytes | None:
    """What ``key`` keeps, once the first post has answered (None if it gave up, or has not
    answered by the end of ``wait``)."""
    while (raw := await runtime.store.get(key)) == _UNDER_WAY:
        if not await wait.a_moment():
            return None
    return raw


@dataclass(frozen=True, slots=True)
class FirstPost:
    """What a repeated post resumes: the flow as the first post took it and, for a sign-in,
    the first post's session and its token; for a step after sign-in, its redirect."""

    flow: Flow
    session_token: str | None = None
    browser: BrowserSession | None = None
    location: str | None = None


async def first_post(runtime: Runtime, key: str | None, wait: Wait) -> FirstPost | None:
    """For a repeat of the post of ``key``, what the first one handed on, waited for as long
    as ``wait`` has left; None when this is no repeat (or the session the first post opened
    has ended since)."""
    raw = await _settled(runtime, key, wait) if key else None
    if raw is None:
        return None
    try:
        record = json.loads(_sealer(runtime).decrypt(raw.decode()))
    except DecryptionFailed:
        return None  # left before IDENTITY_SECRET_KEY changed
    flow = Flow.loads(record["flow_id"], record["flow"].encode())
    token = record.get("session_token")
    if token is None:
        return FirstPost(flow, location=record.get("location"))
    async with runtime.db.transaction() as session:
        browser = await browser_session.live(session, runtime, token)
    return FirstPost(flow, token, browser) if browser is not None else None
