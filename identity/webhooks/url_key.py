"""What makes two webhook URLs one subscription, as a fixed-size key a unique index can hold."""

from __future__ import annotations

import hashlib

import httpx

# RFC 3986 §6.2.3: a URL with its scheme's default port names the server one without does.
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalised(url: str) -> str:
    """``url`` as the client that posts it reads it: scheme and host in lower case, the host
    in its IDNA (``xn--``) form, the scheme's default port dropped, the path and query
    percent-encoded as sent. Spellings that come out alike reach one consumer the same way,
    so are one subscription. A URL the client cannot read (stored before a rule refused it)
    stays as written."""
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
        target = parsed.raw_path.decode("ascii")
    except (ValueError, httpx.InvalidURL):
        return url
    if ":" in host:
        host = f"[{host}]"
    port = "" if parsed.port in (None, DEFAULT_PORTS.get(parsed.scheme)) else f":{parsed.port}"
    return f"{parsed.scheme}://{host}{port}{target}"


def digest(url: str) -> str:
    """SHA-256 of ``url`` normalised, in hex: 64 characters whatever its length. An index of
    the URLs themselves refuses, on PostgreSQL, an entry over about 2,700 bytes (a URL stored
    before its limit was counted in bytes, or any limit to come)."""
    return hashlib.sha256(normalised(url).encode(errors="surrogatepass")).hexdigest()
