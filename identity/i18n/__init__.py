"""Message catalogues for the hosted pages and emails, keyed by stable ids.

Each ``<topic>.<language>.toml`` file here (``pages.es.toml``, ``passwords.en.toml``) maps
ids such as ``login.title`` to text with ``{name}`` placeholders, grouped in TOML sections
that only organise the file. A language's catalogue is all of its files together, so a
page can show any text by id. English is complete by definition; an id missing from
another language falls back to English, so a new text never shows a raw id.
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

CATALOGUE_DIR = Path(__file__).resolve().parent
DEFAULT_LOCALE = "en"
SUPPORTED_LOCALES = ("en", "es")


@cache
def catalogue(locale: str) -> dict[str, str]:
    texts: dict[str, str] = {}
    for path in sorted(CATALOGUE_DIR.glob(f"*.{locale}.toml")):
        with path.open("rb") as file:
            for section in tomllib.load(file).values():
                texts.update(section)
    return texts


class Messages:
    """The texts of one language: ``messages("login.title")`` or with ``name=...`` values."""

    def __init__(self, locale: str) -> None:
        self.locale = locale if locale in SUPPORTED_LOCALES else DEFAULT_LOCALE

    def __call__(self, key: str, **values: str) -> str:
        text = catalogue(self.locale).get(key) or catalogue(DEFAULT_LOCALE)[key]
        return text.format(**values) if values else text


def _language(tag: str) -> str:
    return tag.strip().split("-")[0].split("_")[0].lower()


# RFC 9110 §12.4.2: "0" to "1" with at most three decimals; anything else is no qvalue.
_QVALUE = re.compile(r"0(\.[0-9]{0,3})?|1(\.0{0,3})?")


def _quality(params: str) -> float | None:
    """An item's weight, or None when its qvalue breaks the grammar (``q=2``, ``q=abc``).

    Such an item is dropped rather than guessed at, so a malformed weight can never outrank
    a well-formed one.
    """
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.lower() == "q":
            value = value.strip()
            return float(value) if _QVALUE.fullmatch(value) else None
    return 1.0


def _from_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (RFC 9110 §12.5.4 quality values)."""
    items: list[tuple[str, float]] = []
    for item in header.split(","):
        tag, _, params = item.partition(";")
        quality = _quality(params)
        if quality is not None:
            items.append((_language(tag), quality))
    # "*" stands for every language no other item names, whatever quality that one has.
    named = {language for language, _ in items}
    unnamed = [language for language in SUPPORTED_LOCALES if language not in named]
    ranked: list[tuple[float, int, str]] = []
    for position, (language, quality) in enumerate(items):
        for candidate in unnamed if language == "*" else [language]:
            if candidate in SUPPORTED_LOCALES and quality > 0:
                # Higher quality first; among equals, the order the browser gave.
                ranked.append((-quality, position, candidate))
    return min(ranked)[2] if ranked else None


def negotiate(ui_locales: str | None, accept_language: str | None) -> str:
    """``ui_locales`` (OIDC Core §3.1.2.1, in order of preference), then Accept-Language."""
    for tag in (ui_locales or "").split():
        if _language(tag) in SUPPORTED_LOCALES:
            return _language(tag)
    return _from_accept_language(accept_language or "") or DEFAULT_LOCALE
