"""What makes two webhook URLs one subscription, as a fixed-size key a unique index can hold."""

from __future__ import annotations

import hashlib
import re
import string

import httpx

# RFC 3986 §6.2.3: a URL with its scheme's default port names the server one without does.
DEFAULT_PORTS = {"http": 80, "https": 443}
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 §2.3.
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")


def normalised(url: str) -> str:
    """``url`` as the client that posts it reads it: scheme and host in lower case, the host
    in its IDNA (``xn--``) form without a trailing dot, the scheme's default port dropped,
    the path and query percent-encoded as sent but for the escapes RFC 3986 §6.2.2 makes
    equivalent (see ``_escape``). Spellings that come out alike reach one consumer, so are
    one subscription. A URL the client cannot read (stored before a rule refused it) stays
    as written."""
    try:
        parsed = httpx.URL(url)
        # The client keeps the dot in the name it resolves, but the resolver reads
        # "billing.example.com." and "billing.example.com" alike: fully qualified, one host.
        host = parsed.raw_host.decode("ascii").lower().removesuffix(".")
        target = _ESCAPE.sub(_escape, parsed.raw_path.decode("ascii"))
    except (ValueError, httpx.InvalidURL):
        return url
    if ":" in host:
        host = f"[{host}]"
    port = "" if parsed.port in (None, DEFAULT_PORTS.get(parsed.scheme)) else f":{parsed.port}"
    return f"{parsed.scheme}://{host}{port}{target}"


def _escape(match: re.Match[str]) -> str:
    """The client sends an escape as written, but "%2f" is "%2F" (RFC 3986 §6.2.2.1) and
    "%7E" is "~" (§6.2.2.2) to every consumer that reads the URL: the escape of an
    unreserved character is that character, any other has its hex digits in upper case."""
    character = chr(int(match[1], 16))
    return character if character in _UNRESERVED else match[0].upper()


def digest(url: str) -> str:
    """SHA-256 of ``url`` normalised, in hex: 64 characters whatever its length. An index of
    the URLs themselves refuses, on PostgreSQL, an entry over about 2,700 bytes (a URL stored
    before its limit was counted in bytes, or any limit to come)."""
    return hashlib.sha256(normalised(url).encode(errors="surrogatepass")).hexdigest()
