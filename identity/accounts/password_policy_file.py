"""Read and validate a password policy file (policies/password.toml or IDENTITY_PASSWORD_POLICY).

Every key is checked here, with unknown keys refused, so a typo stops the service at
start-up with the file and the key named, instead of silently weakening the policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast, get_args

from identity.accounts.password_policy import (
    CHARACTER_CLASSES,
    Argon2Parameters,
    CharacterClass,
    DictionaryMode,
    PasswordPolicy,
    Rules,
)
from identity.accounts.password_words import (
    ZXCVBN_LISTS,
    WordSources,
    load_blocklist,
    read_word_file,
)
from identity.toml_file import UnreadableToml, read_toml

# Above this, zxcvbn and argon2 would cost more than any passphrase is worth.
LONGEST_MAX_LENGTH = 1024
# NIST SP 800-63B: verifiers SHOULD permit at least 64 characters.
SHORTEST_MAX_LENGTH = 64
WORDFREQ_LANGUAGES = frozenset({"en", "es"})


class PolicyFileError(ValueError):
    """The policy file cannot be used; ``str()`` names the file and the key."""

    def __init__(self, path: Path, key: str, problem: str) -> None:
        # One wording for every policies file, the permission catalogue's among them.
        super().__init__(f"{path}: {key} {problem}" if key else f"{path}: {problem}")


class _Table:
    """One TOML table, read key by key; whatever is left unread at the end is a typo."""

    def __init__(self, path: Path, prefix: str, data: Any) -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(data, dict):
            raise PolicyFileError(path, prefix, "must be a table")
        self._data: dict[str, Any] = dict(data)

    def error(self, key: str, problem: str) -> PolicyFileError:
        return PolicyFileError(self.path, f"{self.prefix}.{key}".lstrip("."), problem)

    def table(self, key: str) -> _Table:
        if key not in self._data:
            raise self.error(key, "is missing")
        return _Table(self.path, f"{self.prefix}.{key}".lstrip("."), self._data.pop(key))

    def integer(self, key: str, low: int, high: int, default: int | None = None) -> int:
        value = self._present(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.error(key, f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    def text(self, key: str, choices: tuple[str, ...] | None = None) -> str:
        value = self._present(key)
        if not isinstance(value, str) or not value or (choices and value not in choices):
            wanted = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise self.error(key, f"must be {wanted}, not {value!r}")
        return value

    def strings(self, key: str, choices: frozenset[str] | tuple[str, ...]) -> tuple[str, ...]:
        value = self._present(key)
        valid = isinstance(value, list) and all(
            isinstance(item, str) and item in choices for item in value
        )
        if not valid:
            raise self.error(key, f"must be a list of {', '.join(sorted(choices))}, not {value!r}")
        return tuple(value)

    def _present(self, key: str, default: Any = None) -> Any:
        """The key's value, taken off the unread ones; a key left out is called missing."""
        value = self._data.pop(key, default)
        if value is None:
            raise self.error(key, "is missing")
        return value

    def done(self) -> None:
        if self._data:
            raise self.error(next(iter(self._data)), "is not a known key")


def load_policy(path: Path) -> PasswordPolicy:
    try:
        document = read_toml(path)
    except UnreadableToml as exc:
        raise PolicyFileError(path, "", str(exc)) from None
    top = _Table(path, "", document)
    preset = top.text("preset")
    presets = top.table("presets")
    rules = _rules(presets.table(preset))
    # The presets not in force are checked too, so switching to one never meets a typo.
    for name in [key for key in document["presets"] if key != preset]:
        _rules(presets.table(name))
    presets.done()
    sources = _word_sources(path, top.table("dictionary"))
    argon2 = _argon2(top.table("argon2"))
    top.done()
    return PasswordPolicy(preset, rules, load_blocklist(sources), argon2)


def _rules(table: _Table) -> Rules:
    min_length = table.integer("min_length", 1, LONGEST_MAX_LENGTH)
    max_length = table.integer(
        "max_length", max(min_length, SHORTEST_MAX_LENGTH), LONGEST_MAX_LENGTH
    )
    rules = Rules(
        min_length=min_length,
        max_length=max_length,
        require=cast(tuple[CharacterClass, ...], table.strings("require", CHARACTER_CLASSES)),
        min_score=table.integer("min_score", 0, 4),
        dictionary=cast(DictionaryMode, table.text("dictionary", get_args(DictionaryMode))),
    )
    table.done()
    return rules


def _word_sources(path: Path, table: _Table) -> WordSources:
    extra_name = table.text("extra_words")
    extra_path = path.parent / extra_name
    if not extra_path.is_file():
        # Opened, a named pipe waits for a writer and /dev/zero never ends: the command hung.
        raise table.error("extra_words", f"names {str(extra_path)!r}, which is not a readable file")
    try:
        extra = read_word_file(extra_path)
    except (OSError, ValueError) as exc:  # ValueError: not UTF-8
        raise table.error(
            "extra_words", f"names {str(extra_path)!r}, which cannot be read ({exc})"
        ) from None
    sources = WordSources(
        min_word_length=table.integer("min_word_length", 3, 32),
        zxcvbn_lists=table.strings("zxcvbn_lists", ZXCVBN_LISTS),
        wordfreq_languages=table.strings("wordfreq_languages", WORDFREQ_LANGUAGES),
        wordfreq_top=table.integer("wordfreq_top", 0, 200_000),
        extra_words=tuple(extra),
    )
    table.done()
    return sources


def _argon2(table: _Table) -> Argon2Parameters:
    parallelism = table.integer("parallelism", 1, 64)
    parameters = Argon2Parameters(
        parallelism=parallelism,
        # Argon2 needs at least 8 KiB per lane (RFC 9106 §3.1); 4 GiB is more than any host.
        memory_kib=table.integer("memory_kib", 8 * parallelism, 4 * 1024 * 1024),
        time_cost=table.integer("time_cost", 1, 100),
        hash_length=table.integer("hash_length", 16, 64),
        salt_length=table.integer("salt_length", 16, 64),
        max_concurrency=table.integer("max_concurrency", 1, 256, default=os.cpu_count() or 1),
    )
    table.done()
    return parameters
