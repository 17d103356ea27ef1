"""How every 429 and 503 says when to come back: pages, /api/v1 problems and OAuth alike.

RFC 6585 §4 lets a 429 say how long to wait with Retry-After (RFC 9110 §10.2.3); ours
is the time left in the window of the limit that refused, never a guess: a client told too
little is refused again, one told too much is kept out for longer than the limit says.
"""

from __future__ import annotations

from identity.errors import DomainError, RateLimited

# A database or Redis that stopped answering: no window to count down, and a few seconds is
# as long as a restart or failover usually takes.
UNAVAILABLE = "5"


def retry_after(exc: DomainError) -> dict[str, str]:
    """The headers of the answer to ``exc``: Retry-After when a rate limit refused, else none."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    return {}
