"""What a person typed as a code, reduced to the characters that matter.

Both kinds of code (six TOTP digits, recovery codes) are read through ``compact`` so that
they forgive the same things: full-width characters from a CJK input method (NFKC maps
them to ASCII), and whatever spaces and dashes a copy or an app's display brought along.
"""

from __future__ import annotations

import unicodedata


def compact(raw: str) -> str:
    """``raw`` in NFKC with every space and dash left out."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", raw) if not _separator(ch))


def _separator(ch: str) -> bool:
    # Dashes: hyphens, en and em dashes (category Pd), and the minus sign (a math symbol).
    return ch.isspace() or unicodedata.category(ch) == "Pd" or ch == "\N{MINUS SIGN}"
