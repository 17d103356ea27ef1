"""Browser sessions: establish at sign-in, look up per request, end at logout.

The cookie holds a random token; the database keeps only its SHA-256, so a leaked table
cannot be replayed as cookies. Every sign-in makes a new token and revokes the one the
browser brought (session fixation: a token planted before sign-in is worthless after it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from identity.crypto import digest, random_token
from identity.sessions import repository
from identity.sessions.models import BrowserSession
from identity.sessions.revocation import end_tokens
from identity.settings import SessionLifetime
from identity.tokens.codes import hand_over_redeemed
from identity.tokens.refresh import hand_over

# A use is recorded at most this often, so that page views do not each write: a session
# may end up to this much before its idle time is over.
SEEN_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Established:
    token: str
    session: BrowserSession


async def establish(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    amr: list[str],
    now: datetime,
    lifetime: SessionLifetime,
    previous_token: str | None,
    ip: str | None,
    user_agent: str | None,
) -> Established:
    replaced = (
        await repository.revoke(session, digest(previous_token), now) if previous_token else None
    )
    if replaced is not None and replaced.user_id != user_id:
        # Another person signing in in this browser (a shared computer) signs the first one
        # out, as /logout would: nothing of theirs carries over, and what their apps got
        # through that sign-in ends with it. An expired one was over already (see below).
        if replaced.expires_at > now:
            await end_tokens(session, replaced.user_id, now, through=replaced.id)
        replaced = None
    # Signing in again before the session expired continues it, and the ID tokens issued
    # through it still name it; after it expired, the sign-in starts a new one.
    continued = replaced if replaced is not None and replaced.expires_at > now else None
    # A new sign-in gets a fresh sid, and so does one continuing a session begun before
    # sessions had one (migration 0010).
    sid = (continued.sid if continued else None) or uuid.uuid4()
    token = random_token()
    browser_session = BrowserSession(
        id=uuid.uuid4(),
        token_hash=digest(token),
        user_id=user_id,
        sid=sid,
        amr=amr,
        auth_time=now,
        created_at=now,
        last_seen_at=now,
        expires_at=lifetime.expiry(now, now),
        ip=ip[:45] if ip else None,
        user_agent=user_agent[:300] if user_agent else None,
        revoked_at=None,
    )
    await repository.add(session, browser_session)
    if continued is not None:
        # The same person signing in again in this browser (prompt=login, max_age): what apps
        # got through the replaced session is still this browser's sign-in, and ``end``
        # must find it under the new one. An expired session is over: its tokens stay its
        # own, living on to their own expiry as those of any expired sign-in do.
        await hand_over(session, user_id, continued.id, browser_session.id, sid)
        await hand_over_redeemed(session, user_id, continued.id, browser_session.id)
    return Established(token, browser_session)


async def new_token(session: AsyncSession, session_id: uuid.UUID) -> str:
    """A fresh token for a session the caller holds live (``repository.lock_user_signed_in``),
    the one it had no longer valid: after a password change, whoever copied this browser's
    cookie is signed out too."""
    token = random_token()
    await repository.replace_token(session, session_id, digest(token))
    return token


async def current(session: AsyncSession, token: str | None, now: datetime) -> BrowserSession | None:
    """The browser's live session. Only read: its use is ``record_use``'s to record."""
    if not token:
        return None
    return await repository.find_live(session, digest(token), now)


def use_to_record(found: BrowserSession, now: datetime) -> bool:
    """Whether a use of ``found`` at ``now`` is to be recorded (see ``SEEN_EVERY``)."""
    return now - found.last_seen_at >= SEEN_EVERY


async def record_use(
    session: AsyncSession,
    session_id: uuid.UUID,
    created_at: datetime,
    now: datetime,
    lifetime: SessionLifetime,
) -> None:
    """Record a use of a session at ``now``: its idle expiry moves on, within its lifetime.

    In a transaction of its own, the only row it holds: a request that also ends the
    user's other sessions would otherwise hold its own session's row while it waits for
    theirs, and deadlock with another browser doing the same (``revoke_other_sessions``).
    """
    await repository.seen(session, session_id, now, lifetime.expiry(created_at, now))


async def end(session: AsyncSession, token: str | None, now: datetime) -> uuid.UUID | None:
    """End the browser's session and the refresh and access tokens apps were issued through
    it; returns the id of the session ended, if there was one.

    A sign-out ends what the sign-in gave, as Keycloak ends a session's refresh tokens with it
    (and calls its access tokens inactive at introspection) and node-oidc-provider revokes
    the session's grants: an app the user signed out of gets no new tokens, and services
    that introspect stop accepting the ones it holds. A code redemption under way holds the
    session's row (``repository.hold_signed_in``), so the update above waits for it and this
    then finds the tokens it issued.
    """
    if not token:
        return None
    ended = await repository.revoke(session, digest(token), now)
    if ended is None:
        return None
    await end_tokens(session, ended.user_id, now, through=ended.id)
    return ended.id
