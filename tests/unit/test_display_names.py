"""Names shown to other people: trimmed, bounded, and readable as what they say."""

from __future__ import annotations

import pytest

from identity.display_names import display_name
from identity.errors import InvalidInput


@pytest.mark.parametrize(
    "name",
    [
        "Acme Hosting",
        "  José Núñez  ",
        "محمد\u200cرضا",  # Persian needs the zero-width non-joiner
        "👩\u200d💻 Ops",  # and emoji sequences the joiner
        "\u05e9\u05dc\u05d5\u05dd Ltd",  # right-to-left letters are fine; overriding them is not
    ],
)
def test_ordinary_names_are_kept_trimmed(name: str) -> None:
    assert display_name(name, 200) == name.strip()


@pytest.mark.parametrize(
    ("name", "phrase"),
    [
        ("", "1 to 200"),
        ("x" * 201, "1 to 200"),
        ("Acme\u202egnillib", "direction"),
        ("Acme\u2066x\u2069", "direction"),
        ("Acme\nBcc: victim@example.com", "line breaks"),
        ("Acme\x07", "control"),
        # Unicode's own line and paragraph separators: a mail client or a terminal breaks
        # the line there, as at a line feed, and the name can fake lines of its own.
        ("Acme\u2028Accept at https://evil.example", "line breaks"),
        ("Acme\u2029x", "line breaks"),
        ("\u200b\u00ad\u2060", "visible character"),
        # The braille blank: a symbol, not a space or a format character, yet drawn as nothing.
        ("\u2800\u2800", "visible character"),
    ],
)
def test_names_that_read_as_something_else_are_refused(name: str, phrase: str) -> None:
    with pytest.raises(InvalidInput, match=phrase) as refused:
        display_name(name, 200)
    assert refused.value.extra["errors"][0]["field"] == "name"


def test_an_optional_name_may_be_empty_but_not_unreadable() -> None:
    assert display_name("  ", 200, required=False) == ""
    with pytest.raises(InvalidInput, match="at most 200"):
        display_name("x" * 201, 200, required=False)
    with pytest.raises(InvalidInput, match="direction"):
        display_name("\u202e", 200, required=False, field="name_es")
