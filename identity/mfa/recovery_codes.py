"""Single-use recovery codes: for when the authenticator app is lost.

Each code carries 80 random bits, enough that a stolen table of SHA-256 digests cannot be
reversed by trying codes, so a fast digest does (argon2 is for low-entropy passwords).
Codes use Crockford's base32 alphabet, which has no I, L, O or U to misread.
"""

from __future__ import annotations

import secrets

from identity.crypto import digest
from identity.mfa.typed_codes import compact

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
    """The stored form of a code as typed: case, width, spaces and dashes do not matter,
    whichever ones a copy brought along (a web page's no-break spaces, a word processor's
    en dashes)."""
    return digest(compact(raw).lower().translate(_READ_AS))
