"""TOTP codes, their drift window, and recovery codes (no database)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from identity.mfa import recovery_codes, totp

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
AT = datetime(2026, 11, 25, 12, 0, 10, tzinfo=UTC)  # 10 s into a 30 s step
STEP = int(AT.timestamp()) // 30


def code_at(when: datetime) -> str:
    return pyotp.TOTP(SECRET).at(when)


def test_the_current_code_matches_its_own_step() -> None:
    assert totp.matching_step(SECRET, code_at(AT), AT) == STEP


@pytest.mark.parametrize("steps", [-1, 1])
def test_a_code_one_step_off_is_accepted_as_clock_drift(steps: int) -> None:
    code = code_at(AT + timedelta(seconds=30 * steps))
    assert totp.matching_step(SECRET, code, AT) == STEP + steps


@pytest.mark.parametrize("steps", [-3, -2, 2, 3])
def test_a_code_two_or_more_steps_off_is_refused(steps: int) -> None:
    assert totp.matching_step(SECRET, code_at(AT + timedelta(seconds=30 * steps)), AT) is None


def test_spaces_in_a_typed_code_do_not_matter() -> None:
    code = code_at(AT)
    assert totp.matching_step(SECRET, f" {code[:3]} {code[3:]} ", AT) == STEP


@pytest.mark.parametrize(
    "spell",
    [
        lambda c: f"{c[:3]}-{c[3:]}",  # as some apps show it
        lambda c: f"{c[:3]}\u2013{c[3:]}",  # an en dash, as a word processor writes one
        lambda c: f"{c[:3]}\u00a0{c[3:]}",  # a no-break space, as copied from a web page
        lambda c: c.translate({ord(d): 0xFF10 + int(d) for d in "0123456789"}),  # full width
        lambda c: f"{c[:3]}\uff0d{c[3:]}",  # a full-width hyphen, from a CJK input method
    ],
    ids=["hyphen", "en-dash", "no-break-space", "full-width-digits", "full-width-hyphen"],
)
def test_a_code_typed_with_dashes_or_full_width_digits_matches(
    spell: Callable[[str], str],
) -> None:
    assert totp.matching_step(SECRET, spell(code_at(AT)), AT) == STEP


@pytest.mark.parametrize(
    "typed", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12 34 5", "12.3456"]
)
def test_anything_but_six_ascii_digits_is_not_a_code(typed: str) -> None:
    assert totp.normalise_code(typed) is None
    assert totp.matching_step(SECRET, typed, AT) is None


def test_secrets_carry_160_random_bits_and_differ() -> None:
    first, second = totp.new_secret(), totp.new_secret()
    assert len(first) == 32 and re.fullmatch(r"[A-Z2-7]{32}", first)
    assert first != second


def test_the_provisioning_uri_names_the_product_and_the_account() -> None:
    uri = totp.provisioning_uri(SECRET, account="ana@example.com", issuer="Acme ID")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Acme ID:ana@example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET] and query["issuer"] == ["Acme ID"]


def test_the_qr_code_is_inline_svg_without_a_data_uri() -> None:
    svg = totp.qr_svg("otpauth://totp/Acme:ana@example.com?secret=" + SECRET)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "data:" not in svg and "<script" not in svg


def test_ten_recovery_codes_of_80_bits_all_different() -> None:
    codes = recovery_codes.generate()
    assert len(codes) == 10 == len(set(codes))
    for code in codes:
        assert re.fullmatch(r"([0-9a-hjkmnp-tv-z]{4}-){3}[0-9a-hjkmnp-tv-z]{4}", code)


def test_a_recovery_code_matches_whatever_its_case_spacing_and_dashes() -> None:
    code = "ab1c-0def-ghjk-mnpq"
    stored = recovery_codes.code_digest(code)
    assert recovery_codes.code_digest("AB1C 0DEF GHJK MNPQ") == stored
    assert recovery_codes.code_digest("ab1c0defghjkmnpq") == stored
    # Letters the alphabet leaves out are read as the digits they look like.
    assert recovery_codes.code_digest("abIc-odef-ghjk-mnpq") == stored
    assert recovery_codes.code_digest("ab1c-0def-ghjk-mnpr") != stored


@pytest.mark.parametrize(
    "typed",
    [
        "ab1c\u00a00def\u00a0ghjk\u00a0mnpq",  # no-break spaces, as copied from a web page
        "ab1c-0def-ghjk-mnpq\n",  # a whole line copied from a saved file
        "ab1c\u20110def\u2011ghjk\u2011mnpq",  # non-breaking hyphens
        "ab1c\u20130def\u2013ghjk\u2013mnpq",  # en dashes, as word processors write a dash
        "ab1c\u22120def\u2212ghjk\u2212mnpq",  # minus signs
    ],
)
def test_a_recovery_code_matches_whatever_spaces_and_dashes_it_was_copied_with(
    typed: str,
) -> None:
    assert recovery_codes.code_digest(typed) == recovery_codes.code_digest("ab1c-0def-ghjk-mnpq")


def test_a_recovery_code_typed_full_width_matches() -> None:
    full_width = "ａｂ１ｃ－０ｄｅｆ　ｇｈｊｋ　ｍｎｐｑ"
    assert recovery_codes.code_digest(full_width) == recovery_codes.code_digest(
        "ab1c-0def-ghjk-mnpq"
    )


@pytest.mark.parametrize("typed", ["ab1c-0def-ghjk-mnp", "ab1c_0def_ghjk_mnpq", "ab1c.0def"])
def test_other_characters_in_a_recovery_code_still_count(typed: str) -> None:
    assert recovery_codes.code_digest(typed) != recovery_codes.code_digest("ab1c-0def-ghjk-mnpq")
