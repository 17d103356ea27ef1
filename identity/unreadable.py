"""Characters that change how the text around them reads, refused in any name people are
shown: control characters and Unicode's line and paragraph separators (a line break splits
the email header a name is put in, and fakes lines of its own in a message), and Unicode's
direction overrides and isolates, with which "Acme" followed by U+202E and "gnillib" is
displayed as "Acmebilling" reversed ("Trojan Source", CVE-2021-42574).

Also how much of a value a message echoes. A module of its own, free of imports, so that the
settings can apply it too.
"""

from __future__ import annotations

import unicodedata

DIRECTION_CONTROLS = frozenset({*range(0x202A, 0x202F), *range(0x2066, 0x206A)})
# Control characters (line feed among them), and U+2028 and U+2029, which break lines too.
LINE_BREAKING = frozenset({"Cc", "Zl", "Zp"})
# What a refusal says, after "The name" or a setting's variable.
REFUSAL = "may not contain line breaks, control characters or text direction overrides"


def breaks_reading(text: str) -> bool:
    return any(
        unicodedata.category(ch) in LINE_BREAKING or ord(ch) in DIRECTION_CONTROLS for ch in text
    )


def clipped(text: str, limit: int) -> str:
    """``text`` as a message echoes it: whole up to ``limit`` characters (the longest value
    that could be right), else its start and an ellipsis, so that a pasted token or file
    does not become the message."""
    return text if len(text) <= limit else text[:limit] + "…"
