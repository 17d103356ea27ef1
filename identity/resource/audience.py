"""The one warning for a kit left without an audience.

Kept valid for services with one issuer and one audience, but never silent: without
``audience`` a token a client got for another service (or for itself) is accepted. The
token validator and the introspector both accept such tokens, so both say so, alike.
"""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)


def warn_if_any_audience(audience: str | None, issuer: str, component: str) -> None:
    """Log that ``component`` accepts tokens of ``issuer`` for any audience, when it does."""
    if audience is not None:
        return
    logger.warning(
        "no audience configured for the %s of issuer %s: access tokens issued for any "
        "service are accepted; set audience (ResourceServerConfig(audience=...) or "
        "Introspector(audience=...)) to this service's resource identifier",
        component,
        issuer,
    )
