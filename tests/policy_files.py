"""Password policy files the tests write beside the fast one, for rules it does not have."""

from __future__ import annotations

from pathlib import Path

from identity.settings import DEFAULT_POLICIES_DIR
from tests.conftest import FAST_POLICY


def strictest_policy(folder: Path) -> Path:
    """The fast policy with three-letter words from 200,000 per language, the strictest a
    policy file may ask for: about one random 16-character string in fifty passes it, and
    no 64-character one."""
    words = DEFAULT_POLICIES_DIR / "password-words.txt"
    text = (
        FAST_POLICY.read_text(encoding="utf-8")
        .replace("min_word_length = 4", "min_word_length = 3")
        .replace("wordfreq_top = 20000", "wordfreq_top = 200000")
        .replace('"../../policies/password-words.txt"', f'"{words}"')
    )
    policy = folder / "password-strictest.toml"
    policy.write_text(text, encoding="utf-8")
    return policy
