"""Signed webhooks from identity: the signature format, and its check for consumers.

Every delivery carries ``Identity-Signature: t=<unix seconds>,v1=<hex>``, where the hex is
HMAC-SHA256 keyed with the subscription's secret over ``f"{t}.{body}"`` (Stripe's scheme).
Signing the timestamp with the body lets a consumer refuse an old delivery replayed later;
while a secret is being rotated a delivery may carry several ``v1`` values, and one that
matches any secret the consumer holds is enough.

    from identity.resource.webhooks import WebhookError, verify

    try:
        event = verify(request.headers, await request.body(), secret)
    except WebhookError:
        return Response(status_code=400)

The event is the JSON object ``{"id", "type", "occurred_at", "data"}``; the same event may
arrive more than once (a retry after a lost answer), so consumers should act on each ``id``
once, or make their reaction idempotent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

SIGNATURE_HEADER = "Identity-Signature"
SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
# Unix seconds have 10 digits until 2286. A longer ``t`` is junk, and a long enough one made
# int() (past 4300 digits) or the comparison with time.time() (past a float) raise.
_MAX_TIMESTAMP_DIGITS = 12


class WebhookError(ValueError):
    """The delivery is not signed by identity with this secret, or is too old or malformed."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def signature_header(secrets: list[str], timestamp: int, body: bytes) -> str:
    """The header value identity sends: one ``v1`` per secret (two while rotating)."""
    return ",".join([f"t={timestamp}", *(f"{SCHEME}={_mac(s, timestamp, body)}" for s in secrets)])


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        # ASCII only: str.isdigit() is true of "²", which int() refuses, and compare_digest
        # raises on non-ASCII text; a header is whatever the sender put there.
        if not value.isascii():
            continue
        if key == "t" and value.isdigit() and len(value) <= _MAX_TIMESTAMP_DIGITS:
            timestamp = int(value)
        elif key == SCHEME and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookError(f"the {SIGNATURE_HEADER} header has no timestamp or no v1 signature")
    return timestamp, signatures


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # Frameworks hand headers over in every case convention; HTTP names are case-insensitive.
    wanted = name.lower()
    return next((value for key, value in headers.items() if key.lower() == wanted), None)


def verify(
    headers: Mapping[str, str],
    body: bytes,
    secret: str | list[str],
    tolerance: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event, if ``body`` was signed with ``secret`` (or one of several, during a
    rotation) no more than ``tolerance`` seconds from ``now``; else ``WebhookError``.

    ``body`` must be the raw bytes received: parsing and re-serialising JSON changes them.
    An empty secret (a setting left unset) raises ``ValueError``, not ``WebhookError``: it is
    the consumer's mistake, and anyone can sign with it; so does an empty list, which no
    delivery could match.
    """
    secrets = [secret] if isinstance(secret, str) else secret
    if not secrets or not all(secrets):
        raise ValueError("verify needs the subscription's secret: an empty one lets anyone sign")
    header = _header(headers, SIGNATURE_HEADER)
    if header is None:
        raise WebhookError(f"no {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookError("the signature's timestamp is outside the tolerance (a replay?)")
    expected = [_mac(s, timestamp, body) for s in secrets]
    # Every pair is compared, each in constant time, so timing tells nothing of which matched.
    matches = [hmac.compare_digest(e, s) for e in expected for s in signatures]
    if not any(matches):
        raise WebhookError("no signature matches the secret")
    try:
        event = json.loads(body)
    except ValueError:
        raise WebhookError("the body is not JSON") from None
    if not isinstance(event, dict) or not {"id", "type", "occurred_at", "data"} <= event.keys():
        raise WebhookError("the body is not an identity event")
    return event
