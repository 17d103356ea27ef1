"""Checks of URIs that settings and client registration share."""

from __future__ import annotations

from urllib.parse import SplitResult

BAD_PORT = "has a port that is not a number from 1 to 65535"


def has_unusable_port(parts: SplitResult) -> bool:
    """A port no browser or socket can use, which ``urlsplit`` keeps without a word (it reads
    the port only when asked): the library or browser given the URI later fails instead, with
    a traceback or a message of its own."""
    try:
        return parts.port == 0
    except ValueError:  # not a number, or out of range
        return True
