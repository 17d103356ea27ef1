"""How pages and emails show a moment: to the minute, in UTC, the same in every language.

Seconds are left off, not rounded: the minute shown is the one the moment was in, never a
later one.
"""

from __future__ import annotations

from datetime import datetime


def shown_minute(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")
