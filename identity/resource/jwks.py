"""The issuer's signing keys, cached, following rotation without a restart.

Keys are refetched when the cached set expires (the JWKS response's ``Cache-Control: max-age``
within bounds) and when a token names a ``kid`` the cache does not hold, which is how a new key
after ``identity keys rotate`` is learnt. Any fetch happens at most once per
``min_fetch_interval`` whatever the cause: a flood of tokens with made-up ``kid`` values
costs the issuer one request per interval, not one per token. Callers lacking a key they may
trust (none held, or one held too long, below) wait for the fetch under way rather than being
refused while it arrives. While the issuer cannot be
reached, the keys held stay trusted for ``max_stale`` seconds past their expiry, then none
is: a key the issuer has retired stops verifying within a known time even for a service cut
off from it.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from joserfc.jwk import Key, import_key

from identity.resource.errors import IssuerUnavailable
from identity.resource.fetch import fetch_json

logger = logging.getLogger(__name__)

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)
_NO_CACHE = re.compile(r"(?:^|,)\s*(?:no-cache|no-store)\s*(?:,|$)", re.IGNORECASE)


def cache_lifetime(
    cache_control: str | None, *, default: float, bounds: tuple[float, float]
) -> float:
    """Seconds to keep a JWKS: its ``max-age``, or ``default``, clamped to ``bounds``.

    The lower bound stops ``no-cache`` or ``max-age=0`` from turning every request into a
    fetch; the upper one makes retired keys drop out within a known time.
    """
    low, high = bounds
    if cache_control is None:
        seconds = default
    elif _NO_CACHE.search(cache_control):
        seconds = low
    elif match := _MAX_AGE.search(cache_control):
        seconds = float(match.group(1))
    else:
        seconds = default
    return min(max(seconds, low), high)


def signing_keys(document: dict[str, Any]) -> dict[str, Key]:
    """The usable signature keys of a JWKS by ``kid``.

    RFC 7517 §5: members that cannot be understood are ignored, not fatal, so one odd key does
    not take every other key down. Keys without a ``kid`` are skipped: our tokens always name one.
    """
    members = document.get("keys")
    if not isinstance(members, list):
        raise IssuerUnavailable("the JWKS has no keys array")
    keys: dict[str, Key] = {}
    for member in members:
        if not isinstance(member, dict):
            continue
        kid = member.get("kid")
        if not isinstance(kid, str) or member.get("use", "sig") != "sig":
            continue
        if member.get("kty") not in ("RSA", "EC"):
            continue
        try:
            keys[kid] = import_key(member)
        # Not only JoseError: joserfc reads a member as it comes and fails as the lookup
        # that failed does (an unknown ``crv`` is a KeyError). Whatever it raises, it is
        # this one key that is unusable, not the set.
        except Exception:
            logger.warning("ignoring JWKS key %r: it does not import", kid)
    return keys


class JWKSCache:
    """Signing keys by ``kid`` from the JWKS at the URI ``locate()`` returns."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        locate: Callable[[], Awaitable[str]],
        *,
        min_fetch_interval: float = 10.0,
        default_max_age: float = 300.0,
        max_age_bounds: tuple[float, float] = (60.0, 3600.0),
        max_stale: float = 86400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._locate = locate
        self._min_fetch_interval = min_fetch_interval
        self._default_max_age = default_max_age
        self._max_age_bounds = max_age_bounds
        self._max_stale = max_stale
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._expires_at: float | None = None
        self._attempted_at: float | None = None
        # Why the first fetch failed, for callers refused until one succeeds.
        self._failure: str | None = None
        # The latest fetch, kept until done: a task nothing references may be collected.
        self._fetching: asyncio.Task[None] | None = None
        self._closed = False

    async def key(self, kid: str) -> Key | None:
        """The key named ``kid``, or ``None`` when the issuer does not publish it.

        Raises :class:`IssuerUnavailable` when no JWKS has been fetched yet, or none for
        ``max_stale`` seconds past the last one's expiry, or once the cache is closed.
        """
        self._refuse_if_closed()
        started = self._wants_fetch(kid)
        if started:
            # No await since the check: one fetch, however many callers ask at once.
            self._attempted_at = self._clock()
            self._fetching = asyncio.create_task(self._fetch(self._attempted_at))
        fetching = self._fetching
        if fetching is not None and not fetching.done() and (started or not self._trusted(kid)):
            # Whoever lacks a key it may trust, none held or one held for too long, waits for
            # the fetch under way, which may bring it: else the tokens arriving with the first
            # ones after a start (503), a rotation (401) or a long outage (503) were refused
            # while it was on its way, and the one that started it was not. A caller given up
            # (its request timed out, its client left) cancels its wait, not the fetch others
            # wait for; only aclose() cancels that, and its waiters are then told so.
            await asyncio.wait((fetching,))
            self._refuse_if_closed()
            fetching.result()  # a failure the fetch did not expect reaches its waiters
        if self._expires_at is None:
            raise IssuerUnavailable(self._failure or "the issuer's JWKS has not been fetched yet")
        if self._too_stale(self._expires_at):
            raise IssuerUnavailable("the issuer's JWKS could not be refreshed for too long")
        return self._keys.get(kid)

    def _trusted(self, kid: str) -> bool:
        return (
            kid in self._keys
            and self._expires_at is not None
            and not self._too_stale(self._expires_at)
        )

    def _too_stale(self, expires_at: float) -> bool:
        """Past ``max_stale`` after expiry: a key the issuer may have retired since."""
        return self._clock() - expires_at > self._max_stale

    async def aclose(self) -> None:
        """Stop the fetch under way and refuse every call from now on.

        Left running, a fetch outlived the service shutting down (cut short at exit as a task
        destroyed while pending), and the requests waiting on it waited out its deadline.
        """
        self._closed = True
        fetching = self._fetching
        if fetching is not None and not fetching.done():
            fetching.cancel()
            await asyncio.wait((fetching,))

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise IssuerUnavailable("the resource server is closed")

    def _wants_fetch(self, kid: str) -> bool:
        now = self._clock()
        needed = self._expires_at is None or now >= self._expires_at or kid not in self._keys
        allowed = self._attempted_at is None or now - self._attempted_at >= self._min_fetch_interval
        return needed and allowed

    async def _fetch(self, started_at: float) -> None:
        try:
            fetched = await fetch_json(self._http, await self._locate())
            keys = signing_keys(fetched.document)
        except IssuerUnavailable as exc:
            if self._expires_at is None:
                # Every token is refused 503 until a fetch succeeds; callers only see "try
                # again later", so the reason goes where the operator looks.
                logger.warning("JWKS fetch failed; no keys to verify tokens with", exc_info=True)
                self._failure = str(exc)
                return
            # Keys we already hold stay good while the issuer is away (up to max_stale): an
            # outage of the issuer should not take every resource server down with it.
            logger.warning("JWKS refresh failed; keeping the keys fetched before", exc_info=True)
            return
        self._keys = keys
        self._expires_at = started_at + cache_lifetime(
            fetched.cache_control, default=self._default_max_age, bounds=self._max_age_bounds
        )
