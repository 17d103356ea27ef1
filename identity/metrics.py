"""Prometheus metrics of the service: what the domain counts, apart from any web framework.

Every metric lives in prometheus_client's default registry. With several worker processes
(``identity serve --workers N``) the workers share one listening socket, so a scrape lands
on any one of them and a per-process ``/metrics`` would show a random worker's share:
``identity serve`` therefore sets ``PROMETHEUS_MULTIPROC_DIR`` before the workers start,
each worker writes its values to memory-mapped files there, and ``/metrics`` sums them
(prometheus_client's multiprocess mode). One process alone keeps its values in memory.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROCESS_DIR_VAR = "PROMETHEUS_MULTIPROC_DIR"

# One histogram counts and times requests: its _count series are the request counts. A
# separate counter would cost a third more per request (a value update each), on every
# request including the sub-millisecond discovery and JWKS answers.
REQUESTS = Histogram(
    "identity_http_request_duration_seconds",
    "Requests answered and the time from arrival to the end of the answer, by route template "
    "(not raw path) and status.",
    ["method", "route", "status"],
    # From cached documents (well under a millisecond) to a sign-in that hashes a password.
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SIGN_INS = Counter(
    "identity_sign_ins",
    "Password sign-ins by outcome: succeeded, failed (wrong credentials), throttled.",
    ["result"],
)
RATE_LIMITED = Counter(
    "identity_rate_limit_hits",
    "Attempts refused because a rate limit's window was used up, by limit name.",
    ["limit"],
)
RATE_LIMIT_FALLBACKS = Counter(
    "identity_rate_limit_fallbacks",
    "Rate-limit checks counted in process memory because the shared store was unavailable.",
)
EMAILS = Counter(
    "identity_emails",
    "Email delivery attempts by outcome: sent, failed (will retry), gave_up (last attempt).",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    "identity_webhook_deliveries",
    "Webhook delivery attempts by outcome: delivered, failed (will retry), gave_up (last "
    "attempt, or a URL or answer that a retry could not change).",
    ["result"],
)
HOUSEKEEPING_DELETED = Counter(
    "identity_housekeeping_deleted",
    "Rows housekeeping deleted because they could no longer change any answer, by table.",
    ["table"],
)


def exposition() -> tuple[bytes, str]:
    """The text a scrape reads, and its content type: this process's, or every worker's."""
    if os.environ.get(MULTIPROCESS_DIR_VAR):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
