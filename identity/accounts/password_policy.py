"""The password policy: its rules, read from policies/password.toml, and the verdict on a password.

One verdict serves every place a password is set (CLI, invitation, reset, change, API);
each refusal carries a stable reason id whose texts live in identity/i18n.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any, Literal

from zxcvbn import zxcvbn

from identity.accounts.password_messages import texts
from identity.accounts.password_words import (
    ZXCVBN_LOCK,
    Blocklist,
    fold,
    leet_undone,
    unaccented,
    visible,
)
from identity.uris import decoded_host

CharacterClass = Literal["lower", "upper", "digit", "symbol"]
CHARACTER_CLASSES: tuple[CharacterClass, ...] = ("lower", "upper", "digit", "symbol")
DictionaryMode = Literal["contains", "whole"]
# Every reason a verdict can give: stable ids, with texts in identity/i18n/passwords.*.toml.
REASON_IDS = (
    "password.too_short",
    "password.too_long",
    "password.invalid_characters",
    *(f"password.missing_{cls}" for cls in CHARACTER_CLASSES),
    "password.dictionary_word",
    "password.personal_info",
    "password.product_name",
    "password.too_weak",
)

# zxcvbn's cost grows faster than the square of the length: measured worst cases (a string
# of every leetspeak character, symbols folded as below) are 38 ms at 48 characters and
# 91 ms at 64. It scores only this prefix; a longer tail can only add strength.
ZXCVBN_MAX_CHARS = 48
# zxcvbn's leetspeak matcher enumerates every substitution table a password's symbols allow
# (736 for one holding them all: 1.4 s at 64 characters). Symbols are replaced by the letter
# they imitate before scoring; digits stay, so years and dates are still recognised.
_LEET_SYMBOLS = str.maketrans({"@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "(": "c",
                               "{": "c", "[": "c", "<": "c", "%": "x"})  # fmt: skip
# Raw input longer than this many times max_length is refused before NFKC normalisation,
# whose output can be 18 times its input: a huge body must not cost CPU.
RAW_LENGTH_FACTOR = 4
# Parts of an email or name shorter than this are too common to refuse (``jo``, ``es``).
MIN_PERSONAL_PART = 3
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Cn", "Zl", "Zp"})
_SEPARATORS = re.compile(r"[\W_\d]+")
_LEADING = re.compile(r"^[\W\d_]+")
_TRAILING = re.compile(r"[\W\d_]+\Z")
_NOT_LETTERS = re.compile(r"[\W_]+")


@dataclass(frozen=True, slots=True)
class Reason:
    id: str
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def messages(self) -> dict[str, str]:
        return texts(self.id, **self.params)


@dataclass(frozen=True, slots=True)
class Verdict:
    reasons: tuple[Reason, ...]
    score: int  # zxcvbn 0..4

    @property
    def accepted(self) -> bool:
        return not self.reasons

    @property
    def reason_ids(self) -> list[str]:
        return [reason.id for reason in self.reasons]

    def as_problem_reasons(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "messages": r.messages} for r in self.reasons]


@dataclass(frozen=True, slots=True)
class Rules:
    min_length: int
    max_length: int
    require: tuple[CharacterClass, ...]
    min_score: int
    dictionary: DictionaryMode


@dataclass(frozen=True, slots=True)
class Argon2Parameters:
    memory_kib: int
    time_cost: int
    parallelism: int
    hash_length: int
    salt_length: int
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class PasswordPolicy:
    preset: str
    rules: Rules
    blocklist: Blocklist
    argon2: Argon2Parameters

    def check(
        self, password: str, *, email: str = "", name: str = "", product_name: str = ""
    ) -> Verdict:
        """The verdict on ``password`` for a user with this email and name, on this service."""
        rules = self.rules
        too_long = Verdict((Reason("password.too_long", {"max": rules.max_length}),), 0)
        if len(password) > rules.max_length * RAW_LENGTH_FACTOR:
            return too_long
        password = unicodedata.normalize("NFKC", password)
        if len(password) > rules.max_length:
            return too_long
        if any(unicodedata.category(ch) in _REFUSED_CATEGORIES for ch in password):
            return Verdict((Reason("password.invalid_characters"),), 0)

        reasons: list[Reason] = []
        if len(visible(password)) < rules.min_length:
            reasons.append(Reason("password.too_short", {"min": rules.min_length}))
        reasons.extend(
            Reason(f"password.missing_{cls}") for cls in rules.require if not _has(password, cls)
        )
        if self._built_on_listed_word(password):
            reasons.append(Reason("password.dictionary_word"))
        personal = personal_parts(email, name)
        if _spelt(password, _holding(personal)):
            reasons.append(Reason("password.personal_info"))
        product = name_parts(product_name)
        if _spelt(password, _holding(product)):
            reasons.append(Reason("password.product_name"))
        score = strength_score(password, [*personal, *product])
        if score < rules.min_score:
            reasons.append(Reason("password.too_weak", {"min_score": rules.min_score}))
        return Verdict(tuple(reasons), score)

    def _built_on_listed_word(self, password: str) -> bool:
        if self.rules.dictionary == "contains":
            return self.blocklist.found_in(fold(password)) or self._found_across_separators(
                password
            )
        return _spelt(password, self._is_listed_word)

    def _is_listed_word(self, password: str) -> bool:
        # "whole": the password is a listed word once the digits and symbols around it (a
        # year, a "1!") are taken off. Some of them may be the word's own leetspeak letters
        # ("@dministrador2024", "1nvierno!!"), so every cut through the runs around it is
        # tried. A word said again ("veranoverano", "hola hola") is still that word.
        size = len(password)
        lead = size - len(_LEADING.sub("", password))  # where the letters may start at the latest
        trail = len(_TRAILING.sub("", password))  # and end at the earliest
        # fold works character by character, so every cut's fold is a slice of one fold,
        # and the letters of a slice are counted with prefix sums instead of rescanned.
        pieces = [fold(ch) for ch in password]
        whole = "".join(pieces)
        at = list(accumulate(map(len, pieces), initial=0))
        kept = list(accumulate((not _NOT_LETTERS.match(ch) for ch in whole), initial=0))
        last_cut = {kept[at[end]]: end for end in range(size + 1)}  # the latest with so many
        longest = self.blocklist.longest
        for start in range(lead + 1):
            first = max(trail, start + 1)
            for end in range(first, size + 1):
                core = whole[at[start] : at[end]]
                if len(core) > longest:
                    break  # longer cores can only be a word said again: looked for below
                if self.blocklist.is_listed(core) or self.blocklist.is_listed(_repeated_unit(core)):
                    return True
            letters = _NOT_LETTERS.sub("", whole[at[start] :])
            for count in self._repetitions(letters):
                if last_cut.get(kept[at[start]] + count, -1) >= first:
                    return True
        return False

    def _found_across_separators(self, password: str) -> bool:
        """Whether a listed word is spelt with separators between its letters or parts
        ("p.a.s.s.w.o.r.d", "dra-gon-fly"), beginning and ending where a part does.

        Joining the parts and searching the whole would find words nobody sees in random
        text ("Tqab#leZ" shows no "able"): random 16-character draws like the generator's
        were refused 1.7 times as often (7.9% instead of 4.7%), while whole parts leave
        that rate as it was.
        """
        letters, edges = _joined_parts(password)
        blocklist = self.blocklist
        for index, start in enumerate(edges):
            for end in edges[index + 1 : index + 2 + blocklist.longest]:
                if end - start > blocklist.longest:
                    break
                if end - start >= blocklist.min_word_length and blocklist.is_listed(
                    letters[start:end]
                ):
                    return True
        return False

    def ends_in_listed_word(self, text: str) -> bool:
        """Whether the "contains" check finds a listed word in ``text`` that ends where
        ``text`` ends, as written or across separators.

        For building a password a character at a time (identity.accounts.password_generator):
        when no prefix of a password ends in a listed word, no listed word is in it. It looks
        only at the words ending last, so each step costs as much as the longest word.

        A word spelt across separators counts here even when a longer text would go on with
        its last part ("1E^14" ends in "ieia", "1E^140" spells none): the generator then
        passes over a character it could have kept, never keeps one the check refuses.
        """
        blocklist = self.blocklist
        folded = fold(text)
        end = len(folded)
        shortest, longest = blocklist.min_word_length, blocklist.longest
        if any(
            blocklist.is_listed(folded[start:])
            for start in range(max(0, end - longest), end - shortest + 1)
        ):
            return True
        letters, edges = _joined_parts(text)
        end = edges[-1]
        return any(
            blocklist.is_listed(letters[start:end])
            for start in edges[:-1]
            if shortest <= end - start <= longest
        )

    def _repetitions(self, letters: str) -> Iterator[int]:
        """How many of ``letters``' first letters are a listed word said twice or more, the
        word being what ``_repeated_unit`` finds (it is no repetition itself)."""
        blocklist = self.blocklist
        for size in range(blocklist.min_word_length, min(blocklist.longest, len(letters) // 2) + 1):
            word = letters[:size]
            if blocklist.is_listed(word) and _repeated_unit(word) == word:
                yield from range(2 * size, _periodic_length(letters, size) + 1, size)

    def describe(self) -> list[tuple[str, dict[str, Any]]]:
        """The rules as (text id, placeholders), in the order a page lists them."""
        rules = self.rules
        items: list[tuple[str, dict[str, Any]]] = [
            ("policy.min_length", {"min": rules.min_length}),
            ("policy.max_length", {"max": rules.max_length}),
        ]
        items += [(f"policy.require_{cls}", {}) for cls in rules.require]
        items.append((f"policy.dictionary_{rules.dictionary}", {}))
        items.append(("policy.personal", {}))
        if rules.min_score:
            items.append(("policy.min_score", {"min_score": rules.min_score}))
        return items


def _periodic_length(text: str, period: int) -> int:
    """The length of ``text``'s longest beginning that repeats its first ``period`` letters."""
    low, high = 0, len(text) - period  # found by halving, each comparison a slice in C
    while low < high:
        middle = (low + high + 1) // 2
        if text[period : period + middle] == text[:middle]:
            low = middle
        else:
            high = middle - 1
    return period + low


def _repeated_unit(core: str) -> str:
    """The word ``core`` says again and again ("veranoverano", "hola hola"), else ``core``.

    Found as the shortest period of its letters, in linear time: a backtracking pattern
    (a lazy group, separators, its back-reference) took minutes on 60 characters of
    repeating symbols.
    """
    letters = _NOT_LETTERS.sub("", core)
    period = (letters + letters).find(letters, 1)
    return letters[:period] if 0 < period < len(letters) else core


def _has(password: str, cls: CharacterClass) -> bool:
    if cls == "lower":
        return any(ch.islower() for ch in password)
    if cls == "upper":
        return any(ch.isupper() for ch in password)
    if cls == "digit":
        return any(unicodedata.category(ch) == "Nd" for ch in password)
    return any(unicodedata.category(ch)[0] in "PS" for ch in password)


def _spelt(password: str, found: Callable[[str], bool]) -> bool:
    """Whether ``found`` sees what it looks for in the password as written, or letter for
    letter once the separators are taken out: "p.a.s.s.w.o.r.d" spells password, "m-a-r-i-a"
    the name maria.

    A separator is what folds to no letter: spaces and the symbols that imitate none. Digits
    and leetspeak symbols stay, so "P@ss w0rd" still reads as "P@ssw0rd".
    """
    return found(password) or found(_without_separators(password))


def _without_separators(text: str) -> str:
    return _parts(text)[0]


def _parts(text: str) -> tuple[str, list[int]]:
    """``text`` without the separators beside its letters, and where in that its parts
    begin or end.

    Separators between two digits or leetspeak symbols stay: "!#!#!#q" is no "!!!!!q",
    nor "#1#1#1#1" a "1111" said again, to anyone reading them.
    """
    kept: list[str] = []
    edges = {0}
    run: list[str] = []  # the separators since the last character seen
    last = ""  # that character
    for ch in text:
        folded = fold(ch)
        if folded and _NOT_LETTERS.fullmatch(folded):
            run.append(ch)
            continue
        if folded:  # invisible characters neither separate nor are separated
            if run and last and not (last.isalpha() or ch.isalpha()):
                kept.extend(run)
            if run:
                edges.add(len(kept))
                run.clear()
            last = ch
        kept.append(ch)
    edges.add(len(kept))
    return "".join(kept), sorted(edges)


def _joined_parts(text: str) -> tuple[str, list[int]]:
    """``_parts`` folded: the letters, and where in them the parts begin or end."""
    kept, parts = _parts(text)
    pieces = [fold(ch) for ch in kept]
    at = list(accumulate(map(len, pieces), initial=0))
    return "".join(pieces), [at[edge] for edge in parts]


def _holding(parts: list[str]) -> Callable[[str], bool]:
    """Whether a password holds one of ``parts``, as written or with the separators taken
    from the part too: "AlBo" holds the name "Al Bo"."""
    joined = (_NOT_LETTERS.sub("", part) for part in parts)
    wanted = [*parts, *(part for part in joined if len(part) >= MIN_PERSONAL_PART)]

    def holds(password: str) -> bool:
        folded = [fold(written) for written in _cases(password)]
        return any(part in text for part in wanted for text in folded)

    return holds


def _cases(text: str) -> tuple[str, str]:
    """``text`` as written and lower-cased, each to be folded. Folding reads a Greek or
    Cyrillic capital as the Latin letter it looks like and its lower case as itself (Н is an
    H, н looks like no h), so "Наташа" and "наташа" fold apart: a name is found in a password
    when either form of the one is in either form of the other, as a Latin name is in any
    case."""
    return text, text.casefold()


def name_parts(text: str) -> list[str]:
    """Folded ``text`` and its words, each long enough to be worth refusing, as written and
    lower-cased (``_cases``)."""
    parts: set[str] = set()
    for written in _cases(text):
        # Accents come off first: in a decomposed name each combining mark is a separator,
        # which would cut "Yáñez" into "Ya", "n", "ez", and a mark is no letter to count.
        plain = unaccented(written)
        candidates = [plain, *_SEPARATORS.split(plain)]
        parts.update(leet_undone(p) for p in candidates if len(p.strip()) >= MIN_PERSONAL_PART)
    return sorted(parts)


def personal_parts(email: str, name: str) -> list[str]:
    """The name and its words, the email, its local part and words, its domain's labels and
    their words."""
    local, _, domain = email.rpartition("@") if "@" in email else (email, "", "")
    # The top-level domain (com, es) says nothing about the user and is in many words.
    labels = [part for label in domain.split(".")[:-1] for part in name_parts(decoded_host(label))]
    parts = {*name_parts(name), *name_parts(local), *labels}
    if len(email.strip()) >= MIN_PERSONAL_PART:  # not a letter or two typed so far
        parts.update(fold(written) for written in _cases(email))
    return sorted(parts)


def strength_score(password: str, user_inputs: Iterable[str]) -> int:
    """zxcvbn's 0..4 score of the first ``ZXCVBN_MAX_CHARS`` visible characters."""
    sample = visible(password)[:ZXCVBN_MAX_CHARS].translate(_LEET_SYMBOLS)
    if not sample:
        return 0  # zxcvbn fails on the empty string (IndexError) instead of scoring it
    with ZXCVBN_LOCK:
        result = zxcvbn(sample, user_inputs=list(user_inputs), max_length=ZXCVBN_MAX_CHARS)
    return int(result["score"])
