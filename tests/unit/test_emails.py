"""Email addresses: one stored form, and a clear sentence for each kind of bad one."""

from __future__ import annotations

import pytest

from identity.accounts.emails import normalise_email
from identity.errors import InvalidInput


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Ana@Example.COM \n", "ana@example.com"),
        ("ana@bücher.de", "ana@xn--bcher-kva.de"),
        ("jose.garci\u0301a@ejemplo.es", "jose.garcía@ejemplo.es"),  # NFC composes the accent
        ("o'brien+news@mail.example.org", "o'brien+news@mail.example.org"),
    ],
)
def test_email_is_stored_trimmed_composed_and_lower_case(raw: str, stored: str) -> None:
    assert normalise_email(raw) == stored


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ana.example.com", "exactly one @"),
        ("ana@@example.com", "exactly one @"),
        ("@example.com", "before the @"),
        ("a b@example.com", "before the @"),
        ("ana.@example.com", "before the @"),
        ("a\x00b@example.com", "before the @"),
        ("x" * 65 + "@example.com", "before the @"),
        ("ana@localhost", "domain"),
        ("ana@-example.com", "domain"),
        ("ana@example..com", "domain"),
        ("ana@10.0.0.1", "domain"),
        ("ana@" + "a" * 64 + ".com", "domain"),
        ("a@" + ("b" * 60 + ".") * 6 + "com", "at most 320"),
    ],
)
def test_bad_email_is_invalid_input_saying_what_is_wrong(raw: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        normalise_email(raw)
