"""The background poster: takes due deliveries, posts them signed, retries with backoff."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from datetime import datetime, timedelta
from typing import NamedTuple

import httpx

from identity.clock import utcnow
from identity.crypto import DecryptionFailed, Encryptor
from identity.db.engine import Database
from identity.metrics import WEBHOOK_DELIVERIES
from identity.polling import BatchWorker
from identity.resource.webhooks import SIGNATURE_HEADER, signature_header
from identity.webhooks import repository
from identity.webhooks.egress import Resolver, resolve
from identity.webhooks.repository import Leased
from identity.webhooks.service import refusal
from identity.webhooks.transport import VettedTransport

log = logging.getLogger(__name__)

# Attempt n+1 waits FIRST_RETRY * 2**(n-1), capped at LONGEST_WAIT: 30 s, 1 min, 2 min ... 4 h.
# MAX_ATTEMPTS spans about a day, so a consumer that is down for hours still gets every event.
FIRST_RETRY = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=4)
MAX_ATTEMPTS = 15
# A consumer gets this long to answer; it must not hold a lease (or our sockets) for long.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# httpx's timeouts are per network operation: a consumer sending its answer a byte at a
# time never trips them. The whole exchange gets this long, well inside LEASE, so a batch
# (whose deliveries run together) waits at most this for its slowest consumer.
MAX_ATTEMPT_SECONDS = 30
LEASE = timedelta(minutes=2)
# A silent consumer's other deliveries wait at most this long (see _back_off): each delivery
# tried keeps its own backoff, but one bad minute of old deliveries near their last attempt
# (retried 4 h on) must not hold its new events for hours. A consumer that stays down costs
# one batch's share of timeouts this often.
LONGEST_DEFERRAL = timedelta(minutes=2)
BATCH = 20


def retry_delay(attempts: int) -> timedelta | None:
    """The wait after failed attempt number ``attempts`` (1-based); None: give up."""
    if attempts >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY * 2 ** (attempts - 1), LONGEST_WAIT)


class DeliveryFailed(Exception):
    """The consumer did not take the delivery; it is tried again later."""


class DeliveryRefused(DeliveryFailed):
    """Given up at once, since a retry could only end the same way: we will not post to the
    subscription's URL (the URL and the rules it breaks stay the same at every attempt), or
    the consumer answered 410 Gone, which says the URL will not take events any more."""


class NoAnswer(DeliveryFailed):
    """The consumer gave no answer at all: it could not be reached, or stayed silent past a
    deadline. That is a matter of its endpoint, not of this event, so its other deliveries
    wait with this one rather than each making a batch wait out the same timeout."""


class Backoff(NamedTuple):
    """An attempt its consumer gave no answer to: nothing more for the subscription until
    this attempt's retry."""

    subscription_id: uuid.UUID
    until: datetime


class WebhookDispatcher(BatchWorker):
    name = "webhook-dispatcher"
    batch_size = BATCH

    def __init__(
        self,
        db: Database,
        encryptor: Encryptor,
        *,
        allow_http_loopback: bool,
        poll_seconds: float = 2.0,
        user_agent: str = "identity-webhooks",
        resolver: Resolver = resolve,
    ) -> None:
        super().__init__(poll_seconds)
        self._db = db
        self._encryptor = encryptor
        self._allow_http_loopback = allow_http_loopback
        self._resolver = resolver
        self._headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        self._tls: ssl.SSLContext | None = None

    async def run_batch(self) -> tuple[int, int]:
        """Post a batch of what is due now, concurrently: how many consumers accepted theirs,
        and how many deliveries were taken."""
        async with self._db.transaction() as session:
            ids = await repository.due(session, utcnow(), self.batch_size)
        if not ids:
            return 0, 0
        # Redirects are not followed: an https URL must not bounce us to an internal one. The
        # transport connects only to vetted addresses and takes no proxy from the environment.
        transport = VettedTransport(
            allow_loopback=self._allow_http_loopback,
            ssl_context=await self._trusted_authorities(),
            resolver=self._resolver,
        )
        async with httpx.AsyncClient(
            transport=transport, timeout=TIMEOUT, follow_redirects=False, trust_env=False
        ) as http:
            results = await asyncio.gather(
                *(self._attempt(http, i) for i in ids), return_exceptions=True
            )
        await self._back_off([result for result in results if isinstance(result, Backoff)])
        # Raised only once every attempt has ended, so none is cut off with the client; a
        # delivery whose attempt broke keeps its lease and is retried when the lease runs out.
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return sum(result is True for result in results), len(ids)

    async def _trusted_authorities(self) -> ssl.SSLContext:
        """One TLS context for every batch, made on a thread: loading the trusted
        certificate authorities takes ~25 ms of CPU, which on the event loop for each batch
        held up every request in flight."""
        if self._tls is None:
            self._tls = await asyncio.to_thread(httpx.create_ssl_context)
        return self._tls

    async def _back_off(self, backoffs: list[Backoff]) -> None:
        """Defer the rest of each silent consumer's deliveries to the latest retry its
        attempts got, LONGEST_DEFERRAL at most: the next batches go to the others instead of
        waiting out its timeouts again. Once per subscription and batch, in one transaction,
        rather than as each attempt fails: deferrals of one subscription running together
        would lock its rows against each other."""
        until: dict[uuid.UUID, datetime] = {}
        for subscription_id, retry_at in backoffs:
            until[subscription_id] = max(retry_at, until.get(subscription_id, retry_at))
        if not until:
            return
        async with self._db.transaction() as session:
            now = utcnow()
            for subscription_id, retry_at in sorted(until.items()):
                latest = min(retry_at, now + LONGEST_DEFERRAL)
                await repository.defer(session, subscription_id, latest, now)

    async def _attempt(self, http: httpx.AsyncClient, delivery_id: uuid.UUID) -> bool | Backoff:
        """Whether the consumer took it, or a Backoff when it gave no answer."""
        async with self._db.transaction() as session:
            leased = await repository.lease(session, delivery_id, utcnow(), LEASE)
        if leased is None:
            return False  # another process took it
        try:
            await self._post(http, leased)
        except DeliveryFailed as exc:
            delay = None if isinstance(exc, DeliveryRefused) else retry_delay(leased.attempts)
            log.warning(
                "webhook not delivered",
                extra={
                    "event_id": str(leased.event_id),
                    "delivery_id": str(leased.delivery_id),
                    "attempt": leased.attempts,
                    "error": str(exc),
                    "gave_up": delay is None,
                },
            )
            now = utcnow()
            retry_at = None if delay is None else now + delay
            async with self._db.transaction() as session:
                await repository.mark_failed_attempt(
                    session, leased.delivery_id, leased.attempts, str(exc), retry_at, now
                )
            WEBHOOK_DELIVERIES.labels("gave_up" if delay is None else "failed").inc()
            if isinstance(exc, NoAnswer) and retry_at is not None:
                return Backoff(leased.subscription_id, retry_at)
            return False
        async with self._db.transaction() as session:
            await repository.mark_delivered(session, leased.delivery_id, utcnow())
        WEBHOOK_DELIVERIES.labels("delivered").inc()
        return True

    async def _post(self, http: httpx.AsyncClient, leased: Leased) -> None:
        # Checked again at each attempt: the setting may have been turned off since, or the
        # URL stored before a rule was added.
        problem = refusal(leased.url, self._allow_http_loopback)
        if problem:
            raise DeliveryRefused(problem)
        try:
            secret = self._encryptor.decrypt(leased.secret_ciphertext)
        except DecryptionFailed as exc:
            raise DeliveryFailed(str(exc)) from None
        body = leased.body.encode()
        signature = signature_header([secret], int(time.time()), body)
        headers = self._headers | {SIGNATURE_HEADER: signature}
        try:
            async with (
                asyncio.timeout(MAX_ATTEMPT_SECONDS),
                # Streamed, and closed unread: the status is the consumer's whole answer, and
                # a body without end would otherwise be read into memory.
                http.stream("POST", leased.url, content=body, headers=headers) as response,
            ):
                status = response.status_code
        except TimeoutError:
            raise NoAnswer(f"No answer within {MAX_ATTEMPT_SECONDS} s") from None
        except httpx.HTTPError as exc:
            # A host name refused for what it resolves to (egress.EgressRefused) is retried
            # like any connection error, unlike a URL refused above: the URL cannot change,
            # but DNS can, and the name is the consumer's to fix (a record mid-move, a
            # resolver's answer for the wrong network), as it is when the name does not
            # resolve at all. Retrying costs no safety: every attempt is vetted again and
            # none connects to an internal address.
            raise NoAnswer(f"{type(exc).__name__}: {exc}") from exc
        if status == httpx.codes.GONE:
            raise DeliveryRefused("HTTP 410: the consumer says this URL is gone")
        if not httpx.codes.is_success(status):
            raise DeliveryFailed(f"HTTP {status}")
