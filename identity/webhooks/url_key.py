"""What makes two webhook URLs one subscription, as a fixed-size key a unique index can hold."""

from __future__ import annotations

import hashlib


def digest(url: str) -> str:
    """SHA-256 of ``url``, in hex: 64 characters whatever its length. An index of the URLs
    themselves refuses, on PostgreSQL, an entry over about 2,700 bytes (a URL stored before its
    limit was counted in bytes, or any limit to come)."""
    return hashlib.sha256(url.encode(errors="surrogatepass")).hexdigest()
