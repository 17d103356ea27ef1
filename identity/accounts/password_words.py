"""The words a password must not be built on, and the folding that sees through disguises.

Sources are well-kept lists rather than hand-typed ones: zxcvbn's frequency lists (common
passwords, English), wordfreq's most frequent English and Spanish words, and a short file
of extra words under policies/. Words and passwords pass through the same ``fold``, so
``P@ssw0rd``, ``PASSWORD`` and ``password`` all meet the listed ``password``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from threading import Lock

import wordfreq
from zxcvbn import matching
from zxcvbn.frequency_lists import FREQUENCY_LISTS

ZXCVBN_LISTS = frozenset(FREQUENCY_LISTS)
# zxcvbn keeps its dictionaries, the user inputs of each call included, in one module-level
# dict: scoring and adding lists must not overlap.
ZXCVBN_LOCK = Lock()

# Leetspeak, folded many-to-one: each look-alike becomes one representative letter. ``1``,
# ``!`` and ``|`` stand for both ``i`` and ``l``, so those share a representative too.
_LEET = str.maketrans(
    {
        "4": "a",
        "@": "a",
        "8": "b",
        "3": "e",
        "6": "g",
        "9": "g",
        "1": "i",
        "!": "i",
        "|": "i",
        "l": "i",
        "0": "o",
        "5": "s",
        "$": "s",
        "7": "t",
        "+": "t",
        "2": "z",
    }
)


# Letters of other scripts drawn like a Latin one, so "раssword" with a Cyrillic р and а
# looks like password: the Greek and Cyrillic letters whose prototype in Unicode's
# confusables.txt (UTS #39) is one Latin letter. Taken as a table rather than a dependency:
# the data is small and stable, and the Python packages that carry it (confusable_homoglyphs,
# last released in January 2024) detect mixed scripts rather than map letters. Fullwidth
# Latin needs no entry: NFKC has made it ASCII before any check.
_LOOK_ALIKES = str.maketrans(
    "αΑΒΕϜΗιϳͿΚΙΜϺΝοσΟρΡΤυνΧγΥΖ"  # Greek
    "аАЬВсСԁеҽЕԌһНіӏјЈКІӀМоОрРԛгѕЅТѵѴѡԝԜхХуүУҮ",  # Cyrillic
    "aABEFHijJKlMMNooOpPTuvXyYZaAbBcCdeeEGhHiijJKllMoOpPqrsSTvVwwWxXyyYY",
)


# Unicode's default-ignorable code points other than format characters (Cf): variation
# selectors, the combining grapheme joiner, Khmer and Mongolian invisibles, Hangul fillers;
# and the braille blank (U+2800), a symbol Unicode does not call ignorable but that is
# drawn as nothing, so it serves as an "invisible character" where spaces are refused.
_IGNORABLE = frozenset(
    {0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180B, 0x180C, 0x180D, 0x180F, 0x2800, 0x3164}
    | {0xFFA0}
    | set(range(0xFE00, 0xFE10))
    | set(range(0xE0100, 0xE01F0))
)


def visible(text: str) -> str:
    """``text`` without the characters a reader never sees (zero-width spaces and joiners,
    soft hyphens, direction marks, variation selectors): slipped between the letters of a
    word, they would hide it from every check while the password looks the same."""
    return "".join(
        ch for ch in text if unicodedata.category(ch) != "Cf" and ord(ch) not in _IGNORABLE
    )


def unaccented(text: str) -> str:
    """Lower-case and without accents, in whatever form they were composed, or invisibles,
    with letters of other scripts that look Latin read as the Latin ones."""
    # Accents off before look-alikes are read, so that ά is the α that looks like a, and Ё
    # the Е that looks like E; look-alikes before lower-casing: Cyrillic Н is an H, but its
    # lower case н looks like no h. Lower-casing can bring marks back (İ is i and a dot).
    return _without_marks(_without_marks(visible(text)).translate(_LOOK_ALIKES).casefold())


def _without_marks(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )


def fold(text: str) -> str:
    """Lower-case, without accents, leetspeak undone: what a cracker's rules would try."""
    return leet_undone(unaccented(text))


def leet_undone(text: str) -> str:
    """``fold`` of text already ``unaccented``. Not ``fold`` again: ``unaccented`` reads
    look-alikes before lower-casing, so a second pass reads more (a final ς lower-cases to
    σ, which looks like o) and would no longer match a password folded once."""
    return text.translate(_LEET)


def read_word_file(path: Path) -> list[str]:
    """One word a line; blank lines and ``#`` comments skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


@dataclass(frozen=True, slots=True)
class WordSources:
    zxcvbn_lists: tuple[str, ...]
    wordfreq_languages: tuple[str, ...]
    wordfreq_top: int
    extra_words: tuple[str, ...]
    min_word_length: int


class Blocklist:
    """Listed words (letters and digits, at least ``min_word_length`` long), also folded."""

    def __init__(self, words: Iterable[str], min_word_length: int) -> None:
        self.min_word_length = min_word_length
        self.words = frozenset(
            w.casefold() for w in words if w.isalnum() and len(w) >= min_word_length
        )
        self._folded = frozenset(fold(w) for w in self.words)
        self.longest = max((len(w) for w in self._folded), default=0)

    def __len__(self) -> int:
        return len(self.words)

    def found_in(self, folded: str) -> bool:
        """Whether a listed word appears anywhere in ``folded`` (an output of ``fold``)."""
        size = len(folded)
        for start in range(size - self.min_word_length + 1):
            stop = min(size, start + self.longest)
            for end in range(start + self.min_word_length, stop + 1):
                if folded[start:end] in self._folded:
                    return True
        return False

    def is_listed(self, folded: str) -> bool:
        return folded in self._folded


@functools.cache
def load_blocklist(sources: WordSources) -> Blocklist:
    """Built once per process and set of sources: building it takes a fraction of a second."""
    words: list[str] = []
    for name in sources.zxcvbn_lists:
        words.extend(FREQUENCY_LISTS[name])
    for language in sources.wordfreq_languages:
        ranked = wordfreq.top_n_list(language, sources.wordfreq_top)
        words.extend(ranked)
        # zxcvbn knows only English: with these ranked lists it scores "Verano" as the
        # common word it is, not as six random letters.
        with ZXCVBN_LOCK:
            matching.add_frequency_lists({f"wordfreq_{language}": ranked})
    words.extend(sources.extra_words)
    return Blocklist(words, sources.min_word_length)
