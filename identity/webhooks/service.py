"""Subscriptions: a consuming service's URL, the events it wants, and its signing secret."""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audit.service import Actor, record_as
from identity.crypto import Encryptor, random_token
from identity.db.paging import Page
from identity.display_names import display_name
from identity.errors import Conflict, NotFound
from identity.permissions.catalogue import invalid_field
from identity.uris import BAD_PORT, has_unusable_port
from identity.webhooks import addresses, repository
from identity.webhooks.events import EVENT_TYPES
from identity.webhooks.models import WebhookSubscription
from identity.webhooks.repository import DeliveryView, State

SECRET_PREFIX = "whsec_"  # noqa: S105 - a marker on generated secrets
MAX_URL = 2000
MAX_DESCRIPTION = 200
INVALID = "The URL is not a valid URL."
# A host name as DNS has it (RFC 1123 §2.1): labels of letters, digits and hyphens (and the
# underscore some services' names carry), 63 characters each, 253 in all.
_DNS_NAME = re.compile(
    r"(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
    r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?"
)


@dataclass(frozen=True, slots=True)
class Created:
    subscription: WebhookSubscription
    # Shown once, in the answer to the request that made it; only its ciphertext is kept.
    secret: str


def refusal(url: str, allow_http_loopback: bool) -> str | None:
    """Why we will not post to ``url``, or None when we will.

    The rule keeps staff (or a stolen staff token) from aiming our server at internal
    services: https only, and never to an IP address on a private, loopback, link-local (cloud
    metadata), reserved or multicast network, in any spelling a resolver reads (``127.1``,
    ``2130706433``) or embedded in an IPv6 address (NAT64, 6to4, Teredo). Plain http is allowed
    to loopback alone, and only when IDENTITY_WEBHOOKS_ALLOW_HTTP_LOOPBACK is on (development
    and tests). Host names are not resolved here, since DNS can change after the check: the
    dispatcher resolves and vets them at each connection (identity.webhooks.egress).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return INVALID
    if has_unusable_port(parts):
        return f"The URL {BAD_PORT}."
    if not host or parts.username or parts.password or parts.fragment:
        return "The URL needs a host, and no credentials or fragment."
    problem = _host_refusal(parts.scheme, host, allow_http_loopback)
    if problem:
        return problem
    try:
        # The client that posts it is stricter than urlsplit (IDNA hosts, control characters):
        # a request it cannot build could never be delivered. Nor does it always read the same
        # host: IDNA maps other full stops to "." (127。0。0。1 is 127.0.0.1), so the host it
        # connects to is judged too.
        sent = httpx.Request("POST", url).url.raw_host.decode("ascii")
    except (ValueError, httpx.InvalidURL):
        return INVALID
    if not (_DNS_NAME.fullmatch(sent) or _is_address(sent)):
        # The client sends a space or "%" percent-encoded where no DNS name has one.
        return "The URL's host is not a valid host name or IP address."
    return _host_refusal(parts.scheme, sent, allow_http_loopback)


def _is_address(host: str) -> bool:
    try:
        address = addresses.parse(host)
    except ValueError:
        return False
    # A zone ("%25eth0") picks an interface of this machine rather than naming the consumer's
    # host; browsers refuse it (WHATWG URL), and spelled as URLs spell it no resolver reads it.
    return not (isinstance(address, ipaddress.IPv6Address) and address.scope_id)


def _host_address(host: str) -> addresses.Address | None:
    """The address a URL's ``host`` names, if it names one.

    A trailing dot counts as absent: the WHATWG URL standard (browsers, and clients built on
    it) reads ``127.0.0.1.`` or ``0x7f.1.`` as the IPv4 address before the dot, though the
    system resolver looks it up as a name (no public one can exist: no top-level domain is
    all digits), so a URL refused without the dot is refused with it.
    """
    for spelling in (host, host.removesuffix(".")):
        try:
            return addresses.parse(spelling)
        except ValueError:
            continue
    return None


def _host_refusal(scheme: str, host: str, allow_http_loopback: bool) -> str | None:
    address = _host_address(host)
    loopback = _is_loopback_name(host) or (address is not None and address.is_loopback)
    if scheme == "http" and loopback and allow_http_loopback:
        return None
    if scheme != "https":
        return "The URL must use https."
    if loopback or (address is not None and addresses.is_internal(address)):
        return "The URL must not point at a private, loopback or link-local address."
    return None


def _is_loopback_name(host: str) -> bool:
    # RFC 6761 §6.3: every name under .localhost is loopback, and a trailing dot (the
    # fully-qualified spelling) names the same host.
    name = host.lower().removesuffix(".")
    return name == "localhost" or name.endswith(".localhost")


def check_url(url: str, allow_http_loopback: bool) -> str:
    url = url.strip()
    # Counted in UTF-8 bytes (a non-ASCII path's are 2 to 4 a character), the unit the
    # column's limit is in on some databases. No index holds the URL itself: one subscription
    # per URL is kept by its digest (url_key), whatever the limit.
    too_long = len(url.encode(errors="surrogatepass")) > MAX_URL
    problem = "The URL is too long." if too_long else refusal(url, allow_http_loopback)
    if problem:
        raise invalid_field("url", problem)
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    known = ", ".join(sorted(EVENT_TYPES))
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown:
        raise invalid_field("event_types", f"Unknown: {', '.join(unknown)}. Known: {known}.")
    if not event_types:
        raise invalid_field("event_types", f"Name at least one of: {known}.")
    return sorted(set(event_types))


async def create_subscription(
    session: AsyncSession,
    actor: Actor,
    encryptor: Encryptor,
    *,
    url: str,
    event_types: Sequence[str],
    description: str,
    allow_http_loopback: bool,
    now: datetime,
) -> Created:
    # Shown to staff in the API and the audit log: a line break or direction override there
    # would misread as the next line or the reverse.
    description = display_name(
        description, MAX_DESCRIPTION, required=False, field="description", what="description"
    )
    secret = SECRET_PREFIX + random_token(32)
    subscription = WebhookSubscription(
        url=check_url(url, allow_http_loopback),
        event_types=check_event_types(event_types),
        secret_ciphertext=encryptor.encrypt(secret),
        description=description,
        created_at=now,
    )
    try:
        await repository.insert_subscription(session, subscription)
    except repository.UrlTaken as taken:
        raise _subscribed_already(taken.existing) from None
    await record_as(
        session,
        actor,
        "webhook.subscribed",
        account_id=None,
        target=("webhook", subscription.id),
        new={"url": subscription.url, "event_types": subscription.event_types},
    )
    return Created(subscription, secret)


def _subscribed_already(existing: uuid.UUID | None) -> Conflict:
    """The refusal of a second subscription to one URL, which would post every event there
    twice (a POST retried after a timeout makes one): naming the first, to read or delete.
    Not answered with the first instead, as a 201: its secret was shown once, when made."""
    message = "This URL is subscribed already: delete that subscription to subscribe it anew."
    named = {"subscription_id": str(existing)} if existing else {}
    return Conflict(message, errors=[{"field": "url", "message": message}], **named)


async def list_subscriptions(
    session: AsyncSession, page: Page | None = None
) -> Sequence[WebhookSubscription]:
    return await repository.list_subscriptions(session, page)


async def get_subscription(
    session: AsyncSession, subscription_id: uuid.UUID
) -> WebhookSubscription:
    found = await repository.get_subscription(session, subscription_id)
    if found is None:
        raise NotFound("No such webhook subscription.")
    return found


async def delete_subscription(
    session: AsyncSession, actor: Actor, subscription_id: uuid.UUID
) -> None:
    deleted = await repository.delete_subscription(session, subscription_id)
    if deleted is None:
        raise NotFound("No such webhook subscription.")
    url, event_types = deleted
    await record_as(
        session,
        actor,
        "webhook.unsubscribed",
        account_id=None,
        target=("webhook", subscription_id),
        old={"url": url, "event_types": event_types},
    )


async def list_deliveries(
    session: AsyncSession,
    subscription_id: uuid.UUID,
    state: State | None,
    page: Page,
) -> list[DeliveryView]:
    """What became of the events sent to a subscription, newest first, for as long as they
    are kept (finished ones for IDENTITY_SENT_RETENTION)."""
    if not await repository.subscription_exists(session, subscription_id):
        raise NotFound("No such webhook subscription.")
    return await repository.list_deliveries(session, subscription_id, state=state, page=page)


async def resend_delivery(
    session: AsyncSession,
    actor: Actor,
    subscription_id: uuid.UUID,
    delivery_id: uuid.UUID,
    now: datetime,
) -> DeliveryView:
    """Send a delivery again, due now and with a fresh day of retries: one given up on while
    the consumer was down, or one the consumer asks for again. The event keeps its id, so a
    consumer that acted on it already recognises it."""
    if not await repository.requeue(session, subscription_id, delivery_id, now):
        raise NotFound("This webhook subscription has no such delivery.")
    await record_as(
        session,
        actor,
        "webhook.delivery_resent",
        account_id=None,
        target=("webhook_delivery", delivery_id),
        new={"subscription_id": str(subscription_id)},
    )
    (view,) = await repository.list_deliveries(session, subscription_id, delivery_id=delivery_id)
    return view
