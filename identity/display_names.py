"""Names that people give and other people are shown: of users, accounts, roles and clients,
and the reasons staff give, which the audit log shows.

Trimmed and bounded, and refused when they hold characters that change how the text around
them reads (identity.unreadable), in invitations and on pages. Other invisible characters
stay allowed (Persian and emoji need joiners), but a name made only of them is no name.
"""

from __future__ import annotations

import unicodedata

from identity.accounts.password_words import visible
from identity.db import text_guard
from identity.errors import InvalidInput, UnstorableText
from identity.unreadable import REFUSAL, breaks_reading


def display_name(
    raw: str, max_length: int, *, required: bool = True, field: str = "name", what: str = "name"
) -> str:
    """``raw`` trimmed, or ``InvalidInput`` about ``field`` saying why the ``what`` it holds
    cannot be shown (``UnstorableText`` for what no database holds, as every other field,
    naming ``field`` too)."""
    try:
        text_guard.check(raw)
    except UnstorableText:
        raise UnstorableText(field) from None
    name = raw.strip()
    if len(name) > max_length or (required and not name):
        bounds = "1 to" if required else "at most"
        message = f"The {what} must be {bounds} {max_length} characters."
    elif breaks_reading(name):
        message = f"The {what} {REFUSAL}."
    elif name and not visible(name).strip():
        message = f"The {what} must contain a visible character."
    else:
        return name
    raise InvalidInput(message, errors=[{"field": field, "message": message}])


def same_name(a: str, b: str) -> bool:
    """Whether two names read the same to a person picking one by its name: whatever their
    case, an accent composed or combined, a ligature or the letters it joins, and with the
    characters nobody sees (a zero-width space, a soft hyphen) left out."""
    return _compared(a) == _compared(b)


def _compared(name: str) -> str:
    return unicodedata.normalize("NFKC", visible(name)).casefold()
