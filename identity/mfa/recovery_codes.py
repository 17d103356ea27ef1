"""Single-use recovery codes: for when the authenticator app is lost.

Each code carries 80 random bits, enough that a stolen table of SHA-256 digests cannot be
reversed by trying codes, so a fast digest does (argon2 is for low-entropy passwords).
Codes use Crockford's base32 alphabet, which has no I, L, O or U to misread.
"""

from __future__ import annotations

import secrets
import unicodedata

from identity.crypto import digest

COUNT = 10
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_GROUPS, _GROUP_LENGTH = 4, 4
# What people type for the letters the alphabet leaves out.
_READ_AS = str.maketrans({"i": "1", "l": "1", "o": "0"})


def generate() -> list[str]:
    return ["-".join(_group() for _ in range(_GROUPS)) for _ in range(COUNT)]


def _group() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LENGTH))


def code_digest(raw: str) -> str:
    """The stored form of a code as typed: case, spaces and dashes do not matter, whichever
    ones a copy brought along (a web page's no-break spaces, a word processor's en dashes)."""
    cleaned = "".join(ch for ch in raw.lower() if not _separator(ch)).translate(_READ_AS)
    return digest(cleaned)


def _separator(ch: str) -> bool:
    return ch.isspace() or unicodedata.category(ch) == "Pd" or ch == "\N{MINUS SIGN}"
